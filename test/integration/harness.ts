// Shared set-up for integration tests: one private ejabberd for the whole run
// (scripts/ejabberd.sh), one private Prosody when a test asks for it
// (scripts/prosody.sh), a stand-in intranet, and the component in-process
// with its logs captured so tests can read them.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { startProsody, type ProsodyInstance } from '../support/prosody.js';
import type { TestServer } from '../support/server.js';
import { ReportServer } from '../support/report-server.js';

let ejabberd: EjabberdInstance | undefined;

export async function getEjabberd(): Promise<EjabberdInstance> {
  // Its own run dir, ports and node name, so a running demo instance is not disturbed.
  ejabberd ??= await startEjabberd({
    runDir: process.env.XR_TEST_RUN_DIR ?? join(process.cwd(), '.run', 'test-ejabberd'),
    portBase: Number(process.env.XR_TEST_PORT_BASE ?? 25222),
    nodeName: 'xrtest@localhost',
  });
  return ejabberd;
}

export async function stopEjabberd(): Promise<void> {
  await ejabberd?.stop();
  ejabberd = undefined;
}

let prosody: ProsodyInstance | undefined;

/**
 * The test Prosody (c2s, component, proxy65 = base, +1, +2): its base is XR_TEST_PROSODY_PORT_BASE,
 * else 1000 above XR_TEST_PORT_BASE when that is set, else 25322 (clear of the ejabberds' 25222, 26222, 27222, 28222).
 * The matrix's second Prosody (no proxy65_acl) takes base + 10.
 */
export async function getProsody(): Promise<ProsodyInstance> {
  prosody ??= await startProsody({
    runDir: process.env.XR_TEST_PROSODY_RUN_DIR ?? join(process.cwd(), '.run', 'test-prosody'),
    portBase: prosodyPortBase(),
  });
  return prosody;
}

export function prosodyPortBase(): number {
  const own = process.env.XR_TEST_PROSODY_PORT_BASE;
  if (own) return Number(own);
  const ej = process.env.XR_TEST_PORT_BASE;
  return ej ? Number(ej) + 1000 : 25322;
}

export async function stopProsody(): Promise<void> {
  await prosody?.stop();
  prosody = undefined;
}

/** The servers a test matrix runs against, by name (each started on first use). */
export const servers: ReadonlyArray<{ name: TestServer['kind']; get: () => Promise<TestServer> }> = [
  { name: 'ejabberd', get: getEjabberd },
  { name: 'prosody', get: getProsody },
];

const registered = new Set<string>();
/** Registers name on the server (default: the test ejabberd); the password is derived from the name. */
export async function user(
  name: string,
  server?: TestServer,
): Promise<{ username: string; password: string; jid: string }> {
  const srv = server ?? (await getEjabberd());
  const password = `pw-${name}`;
  const key = `${srv.kind}:${srv.runDir}:${name}`;
  if (!registered.has(key)) {
    await srv.register(name, password);
    registered.add(key);
  }
  return { username: name, password, jid: `${name}@${srv.domain}` };
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class RunningComponent {
  constructor(
    readonly app: App,
    readonly logs: LogLine[],
    readonly rawLog: string[],
    readonly spoolDir: string,
  ) {}

  logged(msg: string | RegExp): LogLine[] {
    return this.logs.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)));
  }

  async stop(): Promise<void> {
    await this.app.stop(2000);
    await rm(this.spoolDir, { recursive: true, force: true });
  }
}

/** Starts the component against the test ejabberd (or the given server); env overrides the test defaults. */
export async function startComponent(
  env: Record<string, string> = {},
  opts: { ejabberd?: EjabberdInstance; server?: Pick<TestServer, 'componentPort' | 'componentDomain' | 'secret'> } = {},
): Promise<RunningComponent> {
  const ej = opts.server ?? opts.ejabberd ?? (await getEjabberd());
  const spoolDir = await mkdtemp(join(tmpdir(), 'xr-spool-'));
  // Also what App.reload() re-reads (with XR_CONFIG in env, that file).
  const load = () =>
    loadConfig({
      env: {
        XR_XMPP_SERVICE: `xmpp://127.0.0.1:${ej.componentPort}`,
        XR_XMPP_DOMAIN: ej.componentDomain,
        XR_XMPP_SECRET: ej.secret,
        XR_XMPP_RECONNECT_MAX_MS: '2000',
        XR_REPORTS_SPOOL_DIR: spoolDir,
        XR_PROXY_BIND_HOST: '127.0.0.1',
        XR_PROXY_BIND_PORT: '0',
        XR_LOG_LEVEL: 'debug',
        ...env,
      },
    });
  const config = load();
  const logs: LogLine[] = [];
  const rawLog: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        rawLog.push(line);
        try {
          logs.push(JSON.parse(line) as LogLine);
        } catch {
          // not JSON: kept in rawLog
        }
      }
      if (process.env.XR_TEST_LOG) process.stderr.write(chunk);
      cb();
    },
  });
  const app = await App.create(config, createLogger(config.log.level, sink), { loadConfig: load });
  await app.start();
  return new RunningComponent(app, logs, rawLog, spoolDir);
}

