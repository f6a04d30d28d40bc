/**
 * The slixmpp receiver for integration tests: test/clients/slix-receiver.py,
 * run with Debian's /usr/bin/python3 (python3-slixmpp 1.8.3 imports only
 * there), started as a ReceiverProcess that speaks the same line protocol as
 * the libpurple one (see ./receiver.ts and the script's docstring).
 *
 * Beyond the common events it prints `streamhosts` (the SOCKS5 streamhost
 * list as offered), `s5b_failed`, `declined`, `presence`,
 * `subscription_request`, `message_error`, `warning` and `iq` (replies to
 * IQs sent with the `raw` command); `offer`, `received` and `failed` carry
 * the stream `sid`. Extra commands, through `ReceiverProcess.command()`:
 * {cmd:'unsubscribe'|'subscribed'|'unsubscribed', to}, {cmd:'presence', ...}
 * and {cmd:'raw', xml}.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  ReceiverProcess,
  commonReceiverArgs,
  inNetns,
  type CommonReceiverOptions,
  type ReceiverEvent,
} from './receiver.js';

export { ReceiverProcess, type ReceiverEvent };

export type SlixStreamMethod = 's5b' | 'ibb';

export interface SlixReceiverOptions extends CommonReceiverOptions {
  /** Stream methods accepted, in order of preference (default ['s5b', 'ibb']). */
  methods?: SlixStreamMethod[] | string[];
  /** Behave as a client without SI: no SI/bytestreams/IBB in disco#info,
   *  SI offers answered with service-unavailable. */
  noSi?: boolean;
  /** Interpreter (default $XR_SLIX_PYTHON or /usr/bin/python3). */
  python?: string;
}

const SCRIPT = path.join('test', 'clients', 'slix-receiver.py');

function findScript(): string {
  // Works both from test/support/*.ts and from dist/test/support/*.js.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, SCRIPT);
    if (existsSync(candidate) && existsSync(path.join(dir, 'package.json'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find ${SCRIPT} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

function defaultPython(): string {
  return process.env['XR_SLIX_PYTHON'] ?? '/usr/bin/python3';
}

/**
 * Resolves when `python` can import slixmpp; rejects with a hint otherwise
 * (use it in a `before` hook to skip or fail early).
 */
export function checkSlixmpp(python: string = defaultPython()): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    execFile(
      python,
      ['-c', 'import slixmpp; print(slixmpp.__version__)'],
      { timeout: 30_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(
              `${python} cannot import slixmpp (Debian: apt-get install python3-slixmpp; ` +
                `it imports only with /usr/bin/python3): ${err.message}\n${stderr.slice(-2000)}`,
            ),
          );
          return;
        }
        resolve(stdout.trim());
      },
    );
  });
}

/** Command line arguments for test/clients/slix-receiver.py. */
export function slixReceiverArgs(opts: SlixReceiverOptions): string[] {
  const args = commonReceiverArgs(opts);
  if (opts.methods !== undefined) args.push('--methods', opts.methods.join(','));
  if (opts.noSi === true) args.push('--no-si');
  return args;
}

/** Starts the slixmpp receiver; resolves once it is online. */
export async function startSlixReceiver(opts: SlixReceiverOptions): Promise<ReceiverProcess> {
  const python = opts.python ?? defaultPython();
  const [cmd, argv] = inNetns(opts.netns, python, [findScript(), ...slixReceiverArgs(opts)]);
  return ReceiverProcess.start(cmd, argv, {
    name: `slix-receiver ${opts.jid}`,
    startTimeoutMs: opts.startTimeoutMs ?? 30_000,
    onEvent: opts.onEvent,
  });
}
