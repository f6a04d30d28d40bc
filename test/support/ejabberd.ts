// A private ejabberd for integration tests, driven through scripts/ejabberd.sh
// (which installs ejabberd when missing, renders scripts/ejabberd/ejabberd.test.yml.tmpl
// into the run dir and starts the server in its own process group).
//
// Ports derive from portBase: c2s = portBase, component = +1, http = +2,
// Erlang distribution = +3, proxy65 = +4. The default portBase (15222, or
// XR_EJ_PORT_BASE from the environment) gives the script's own defaults:
// 15222 / 15223 / 15224 / 15225 / 15226.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface EjabberdInstance {
  /** the XMPP vhost users live on, e.g. example.com */
  domain: string;
  /** the external component's domain, e.g. reports.example.com */
  componentDomain: string;
  /** the component's handshake secret */
  secret: string;
  c2sPort: number;
  componentPort: number;
  httpPort: number;
  proxy65Port: number;
  runDir: string;
  /** Registers user@domain (local part only); an existing user gets this password. */
  register(user: string, password: string): Promise<void>;
  /** Stops and starts the server; registered users survive. */
  restart(): Promise<void>;
  /** Stops the server; fine to call twice. */
  stop(): Promise<void>;
}

export interface EjabberdOptions {
  runDir: string;
  portBase: number;
  shaper: 'none' | 'debian';
  nodeName: string;
  domain: string;
  componentDomain: string;
  secret: string;
  /** PEM with certificate, key and chain for c2s TLS (XR_EJ_CERTFILE); default none. */
  certFile: string;
  /** c2s STARTTLS (XR_EJ_STARTTLS): false (default), true (offered) or 'required'; needs certFile. */
  starttls: boolean | 'required';
  /** the component listener speaks direct TLS (XR_EJ_COMPONENT_TLS; `tls: true`, certFile as its certfile); needs certFile. */
  componentTls: boolean;
  /** c2s port when it must not be portBase (Dino always connects to localhost:5222). */
  c2sPort: number;
  /** ejabberd's domain_balancing for the component domain as TYPE:N (XR_EJ_DOMAIN_BALANCING), e.g. 'source:2'; default none. */
  domainBalancing: string;
  /** Address of the c2s, component and HTTP listeners (XR_EJ_LISTEN_IP); default 127.0.0.1. */
  listenIp: string;
  /** Address mod_proxy65 listens on (XR_EJ_PROXY65_IP) and the host it announces (XR_EJ_PROXY65_HOST); default 127.0.0.1. */
  proxy65Ip: string;
  proxy65Host: string;
  /** Run the server (and every script command) inside this network namespace (`ip netns exec`). */
  netns: string;
}

export const DEFAULT_PORT_BASE = 15222;

const START_TIMEOUT_MS = 120_000; // the script itself gives up after 60 s (+ a stop)
const STOP_TIMEOUT_MS = 45_000; // the script: 20 s TERM, then KILL
const REGISTER_TIMEOUT_MS = 30_000;

function findRepoRoot(): string {
  // this file runs from <repo>/test/support or <repo>/dist/test/support
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'scripts', 'ejabberd.sh'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('scripts/ejabberd.sh not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

interface ScriptError extends Error {
  code?: number | string | null;
  killed?: boolean;
  signal?: NodeJS.Signals | null;
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function runScript(
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
        if (!err) {
          resolvePromise(stdout);
          return;
        }
        const why = err.killed ? `timed out after ${timeoutMs} ms` : `exit ${String(err.code ?? err.signal)}`;
        reject(new Error(`scripts/ejabberd.sh ${args[0] ?? ''} failed (${why}):\n${tail(stderr, 40)}`));
      },
    );
  });
}

function portBaseFromEnv(): number | undefined {
  const raw = process.env.XR_EJ_PORT_BASE;
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new Error(`XR_EJ_PORT_BASE=${raw} is not a number`);
  return n;
}

export async function startEjabberd(opts: Partial<EjabberdOptions> = {}): Promise<EjabberdInstance> {
  const root = findRepoRoot();
  const script = join(root, 'scripts', 'ejabberd.sh');
  const portBase = opts.portBase ?? portBaseFromEnv() ?? DEFAULT_PORT_BASE;
  if (!Number.isInteger(portBase) || portBase < 1 || portBase > 65531) {
    throw new Error(`portBase ${portBase} out of range`);
  }
  const isDefault = portBase === DEFAULT_PORT_BASE;
  const runDir = resolve(opts.runDir ?? join(root, '.run', isDefault ? 'ejabberd' : `ejabberd-${portBase}`));
  const nodeName = opts.nodeName ?? (isDefault ? 'xmppreports@localhost' : `xmppreports${portBase}@localhost`);
  const shaper = opts.shaper ?? 'none';
  const domain = opts.domain ?? 'example.com';
  const componentDomain = opts.componentDomain ?? 'reports.example.com';
  const secret = opts.secret ?? 'test-secret';
  const ports = {
    c2sPort: opts.c2sPort ?? portBase,
    componentPort: portBase + 1,
    httpPort: portBase + 2,
    distPort: portBase + 3,
    proxy65Port: portBase + 4,
  };

  // Everything explicit: XR_EJ_VHOST etc. in the caller's environment may be
  // meant for the component, not for the server.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XR_RUN_DIR: runDir,
    XR_EJ_VHOST: domain,
    XR_EJ_COMPONENT_DOMAIN: componentDomain,
    XR_EJ_COMPONENT_SECRET: secret,
    XR_EJ_C2S_PORT: String(ports.c2sPort),
    XR_EJ_COMPONENT_PORT: String(ports.componentPort),
    XR_EJ_HTTP_PORT: String(ports.httpPort),
    XR_EJ_DIST_PORT: String(ports.distPort),
    XR_EJ_PROXY65_PORT: String(ports.proxy65Port),
    XR_EJ_NODE: nodeName,
    XR_EJ_SHAPER: shaper,
    XR_EJ_CERTFILE: opts.certFile ?? '',
    XR_EJ_STARTTLS: String(opts.starttls ?? false),
    XR_EJ_COMPONENT_TLS: String(opts.componentTls ?? false),
    XR_EJ_DOMAIN_BALANCING: opts.domainBalancing ?? '',
    XR_EJ_LISTEN_IP: opts.listenIp ?? '127.0.0.1',
    XR_EJ_PROXY65_IP: opts.proxy65Ip ?? '127.0.0.1',
    XR_EJ_PROXY65_HOST: opts.proxy65Host ?? '127.0.0.1',
  };
  const run = (args: string[], timeoutMs: number) => runScript(script, env, args, timeoutMs, opts.netns);

  await run(['start'], START_TIMEOUT_MS);

  return {
    domain,
    componentDomain,
    secret,
    c2sPort: ports.c2sPort,
    componentPort: ports.componentPort,
    httpPort: ports.httpPort,
    proxy65Port: ports.proxy65Port,
    runDir,
    async register(user: string, password: string): Promise<void> {
      await run(['register', user, password], REGISTER_TIMEOUT_MS);
    },
    async restart(): Promise<void> {
      await run(['restart'], STOP_TIMEOUT_MS + START_TIMEOUT_MS);
    },
    async stop(): Promise<void> {
      await run(['stop'], STOP_TIMEOUT_MS);
    },
  };
}
