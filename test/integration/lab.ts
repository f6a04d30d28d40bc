// The product on the network lab (test/support/netlab.ts): ejabberd on `xmpp`
// (c2s, component listener and mod_proxy65 on every address), the intranet's
// report server on `intranet`, the component as its own process on
// `component`, receivers on the user hosts. One LabWorld per test file: up in
// `before`, down in `after` (and at process exit, whatever happened).
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { LAB_ADDRESSES, Netlab, type HostName } from '../support/netlab.js';
import { startPurpleReceiver } from '../support/purple.js';
import { commonReceiverArgs, field, inNetns, ReceiverProcess, type ReceiverEvent } from '../support/receiver.js';
import { startSlixReceiver } from '../support/slix.js';
import { ComponentProcess } from './harness.js';

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Ports inside the lab: each host is a namespace of its own, so nothing collides with anything outside. */
export const LAB_PORTS = {
  c2s: 5222,
  component: 5223,
  http: 5224,
  dist: 5225,
  proxy65: 5226,
  intranet: 8080,
  streamhost: 7625,
  links: 7626,
} as const;

/** The intranet's report server, run on the `intranet` host. */
export class LabIntranet {
  private constructor(
    private readonly waiting: Map<string, () => void>,
    readonly proc: ChildProcess,
    readonly dir: string,
    readonly port: number,
  ) {}

  static async start(lab: Netlab): Promise<LabIntranet> {
    const dir = await mkdtemp(join(tmpdir(), 'xr-lab-intranet-'));
    const script = join(process.cwd(), 'dist', 'test', 'support', 'report-server-main.js');
    const proc = lab.spawn('intranet', process.execPath, [script, '0.0.0.0', String(LAB_PORTS.intranet)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const lines = createInterface({ input: proc.stdout! });
    const waiting = new Map<string, () => void>();
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`report server did not start within 15 s: ${stderr}`)), 15000);
      proc.once('exit', (code) => reject(new Error(`report server exited (${code}): ${stderr}`)));
      lines.on('line', (line) => {
        const m = JSON.parse(line) as { listening?: number; set?: string };
        if (m.listening !== undefined) {
          clearTimeout(timer);
          resolve(m.listening);
        }
        if (m.set !== undefined) waiting.get(m.set)?.();
      });
    });
    return new LabIntranet(waiting, proc, dir, port);
  }

  get urlTemplate(): string {
    return `http://${LAB_ADDRESSES.intranet.v4}:${this.port}/projects/{project}/status.pdf`;
  }

  /** Publishes body as the project's report (bounded wait for the server's confirmation). */
  async publish(project: string, body: Buffer): Promise<void> {
    const file = join(this.dir, `${project}.pdf`);
    await writeFile(file, body);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`report server did not take project ${project}`)), 10000);
      this.waiting.set(project, () => {
        clearTimeout(timer);
        this.waiting.delete(project);
        resolve();
      });
      this.proc.stdin!.write(`${JSON.stringify({ project, file })}\n`);
    });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const gone = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

export interface LabWorld {
  lab: Netlab;
  ej: EjabberdInstance;
  intranet: LabIntranet;
  runDir: string;
}

/** The lab, ejabberd on `xmpp` and the intranet on `intranet`; stop with stopLabWorld. */
export async function startLabWorld(): Promise<LabWorld> {
  const lab = await Netlab.up();
  const runDir = join(process.cwd(), '.run', `lab-${lab.prefix}`);
  try {
    await mkdir(runDir, { recursive: true });
    const ej = await startEjabberd({
      runDir: join(runDir, 'ejabberd'),
      portBase: LAB_PORTS.c2s,
      nodeName: `${lab.prefix}@localhost`,
      listenIp: '::',
      proxy65Ip: '::',
      proxy65Host: LAB_ADDRESSES.xmpp.v4,
      netns: lab.ns('xmpp'),
    });
    const intranet = await LabIntranet.start(lab);
    return { lab, ej, intranet, runDir };
  } catch (err) {
    await lab.down();
    throw err;
  }
}

export async function stopLabWorld(w: LabWorld | undefined): Promise<void> {
  if (!w) return;
  try {
    await ReceiverProcess.stopAll();
    await w.intranet.stop().catch(() => {});
    await w.ej.stop().catch(() => {});
  } finally {
    await w.lab.down();
    await rm(w.runDir, { recursive: true, force: true });
  }
}