let intranet: ReportServer | undefined;
export async function getIntranet(): Promise<ReportServer> {
  intranet ??= await new ReportServer().start();
  return intranet;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Root hook: whatever the tests started is stopped at the end of the run (only under mocha: the
// bench imports the network-lab helpers too).
if (typeof after === 'function')
  after(async function () {
    this.timeout(60000);
    await intranet?.stop();
    intranet = undefined;
    try {
      await stopEjabberd();
    } finally {
      await stopProsody();
    }
  });

/** The component as its own process (for signals and exit codes), logging JSON lines. */
export class ComponentProcess {
  readonly logs: LogLine[] = [];
  readonly exited: Promise<number | null>;
  private constructor(
    readonly proc: import('node:child_process').ChildProcess,
    readonly spoolDir: string,
  ) {
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
    let buf = '';
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          // not JSON
        }
        if (process.env.XR_TEST_LOG) process.stderr.write(line + '\n');
      }
    });
    proc.stderr!.on('data', (c: Buffer) => process.env.XR_TEST_LOG && process.stderr.write(c));
  }

  /**
   * Starts `node dist/src/main.js` (inside network namespace `netns` when given, against
   * `ejabberd` when given); waits until it is online unless `online: false`.
   */
  static async spawn(
    env: Record<string, string>,
    o: {
      online?: boolean;
      /** the server to connect to (default: the test ejabberd; a Prosody will do) */
      ejabberd?: Pick<TestServer, 'componentPort' | 'componentDomain' | 'secret'>;
      netns?: string;
    } = {},
  ): Promise<ComponentProcess> {
    const { spawn } = await import('node:child_process');
    const ej = o.ejabberd ?? (await getEjabberd());
    const spoolDir = await mkdtemp(join(tmpdir(), 'xr-spool-'));
    const main = [process.execPath, join(process.cwd(), 'dist', 'src', 'main.js')];
    const [cmd, ...args] = o.netns ? ['ip', 'netns', 'exec', o.netns, ...main] : main;
    const proc = spawn(cmd, args, {
      env: {
        PATH: process.env.PATH ?? '',
        XR_XMPP_SERVICE: `xmpp://127.0.0.1:${ej.componentPort}`,
        XR_XMPP_DOMAIN: ej.componentDomain,
        XR_XMPP_SECRET: ej.secret,
        XR_REPORTS_SPOOL_DIR: spoolDir,
        XR_PROXY_BIND_HOST: '127.0.0.1',
        XR_PROXY_BIND_PORT: '0',
        XR_LOG_LEVEL: 'debug',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const c = new ComponentProcess(proc, spoolDir);
    if (o.online !== false) await c.waitForLog((l) => l.msg === 'connected to the XMPP server', 30000);
    return c;
  }

  waitForLog(pred: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const tick = () => {
        const hit = this.logs.find(pred);
        if (hit) return resolve(hit);
        if (Date.now() > deadline)
          return reject(
            new Error(`log line not seen within ${timeoutMs} ms; got: ${this.logs.map((l) => l.msg).join(' | ')}`),
          );
        setTimeout(tick, 50);
      };
      tick();
    });
  }

  /** Stops by pid: SIGTERM, and SIGKILL if it has not exited within ms. */
  async stop(ms = 40000): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), ms);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** A loopback TCP port nobody listens on (now). */
// Ports handed out by freePort(): below Linux's ephemeral range (32768-60999), so no client
// connection's local port takes one between this check and the component's bind (a port the
// kernel picked with listen(0) could be: EADDRINUSE seen in CI), and above the fixed test bases
// (25222-29xxx). Counted from a random start, so one run does not hand out the same port twice.
const FREE_FIRST = 30000;
const FREE_END = 32700;
let freeNext = FREE_FIRST + Math.floor(Math.random() * (FREE_END - FREE_FIRST));

export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = freeNext;
    freeNext = freeNext + 1 >= FREE_END ? FREE_FIRST : freeNext + 1;
    const srv = createTcpServer();
    const ok = await new Promise<boolean>((r) => {
      srv.once('error', () => r(false));
      srv.listen(port, '127.0.0.1', () => r(true));
    });
    if (ok) {
      await new Promise((r) => srv.close(r));
      return port;
    }
  }
  throw new Error(`no free port in ${FREE_FIRST}-${FREE_END} after 200 tries`);
}

/** Waits (bounded) until file exists with size bytes; a larger file fails at once. */
export async function waitForFile(file: string, size: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = 'no file';
  for (;;) {
    try {
      const st = await stat(file);
      seen = `${st.size} bytes`;
      if (st.size === size) return;
      if (st.size > size) throw new Error(`${file} has ${st.size} bytes, more than the ${size} of the report`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (Date.now() > deadline) throw new Error(`${file} did not reach ${size} bytes within ${timeoutMs} ms (${seen})`);
    await sleep(100);
  }
}

/**
 * Waits (bounded) until ejabberd has a session of username with this resource
 * (a real client that logs in by itself); `why` says what to show when it never does.
 */
export async function waitForSession(
  ej: EjabberdInstance,
  username: string,
  resource: string,
  timeoutMs: number,
  why: () => Promise<string>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${ej.httpPort}/api/user_resources`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: username, host: ej.domain }),
      signal: AbortSignal.timeout(10_000),
    }).catch(() => undefined);
    const resources: unknown = res?.ok ? await res.json() : [];
    if (Array.isArray(resources) && resources.includes(resource)) return;
    if (Date.now() > deadline)
      throw new Error(
        `${username}/${resource} did not log in to 127.0.0.1:${ej.c2sPort} within ${timeoutMs} ms; ${await why()}`,
      );
    await sleep(500);
  }
}
