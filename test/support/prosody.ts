// A private Prosody 0.12 for integration tests and benchmarks, driven through
// scripts/prosody.sh (config rendered from scripts/prosody/prosody.test.cfg.lua.tmpl
// into the run dir, `prosody --config FILE -F` in its own process group).
// The same shape as EjabberdInstance where it makes sense, so a test can run
// one case against both servers (see TestServer in ./server.ts).
//
// Ports derive from portBase: c2s = portBase, component = +1, proxy65 = +2.
// Prosody accepts one connection per component domain: never run two component
// instances against one Prosody at once (the second gets `conflict`).
import { join, resolve } from 'node:path';
import { findRepoRoot, runServerScript, type TestServer } from './server.js';

export interface ProsodyInstance extends TestServer {
  readonly kind: 'prosody';
  /** Prosody's own log (its file in the run dir), for assertions on what the server said. */
  readLog(): Promise<string>;
}

export interface ProsodyOptions {
  runDir: string;
  portBase: number;
  domain: string;
  componentDomain: string;
  secret: string;
  /** proxy65_acl allowing the vhost's users and the component (default true); false = none, proxy65 refuses components */
  proxy65Acl: boolean;
  /** network_default_read_size (default 65536; Prosody's own default is 4096) */
  readSize: number;
}

export const DEFAULT_PROSODY_PORT_BASE = 16222;

const START_TIMEOUT_MS = 60_000; // the script gives up after 30 s (+ a stop)
const STOP_TIMEOUT_MS = 30_000; // the script: 15 s TERM, then KILL
const REGISTER_TIMEOUT_MS = 60_000;

export async function startProsody(opts: Partial<ProsodyOptions> = {}): Promise<ProsodyInstance> {
  const root = findRepoRoot('prosody.sh');
  const script = join(root, 'scripts', 'prosody.sh');
  const portBase = opts.portBase ?? DEFAULT_PROSODY_PORT_BASE;
  if (!Number.isInteger(portBase) || portBase < 1 || portBase > 65533)
    throw new Error(`portBase ${portBase} out of range`);
  const runDir = resolve(opts.runDir ?? join(root, '.run', `prosody-${portBase}`));
  const domain = opts.domain ?? 'example.com';
  const componentDomain = opts.componentDomain ?? 'reports.example.com';
  const secret = opts.secret ?? 'test-secret';
  const ports = { c2sPort: portBase, componentPort: portBase + 1, proxy65Port: portBase + 2 };
  // Everything explicit: XR_PR_* in the caller's environment is not meant for this instance.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XR_RUN_DIR: runDir,
    XR_PR_VHOST: domain,
    XR_PR_COMPONENT_DOMAIN: componentDomain,
    XR_PR_COMPONENT_SECRET: secret,
    XR_PR_C2S_PORT: String(ports.c2sPort),
    XR_PR_COMPONENT_PORT: String(ports.componentPort),
    XR_PR_PROXY65_PORT: String(ports.proxy65Port),
    XR_PR_PROXY65_ACL: String(opts.proxy65Acl ?? true),
    XR_PR_READ_SIZE: String(opts.readSize ?? 65536),
  };
  const run = (args: string[], timeoutMs: number) => runServerScript(script, env, args, timeoutMs);
  await run(['start'], START_TIMEOUT_MS);
  return {
    kind: 'prosody',
    domain,
    componentDomain,
    secret,
    ...ports,
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
    async readLog(): Promise<string> {
      const { readFile } = await import('node:fs/promises');
      return readFile(join(runDir, 'prosody.log'), 'utf8').catch(() => '');
    },
  };
}
