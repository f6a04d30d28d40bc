/**
 * The libpurple (Pidgin) receiver for integration tests: builds
 * test/clients/purple-receiver.c once per test run (scripts/build-purple-client.sh,
 * which also installs libpurple-dev & co. when missing) and starts it as a
 * ReceiverProcess.
 *
 * Building may take minutes on a fresh machine (apt-get): call
 * `buildPurpleReceiver()` from a `before` hook with a generous timeout.
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

export interface PurpleReceiverOptions extends CommonReceiverOptions {
  /** libpurple's "ft_proxies" account setting (only matters when sending). */
  ftProxies?: string;
}

const BUILD_SCRIPT = path.join('scripts', 'build-purple-client.sh');

function findRepoRoot(): string {
  // Works both from test/support/*.ts and from dist/test/support/*.js.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, BUILD_SCRIPT)) && existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find ${BUILD_SCRIPT} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

let building: Promise<string> | undefined;

/** Builds the client if needed (once per process) and resolves with its path. */
export function buildPurpleReceiver(): Promise<string> {
  if (building === undefined) {
    const root = findRepoRoot();
    building = new Promise<string>((resolve, reject) => {
      execFile(
        'bash',
        [path.join(root, BUILD_SCRIPT)],
        { cwd: root, maxBuffer: 16 * 1024 * 1024, timeout: 15 * 60_000 },
        (err, stdout, stderr) => {
          if (err) {
            reject(new Error(`${BUILD_SCRIPT} failed: ${err.message}\n${stderr.slice(-4000)}`));
            return;
          }
          const bin = stdout.trim().split('\n').pop() ?? '';
          if (bin === '' || !existsSync(bin)) {
            reject(new Error(`${BUILD_SCRIPT} printed no binary path (stdout: ${stdout.slice(-500)})`));
            return;
          }
          resolve(bin);
        },
      );
    });
    // A failed build is retried by the next caller.
    building.catch(() => {
      building = undefined;
    });
  }
  return building;
}

/** Builds (once) and starts the libpurple receiver; resolves once it is online. */
export async function startPurpleReceiver(opts: PurpleReceiverOptions): Promise<ReceiverProcess> {
  const bin = await buildPurpleReceiver();
  const args = commonReceiverArgs(opts);
  if (opts.ftProxies !== undefined) args.push('--ft-proxies', opts.ftProxies);
  const [cmd, argv] = inNetns(opts.netns, bin, args);
  return ReceiverProcess.start(cmd, argv, {
    name: `purple-receiver ${opts.jid}`,
    startTimeoutMs: opts.startTimeoutMs ?? 30_000,
    onEvent: opts.onEvent,
  });
}
