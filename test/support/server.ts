import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// What a test needs of an XMPP server, whichever it is: the private ejabberd
// (./ejabberd.ts) and the private Prosody (./prosody.ts) both have this shape,
// so one case can run against both (`for (const server of servers)`).
export interface TestServer {
  readonly kind: 'ejabberd' | 'prosody';
  /** the XMPP vhost users live on, e.g. example.com */
  domain: string;
  /** the external component's domain, e.g. reports.example.com */
  componentDomain: string;
  secret: string;
  c2sPort: number;
  componentPort: number;
  proxy65Port: number;
  /** the JID of the server's SOCKS5 proxy (ejabberd mod_proxy65, Prosody proxy65) */
  proxyJid: string;
  runDir: string;
  /** Registers user@domain (local part only); an existing user gets this password. */
  register(user: string, password: string): Promise<void>;
  /** Stops and starts the server; registered users (and their rosters and offline messages) survive. */
  restart(): Promise<void>;
  /** Stops the server; fine to call twice. */
  stop(): Promise<void>;
}

/** The repository that holds scripts/<script> (this file runs from test/support or dist/test/support). */
export function findRepoRoot(script: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'scripts', script))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`scripts/${script} not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

interface ScriptError extends Error {
  code?: number | string | null;
  killed?: boolean;
  signal?: NodeJS.Signals | null;
}

/** Runs `bash <script> ARGS` (inside a network namespace when given); rejects with the last 40 lines of its stderr. */
export function runServerScript(
  script: string,
  env: NodeJS.ProcessEnv,
  args: string[],
  timeoutMs: number,
  netns?: string,
): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      netns ? 'ip' : 'bash',
      netns ? ['netns', 'exec', netns, 'bash', script, ...args] : [script, ...args],
      { env, timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' },
      (err: ScriptError | null, stdout: string, stderr: string) => {
        if (!err) return resolvePromise(stdout);
        const why = err.killed ? `timed out after ${timeoutMs} ms` : `exit ${String(err.code ?? err.signal)}`;
        const tail = stderr.trimEnd().split('\n').slice(-40).join('\n');
        const name = `scripts/${script.split('/').pop() ?? script}`;
        reject(new Error(`${name} ${args[0] ?? ''} failed (${why}):\n${tail}`));
      },
    );
  });
}
