// What the transfer tests share: a libpurple or slixmpp receiver logged in to
// a test server, reports published under fresh project ids, one request from
// its message to the transfer's end and the component's closing line, and the
// check that a file arrived byte-exact by the method expected.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPurpleReceiver } from '../support/purple.js';
import { field, type CommonReceiverOptions, type ReceiverEvent, type ReceiverProcess } from '../support/receiver.js';
import type { TestServer } from '../support/server.js';
import { startSlixReceiver, type SlixReceiverOptions } from '../support/slix.js';
import { getIntranet, user } from './harness.js';

export type Kind = 'purple' | 'slix';

export interface Rx {
  proc: ReceiverProcess;
  outDir: string;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Extra = Pick<CommonReceiverOptions, 'decline' | 'disconnectAfterBytes' | 'timeoutSec'> &
  Pick<SlixReceiverOptions, 'methods' | 'noSi'>;

/** A receiver of the given kind for user `name` on `server` (resource = kind). */
export async function startReceiver(server: TestServer, kind: Kind, name: string, extra: Extra = {}): Promise<Rx> {
  const u = await user(name, server);
  const outDir = await mkdtemp(join(tmpdir(), `xr-rx-${kind}-`));
  const common = {
    jid: `${u.jid}/${kind}`,
    password: u.password,
    host: '127.0.0.1',
    port: server.c2sPort,
    outDir,
    timeoutSec: 900,
    ...extra,
  };
  const proc = kind === 'purple' ? await startPurpleReceiver(common) : await startSlixReceiver(common);
  return { proc, outDir };
}

export async function stopReceiver(rx: Rx | undefined): Promise<void> {
  if (!rx) return;
  await rx.proc.quit();
  await rm(rx.outDir, { recursive: true, force: true });
}

/** Project ids counted up from a random start: `fresh` gives one, `publish` puts a report under one on the stand-in intranet. */
export function projectIds(base: number): { fresh: () => string; publish: (body: Buffer) => Promise<string> } {
  let counter = base + Math.floor(Math.random() * 90000);
  const fresh = () => String(counter++);
  return {
    fresh,
    publish: async (body) => {
      const project = fresh();
      (await getIntranet()).projects.set(project, { kind: 'file', body });
      return project;
    },
  };
}

export const isEnd = (project: string) => (e: ReceiverEvent) =>
  (e.event === 'received' || e.event === 'failed' || e.event === 'declined') &&
  field(e, 'name') === `status-${project}.pdf`;
export const finalMessage = (project: string) => (e: ReceiverEvent) =>
  e.event === 'message' && field(e, 'body').includes(`status-${project}.pdf`) && !/^Sending /.test(field(e, 'body'));

/** Asks for the project's report and waits for the transfer's end and the component's closing line. */
export async function requestReport(
  server: Pick<TestServer, 'componentDomain'>,
  rx: Rx,
  project: string,
  timeoutMs = 120000,
): Promise<{ end: ReceiverEvent; final: ReceiverEvent }> {
  rx.proc.send(`${project}@${server.componentDomain}`, 'report');
  const end = await rx.proc.waitFor(isEnd(project), timeoutMs);
  const final = await rx.proc.waitFor(finalMessage(project), 60000);
  return { end, final };
}

/** The file arrived whole by `method`, and the user read that it did. */
export function expectDelivered(
  r: { end: ReceiverEvent; final: ReceiverEvent },
  body: Buffer,
  method: 's5b' | 'ibb',
): void {
  expect(r.end.event, JSON.stringify(r.end)).to.equal('received');
  expect(r.end.method).to.equal(method);
  expect(r.end.size).to.equal(body.length);
  expect(r.end.sha256).to.equal(sha256(body));
  expect(String(r.final.body)).to.match(
    new RegExp(`^Delivered status-\\d+\\.pdf \\(.+\\) ${method === 's5b' ? 'by direct connection' : 'in-band'}\\.$`),
  );
}
