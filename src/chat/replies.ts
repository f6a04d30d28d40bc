// Every text a chat user can read, in one place. Pure.

/**
 * A size in binary units (KiB = 1024 bytes, MiB, …), the units limits are
 * set in: a 100 MiB limit reads "100 MiB", never "105 MB".
 */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? '' : 's'}`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = bytes / 1024;
  // Pick the unit after rounding, so 1,048,575 bytes reads "1.0 MiB", not "1024 KiB".
  while (i < units.length - 1 && (v >= 100 ? Math.round(v) : Math.round(v * 10) / 10) >= 1024) {
    v /= 1024;
    i++;
  }
  const oneDecimal = Math.round(v * 10) / 10;
  return `${oneDecimal >= 100 ? Math.round(v) : oneDecimal.toFixed(1)} ${units[i]}`;
}

/** Keeps user-supplied text short and on one line when we quote it back. */
function quote(text: string): string {
  const chars = Array.from(text.replace(/\s+/g, ' ').trim()); // code points: never half an emoji
  return chars.length > 40 ? chars.slice(0, 39).join('') + '…' : chars.join('');
}

export const replies = {
  help: (domain: string, example: string) =>
    [
      'I send project status reports as files.',
      `• Message a project's contact, e.g. ${example}@${domain}, with any text (e.g. "report") to get its report.`,
      `• Or message ${domain} with a project id: "${example}" or "report ${example}".`,
      '• "help" shows this text.',
      'Add a project contact to your roster to see it online.',
    ].join('\n'),
  status: (project: string) => `Send me a message to get the status report of project ${project}`,
  domainStatus: (example: string) => `Send me a project id (e.g. ${example}) to get its status report`,
  invalidId: (text: string, example: string) =>
    `'${quote(text)}' is not a project id; project ids look like ${example}.`,
  missingId: (example: string) => `Which project? Send "report ${example}", or just "${example}".`,
  unknown: (text: string, example: string) =>
    `I did not understand '${quote(text)}'. Send a project id such as ${example}, or "help".`,
  notAllowed: (domain: string) => `Sorry, reports are only available to users of ${domain}.`,
  rateLimited: (seconds: number) =>
    `You are asking a bit fast; please try again in ${seconds} second${seconds === 1 ? '' : 's'}.`,
  queued: (position: number) =>
    `Many reports are being sent right now; yours is number ${position} in the queue and will follow shortly.`,
  busy: () => 'Too many reports are waiting right now; please try again in a few minutes.',
  fetching: (project: string) => `Fetching the status report of project ${project}…`,
  notFound: (project: string) => `There is no status report for project ${project}.`,
  forbidden: (project: string) => `The intranet refused you access to the status report of project ${project}.`,
  unavailable: (project: string) =>
    `The intranet is not reachable right now, so the report of project ${project} could not be fetched. Please try again later.`,
  intranetError: (project: string, status: number) =>
    `The intranet answered with an error (HTTP ${status}) for the report of project ${project}, so it could not be fetched. Please try again later.`,
  tooLarge: (project: string, maxBytes: number) =>
    `The status report of project ${project} is larger than the limit of ${formatSize(maxBytes)}, so it cannot be sent by chat.`,
  empty: (project: string) => `The status report of project ${project} is empty, so there is nothing to send.`,
  internal: (project: string) =>
    `Something went wrong while preparing the report of project ${project}. The administrator has been told; please try again later.`,
  ready: (name: string, size: number) => `The report ${name} (${formatSize(size)}) is ready.`,
  sending: (name: string, size: number) => `Sending ${name} (${formatSize(size)})… please accept the file.`,
  delivered: (name: string, size: number, method: 's5b' | 'ibb') =>
    `Delivered ${name} (${formatSize(size)}) ${method === 's5b' ? 'by direct connection' : 'in-band'}.`,
  declined: (name: string) => `You declined ${name}; send me another message if you want it after all.`,
  offerTimeout: (name: string) =>
    `${name} was not accepted in time, so I stopped offering it. Send me another message to try again.`,
  noWay: (name: string) =>
    `Your chat client cannot receive files in any of the ways this service sends them, so ${name} was not sent.`,
  noFileTransfer: (name: string) =>
    `Your chat client did not accept a file transfer for ${name}; it may not support receiving files (SI file transfer).`,
  lost: (name: string, sent: number, size: number) =>
    `The transfer of ${name} broke off after ${formatSize(sent)} of ${formatSize(size)}; the file did not arrive. Send me another message to try again.`,
  linkInstead: (
    name: string,
    why: 'no-file-transfer' | 'transfer-failed' | 'no-direct-connection' | 'went-offline' | 'no-answer',
  ) =>
    why === 'no-answer'
      ? `Your chat client did not answer the file offer for ${name}, so here is a download link instead.`
      : why === 'went-offline'
        ? `Your chat client went offline before it took ${name}, so here is a download link instead.`
        : why === 'no-file-transfer'
          ? `Your chat client does not receive file transfers, so here is a download link for ${name} instead.`
          : why === 'no-direct-connection'
            ? `A direct connection to your chat client was not possible, and its in-band file transfer does not reliably save files, so here is a download link for ${name} instead.`
            : `The file transfer of ${name} did not work, so here is a download link instead.`,
  linked: (name: string, size: number, expiresAt: Date | undefined) =>
    `The link above downloads ${name} (${formatSize(size)})${expiresAt ? `; it works until ${expiresAt.toISOString().slice(0, 16).replace('T', ' ')} UTC` : ''}.`,
  sourceBroke: (name: string, project: string) =>
    `The intranet stopped sending the report of project ${project} part-way, so ${name} did not arrive complete. Please try again later.`,
  interrupted: (name: string) => `The connection to the chat server dropped while sending ${name}; offering it again…`,
  restarted: (name: string) =>
    `The report service restarted while sending ${name}, so it did not arrive. Send me any message to get it again.`,
  shuttingDown: () => 'The report service is restarting; please ask again in a minute.',
  cancelledByAdmin: (what: string) =>
    `An administrator cancelled sending ${what}. Send me another message to ask again.`,
  cutByShutdown: (name: string) =>
    `The report service is shutting down, so the transfer of ${name} was stopped. Please ask again in a minute.`,
  /** An answer (accept, decline, acknowledgement) for an offer another instance of the service made before it stopped. */
  strayAnswer: (project: string | undefined, wanted: boolean, example: string) =>
    project === undefined
      ? `Your client answered a file offer this service no longer knows: the instance that made it has stopped. Send "report ${example}" (with your project) to get the report again.`
      : wanted
        ? `Your client answered an offer of the status report of project ${project} that this service no longer knows: the instance that made it has stopped. Offering the report again…`
        : `Your client answered an offer of the status report of project ${project} that this service no longer knows: the instance that made it has stopped, so nothing more comes of it. Send me a message if you want the report.`,
  failed: (name: string, why: string) => `Could not send ${name}: ${why}. Send me another message to try again.`,
};
