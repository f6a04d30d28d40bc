// The component's link to ejabberd, against two private ejabberds on loopback
// (same component domain and secret, not clustered), each with its component
// listener on direct TLS (`tls: true`, a certificate from a test CA):
// - the component verifies the certificate and its name, and a libpurple user
//   gets a report in-band, byte-exact, so the report itself crosses the TLS link;
// - a certificate from another CA, or the right CA with another name, stops the
//   real process at start-up (exit 2) with what the server presented, and
//   ejabberd saw no handshake;
// - xmpp.service lists both: the component uses the first; when that ejabberd
//   stops it moves to the other, says so in its log and /healthz, and a user of
//   that server gets a report byte-exact.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { startPurpleReceiver } from '../support/purple.js';
import { field, type ReceiverEvent, type ReceiverProcess } from '../support/receiver.js';
import { makeTestCa, type TestCa } from '../support/tls.js';
import {
  ComponentProcess,
  freePort,
  getIntranet,
  sleep,
  startComponent,
  type LogLine,
  type RunningComponent,
} from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
// Beside the harness's ejabberd (XR_TEST_PORT_BASE): two more, 10 ports apart.
const PORT_BASE = Number(process.env.XR_TEST_LINK_PORT_BASE ?? Number(process.env.XR_TEST_PORT_BASE ?? 25222) + 1000);
let projectCounter = 610000 + Math.floor(Math.random() * 50000);

