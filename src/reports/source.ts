// What every report source gives: a report spooled to a local file, with the
// facts a file offer needs (XEP-0096 name, size, date, MD5) computed on the way.

export interface SpooledReport {
  project: string;
  path: string; // the spooled copy; removed by release()
  name: string; // file name offered to the user
  mime: string;
  size: number;
  md5: string; // hex
  sha256: string; // hex
  date: Date;
  release(): Promise<void>;
}

export type ReportErrorKind = 'not-found' | 'forbidden' | 'unavailable' | 'too-large';

/** A failure the chat user should hear about in plain words. */
export class ReportError extends Error {
  override name = 'ReportError';
  constructor(
    readonly kind: ReportErrorKind,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export interface FetchContext {
  requester: string; // bare JID of the user asking
  signal?: AbortSignal;
}

export interface ReportSource {
  readonly kind: string;
  fetch(project: string, ctx: FetchContext): Promise<SpooledReport>;
}

const MIME_BY_EXT: Record<string, string> = {
  pdf: 'application/pdf',
  html: 'text/html',
  htm: 'text/html',
  txt: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  json: 'application/json',
  xml: 'application/xml',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  zip: 'application/zip',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/vnd.oasis.opendocument.spreadsheet',
};

export function mimeForExtension(ext: string): string {
  return MIME_BY_EXT[ext.toLowerCase()] ?? 'application/octet-stream';
}

export function extensionForMime(mime: string): string | undefined {
  const base = mime.split(';')[0]!.trim().toLowerCase();
  return Object.keys(MIME_BY_EXT).find((ext) => MIME_BY_EXT[ext] === base);
}

/** The offered file name: the template with the project id, plus an extension. */
export function reportFileName(template: string, project: string, ext: string | undefined): string {
  const base = template.replace('{project}', project);
  return ext ? `${base}.${ext.toLowerCase()}` : base;
}