/** The component's environment in the lab: ejabberd on `xmpp`, reports from `intranet`. */
export function labComponentEnv(w: LabWorld, env: Record<string, string> = {}): Record<string, string> {
  return {
    XR_XMPP_SERVICE: `xmpp://${LAB_ADDRESSES.xmpp.v4}:${w.ej.componentPort}`,
    XR_REPORTS_SOURCE: 'http',
    XR_REPORTS_URL_TEMPLATE: w.intranet.urlTemplate,
    XR_PROXY_BIND_HOST: '::',
    XR_PROXY_BIND_PORT: String(LAB_PORTS.streamhost),
    XR_LINKS_BIND_PORT: String(LAB_PORTS.links),
    XR_METRICS_BIND_PORT: '0',
    XR_LOG_LEVEL: 'debug',
    ...env,
  };
}

/** Starts the component as its own process on the `component` host. */
export function startLabComponent(
  w: LabWorld,
  env: Record<string, string> = {},
  ejabberd: EjabberdInstance = w.ej,
): Promise<ComponentProcess> {
  return ComponentProcess.spawn(labComponentEnv(w, env), { ejabberd, netns: w.lab.ns('component') });
}

export interface LabReceiver {
  proc: ReceiverProcess;
  outDir: string;
  jid: string;
}

/** A receiving user (libpurple or slixmpp) on a user host, logged in to ejabberd at the address it can reach. */
export async function startLabReceiver(
  w: LabWorld,
  kind: 'purple' | 'slix' | 'jingle',
  host: HostName,
  name: string,
  extra: { methods?: string[]; ejabberd?: EjabberdInstance } = {},
): Promise<LabReceiver> {
  const { ejabberd: ej = w.ej, ...rest } = extra;
  const password = `pw-${name}`;
  await ej.register(name, password);
  const outDir = await mkdtemp(join(tmpdir(), `xr-lab-rx-${name}-`));
  const a = LAB_ADDRESSES.xmpp;
  const jid = `${name}@${ej.domain}/${kind}`;
  const common = {
    jid,
    password,
    host: LAB_ADDRESSES[host].v4 === undefined ? a.v6! : a.v4!,
    port: ej.c2sPort,
    outDir,
    timeoutSec: 600,
    netns: w.lab.ns(host),
    ...rest,
  };
  let proc: ReceiverProcess;
  if (kind === 'jingle') {
    // test/clients/jingle-receiver.ts: an @xmpp/client Jingle receiver (S5B and IBB transports)
    const script = join(process.cwd(), 'dist', 'test', 'clients', 'jingle-receiver.js');
    const [cmd, argv] = inNetns(common.netns, process.execPath, [script, ...commonReceiverArgs(common)]);
    proc = await ReceiverProcess.start(cmd, argv, { name: `jingle-receiver ${jid}`, startTimeoutMs: 30000 });
  } else proc = kind === 'purple' ? await startPurpleReceiver(common) : await startSlixReceiver(common);
  return { proc, outDir, jid };
}

const isEnd = (project: string) => (e: ReceiverEvent) =>
  (e.event === 'received' || e.event === 'failed' || e.event === 'declined') &&
  field(e, 'name') === `status-${project}.pdf`;

/** Asks for a report from a receiver and resolves with the transfer's end event (bounded). */
export async function requestReport(
  w: LabWorld,
  rx: LabReceiver,
  project: string,
  timeoutMs = 120000,
): Promise<ReceiverEvent> {
  rx.proc.send(`${project}@${w.ej.componentDomain}`, 'report');
  return rx.proc.waitFor(isEnd(project), timeoutMs);
}

/** Downloads url from inside a lab host (node's fetch there) and resolves with the bytes. */
export async function fetchFrom(w: LabWorld, host: HostName, url: string): Promise<Buffer> {
  const code = `fetch(process.argv[1], { signal: AbortSignal.timeout(20000) }).then(async (r) => {
    if (!r.ok) { process.stderr.write('HTTP ' + r.status); process.exit(1); }
    process.stdout.write(Buffer.from(await r.arrayBuffer()).toString('base64'));
  }).catch((e) => { process.stderr.write(String(e)); process.exit(1); });`;
  const out = await w.lab.exec(host, process.execPath, ['-e', code, url]);
  return Buffer.from(out, 'base64');
}