describe('integration: the component link over TLS, and a second server to move to', function () {
  this.timeout(600000);
  let dir: string;
  let ca: TestCa;
  let otherCa: TestCa;
  const ejs: EjabberdInstance[] = [];
  let comp: RunningComponent | undefined;
  let metricsPort = 0;
  const receivers: ReceiverProcess[] = [];
  const xmpps = (ej: EjabberdInstance) => `xmpps://127.0.0.1:${ej.componentPort}`;

  before(async function () {
    this.timeout(300000);
    dir = await mkdtemp(join(tmpdir(), 'xr-link-'));
    [ca, otherCa] = await Promise.all([makeTestCa(join(dir, 'ca')), makeTestCa(join(dir, 'other-ca'))]);
    for (const [i, name] of ['a', 'b'].entries()) {
      const ej = await startEjabberd({
        runDir: join(process.cwd(), '.run', `link-ejabberd-${name}`),
        portBase: PORT_BASE + 10 * i,
        nodeName: `xrlink${name}@localhost`,
        certFile: ca.serverPem,
        componentTls: true,
      });
      ejs.push(ej);
      logStart.set(ej, (await stat(ejabberdLog(ej))).size);
    }
  });

  after(async function () {
    this.timeout(120000);
    await Promise.all(receivers.map((r) => r.quit()));
    await comp?.stop();
    for (const ej of ejs) await ej.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Component handshakes ejabberd logged so far (ejabberd_service: "Accepted external component handshake authentication"). */
  async function componentLogins(ej: EjabberdInstance): Promise<number> {
    const log = await readFile(ejabberdLog(ej)).catch(() => Buffer.alloc(0));
    // only what this run's instance wrote (the run dir, and its log, outlive a run)
    return log
      .subarray(logStart.get(ej) ?? 0)
      .toString()
      .split('\n')
      .filter((l) => /Accepted external component handshake authentication/.test(l)).length;
  }
  const logStart = new Map<EjabberdInstance, number>();
  const ejabberdLog = (ej: EjabberdInstance) => join(ej.runDir, 'logs', 'ejabberd.log');
  /** Start-ups refused for the certificate, before the component first connects to ejabberd A. */
  let refusedStarts = 0;

  async function purpleOn(ej: EjabberdInstance, name: string): Promise<ReceiverProcess> {
    await ej.register(name, `pw-${name}`);
    const rx = await startPurpleReceiver({
      jid: `${name}@${ej.domain}/purple`,
      password: `pw-${name}`,
      host: '127.0.0.1',
      port: ej.c2sPort,
      outDir: join(dir, name),
      timeoutSec: 600,
    });
    receivers.push(rx);
    return rx;
  }

  /** Publishes a report, asks for it, and checks what libpurple saved: every byte, in-band. */
  async function deliveredInBand(rx: ReceiverProcess, ej: EjabberdInstance, size: number): Promise<void> {
    const body = randomBytes(size);
    const project = String(projectCounter++);
    (await getIntranet()).projects.set(project, { kind: 'file', body });
    rx.send(`${project}@${ej.componentDomain}`, 'report');
    const isEnd = (e: ReceiverEvent) =>
      ['received', 'failed', 'declined'].includes(String(e.event)) && field(e, 'name') === `status-${project}.pdf`;
    const end = await rx.waitFor(isEnd, 120000);
    expect(end.event, JSON.stringify(end)).to.equal('received');
    expect(end.method).to.equal('ibb');
    expect(end.size).to.equal(size);
    expect(end.sha256).to.equal(sha256(body));
    const final = await rx.waitFor(
      (e) => e.event === 'message' && field(e, 'body').startsWith(`Delivered status-${project}.pdf`),
      60000,
    );
    expect(field(final, 'body')).to.match(/ in-band\.$/);
  }

  async function healthz(): Promise<Record<string, unknown>> {
    const r = await fetch(`http://127.0.0.1:${metricsPort}/healthz`, { signal: AbortSignal.timeout(10000) });
    return (await r.json()) as Record<string, unknown>;
  }

  async function waitForLog(pred: (l: LogLine) => boolean, what: string, ms: number): Promise<LogLine> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = comp!.logs.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline)
        throw new Error(`${what}: not logged within ${ms} ms; got: ${comp!.logs.map((l) => l.msg).join(' | ')}`);
      await sleep(100);
    }
  }

  for (const [what, env, expected] of [
    [
      'a certificate from another CA',
      (): Record<string, string> => ({ XR_XMPP_TLS_CA_FILE: otherCa.caCert, XR_XMPP_TLS_SERVER_NAME: 'localhost' }),
      (port: number) =>
        new RegExp(
          `^TLS to 127\\.0\\.0\\.1:${port}: the server's certificate is not trusted: it is not signed by a trusted CA \\(\\w+\\); ` +
            `trusted: the CAs in xmpp\\.tls\\.caFile \\(XR_XMPP_TLS_CA_FILE\\) .*other-ca/ca\\.crt; ` +
            `it presented "CN=localhost" \\(DNS:localhost, DNS:\\*\\.localhost\\), issued by "CN=xmpp-reports test CA"`,
        ),
    ],
    [
      'the right CA but another name',
      (): Record<string, string> => ({ XR_XMPP_TLS_CA_FILE: ca.caCert, XR_XMPP_TLS_SERVER_NAME: 'xmpp.example.net' }),
      (port: number) =>
        new RegExp(
          `^TLS to 127\\.0\\.0\\.1:${port}: the server's certificate is not for "xmpp\\.example\\.net" \\(DNS:localhost, DNS:\\*\\.localhost\\); ` +
            `the expected name is xmpp\\.tls\\.serverName \\(XR_XMPP_TLS_SERVER_NAME\\); it presented "CN=localhost"`,
        ),
    ],
  ] as const) {
    it(`${what}: the process exits 2 at start-up, saying what the server presented, and ejabberd saw no handshake`, async () => {
      const ej = ejs[0];
      const p = await ComponentProcess.spawn(
        { XR_XMPP_SERVICE: xmpps(ej), XR_XMPP_DOMAIN: ej.componentDomain, XR_XMPP_SECRET: ej.secret, ...env() },
        { online: false },
      );
      const code = await Promise.race([p.exited, sleep(30000).then(() => 'still running')]);
      if (code === 'still running') await p.stop();
      expect(code).to.equal(2);
      const fatal = p.logs.find((l) => l.level === 60);
      expect(fatal?.msg).to.match(expected(ej.componentPort));
      expect(fatal?.server).to.equal(xmpps(ej));
      refusedStarts++; // ejabberd's log, in order, shows no handshake for it: checked once the good one is logged
    });
  }

  it('over TLS: the component verifies the server and a libpurple user gets a report in-band, byte-exact', async () => {
    const [a, b] = ejs;
    metricsPort = await freePort();
    comp = await startComponent(
      {
        XR_XMPP_SERVICE: `${xmpps(a)},${xmpps(b)}`,
        XR_XMPP_TLS_CA_FILE: ca.caCert,
        XR_XMPP_TLS_SERVER_NAME: 'localhost',
        XR_REPORTS_SOURCE: 'http',
        XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
        XR_TRANSFER_METHODS: 'ibb',
        XR_IBB_BLOCK_SIZE: '4096',
        XR_METRICS_BIND_HOST: '127.0.0.1',
        XR_METRICS_BIND_PORT: String(metricsPort),
      },
      { ejabberd: a },
    );
    const connected = comp.logged('connected to the XMPP server');
    expect(connected.map((l) => [l.server, l.tls])).to.deep.equal([[xmpps(a), true]]);
    // ejabberd logs asynchronously, in order: once this handshake is there, so
    // would be any from the refused start-ups before it (there is none).
    const deadline = Date.now() + 20000;
    while ((await componentLogins(a)) === 0 && Date.now() < deadline) await sleep(200);
    expect(await componentLogins(a), `handshakes in ejabberd's log after ${refusedStarts} refused start-ups`).to.equal(
      1,
    );
    expect(await healthz()).to.include({ ok: true, xmppState: 'connected', xmppServer: xmpps(a) });
    const rx = await purpleOn(a, 'tlsalice');
    await deliveredInBand(rx, a, 300_000);
  });

  it('when its ejabberd stops, the component moves to the other one, and a user there gets a report byte-exact', async () => {
    expect(comp, 'the previous test started the component').to.not.equal(undefined);
    const [a, b] = ejs;
    const rx = await purpleOn(b, 'tlsbob');
    await a.stop();
    const warn = await waitForLog(
      (l) => l.msg === 'disconnected from the XMPP server; reconnecting',
      'the lost link',
      30000,
    );
    expect(warn).to.include({ server: xmpps(a), next: xmpps(b) });
    await waitForLog(
      (l) => l.msg === 'connected to the XMPP server' && l.server === xmpps(b),
      'connected to the second server',
      60000,
    );
    expect(await healthz()).to.include({ ok: true, xmppState: 'connected', xmppServer: xmpps(b) });
    await deliveredInBand(rx, b, 200_000);
  });
});
