// A private ejabberd for integration tests, driven through scripts/ejabberd.sh
// (which installs ejabberd when missing, renders scripts/ejabberd/ejabberd.test.yml.tmpl
// into the run dir and starts the server in its own process group).
//
// Ports derive from portBase: c2s = portBase, component = +1, http = +2,
// Erlang distribution = +3, proxy65 = +4. The default portBase (15222, or
// XR_EJ_PORT_BASE from the environment) gives the script's own defaults:
// 15222 / 15223 / 15224 / 15225 / 15226.
import { join, resolve } from 'node:path';
import { findRepoRoot, runServerScript, type TestServer } from './server.js';

export interface EjabberdInstance extends TestServer {
  readonly kind: 'ejabberd';
  httpPort: number;
  /** Runs `ejabberdctl ARGS` against this instance (scripts/ejabberd.sh ctl) and resolves with its stdout. */
  ctl(...args: string[]): Promise<string>;
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
  /** load mod_xr_failover (XR_EJ_FAILOVER): a dead balancing slot's stanzas go to a live connection */
  failover: boolean;
  /** Address of the c2s, component and HTTP listeners (XR_EJ_LISTEN_IP); default 127.0.0.1. */
  listenIp: string;
  /** Address mod_proxy65 listens on (XR_EJ_PROXY65_IP) and the host it announces (XR_EJ_PROXY65_HOST); default 127.0.0.1. */
  proxy65Ip: string;
  proxy65Host: string;
  /** Run the server (and every script command) inside this network namespace (`ip netns exec`). */
  netns: string;
  /** A cluster across hosts: the IPv4 address of the Erlang distribution (XR_EJ_DIST_IP; default 127.0.0.1). */
  distIp: string;
  /** File with the cluster's own Erlang cookie (XR_EJ_COOKIE_FILE); default none (Debian's). */
  cookieFile: string;
  /** A node of the cluster to join after start (XR_EJ_JOIN), e.g. ej1@192.0.2.10. */
  join: string;
}

export const DEFAULT_PORT_BASE = 15222;

const START_TIMEOUT_MS = 120_000; // the script itself gives up after 60 s (+ a stop)
const STOP_TIMEOUT_MS = 45_000; // the script: 20 s TERM, then KILL
const REGISTER_TIMEOUT_MS = 30_000;

function portBaseFromEnv(): number | undefined {
  const raw = process.env.XR_EJ_PORT_BASE;
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new Error(`XR_EJ_PORT_BASE=${raw} is not a number`);
  return n;
}

export async function startEjabberd(opts: Partial<EjabberdOptions> = {}): Promise<EjabberdInstance> {
  const root = findRepoRoot('ejabberd.sh');
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
    XR_EJ_FAILOVER: String(opts.failover ?? false),
    XR_EJ_LISTEN_IP: opts.listenIp ?? '127.0.0.1',
    XR_EJ_PROXY65_IP: opts.proxy65Ip ?? '127.0.0.1',
    XR_EJ_PROXY65_HOST: opts.proxy65Host ?? '127.0.0.1',
    XR_EJ_DIST_IP: opts.distIp ?? '127.0.0.1',
    XR_EJ_COOKIE_FILE: opts.cookieFile ?? '',
    XR_EJ_JOIN: opts.join ?? '',
  };
  const run = (args: string[], timeoutMs: number) => runServerScript(script, env, args, timeoutMs, opts.netns);

  await run(['start'], START_TIMEOUT_MS);

  return {
    kind: 'ejabberd',
    domain,
    componentDomain,
    secret,
    c2sPort: ports.c2sPort,
    componentPort: ports.componentPort,
    httpPort: ports.httpPort,
    proxy65Port: ports.proxy65Port,
    proxyJid: `proxy.${domain}`,
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
    ctl(...args: string[]): Promise<string> {
      return run(['ctl', ...args], REGISTER_TIMEOUT_MS);
    },
  };
}
