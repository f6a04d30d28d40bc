// Which streamhosts a libpurple user is offered, and in which order: the
// server's XEP-0065 proxy found by service discovery (nothing configured),
// and the per-user memory of the streamhost that worked. The real ejabberd
// (its mod_proxy65), the real libpurple receiver, whose `streamhosts` event is
// the bytestreams offer as it arrived on the wire, in the order libpurple
// tries the hosts. Files are checked byte-exact by SHA-256.
//
// "Our streamhost is unusable" is made on loopback the way a dropped packet
// behaves: the offer names a silent listener that accepts the TCP connection
// and never answers the SOCKS5 greeting, so libpurple waits out its
// per-streamhost timeout (si.c, STREAMHOST_CONNECT_TIMEOUT; libpurple 2.14.12
// logs "Streamhost connection timeout of 5 seconds exceeded") before it tries
// the next one, as it would behind a firewall that drops. No firewall rule is
// touched.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPurpleReceiver } from '../support/purple.js';
import { field, type ReceiverEvent, type ReceiverProcess } from '../support/receiver.js';
import { getEjabberd, getIntranet, startComponent, user, type RunningComponent } from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let projectCounter = 600000 + Math.floor(Math.random() * 90000);

interface Rx {
  proc: ReceiverProcess;
  outDir: string;
}

async function startReceiver(name: string): Promise<Rx> {
  const ej = await getEjabberd();
  const u = await user(name);
  const outDir = await mkdtemp(join(tmpdir(), 'xr-rx-sh-'));
  const proc = await startPurpleReceiver({
    jid: `${u.jid}/purple`,
    password: u.password,
    host: '127.0.0.1',
    port: ej.c2sPort,
    outDir,
    timeoutSec: 600,
  });
  return { proc, outDir };
}

async function stopReceiver(rx: Rx | undefined): Promise<void> {
  if (!rx) return;
  await rx.proc.quit();
  await rm(rx.outDir, { recursive: true, force: true });
}

async function publish(body: Buffer): Promise<string> {
  const project = String(projectCounter++);
  (await getIntranet()).projects.set(project, { kind: 'file', body });
  return project;
}

interface Host {
  jid: string;
  host: string;
  port: number;
}

/** Asks for the report; resolves with the streamhosts offered, the end of the transfer and the closing line. */
async function request(rx: Rx, project: string): Promise<{ hosts: Host[]; end: ReceiverEvent; final: ReceiverEvent }> {
  const ej = await getEjabberd();
  rx.proc.send(`${project}@${ej.componentDomain}`, 'report');
  const offer = await rx.proc.waitFor(
    (e) => e.event === 'streamhosts' && field(e, 'from').startsWith(`${project}@`),
    60000,
  );
  const end = await rx.proc.waitFor(
    (e) => (e.event === 'received' || e.event === 'failed') && field(e, 'name') === `status-${project}.pdf`,
    120000,
  );
  const final = await rx.proc.waitFor(
    (e) =>
      e.event === 'message' &&
      field(e, 'body').includes(`status-${project}.pdf`) &&
      !/^Sending /.test(field(e, 'body')),
    60000,
  );
  return { hosts: offer.hosts as Host[], end, final };
}

function expectDelivered(r: { end: ReceiverEvent; final: ReceiverEvent }, body: Buffer): void {
  expect(r.end.event, JSON.stringify(r.end)).to.equal('received');
  expect(r.end.method).to.equal('s5b');
  expect(r.end.size).to.equal(body.length);
  expect(r.end.sha256).to.equal(sha256(body));
  expect(String(r.final.body)).to.match(/^Delivered status-\d+\.pdf \(.* by direct connection\.$/);
}

/** Accepts TCP connections and never answers: a SOCKS5 server behind a dropping firewall, as the client sees it. */
class SilentListener {
  readonly connections: Array<{ socket: Socket; bytes: Buffer[] }> = [];
  private constructor(private readonly server: Server) {}

  static async start(): Promise<SilentListener> {
    const server = createServer();
    const l = new SilentListener(server);
    server.on('connection', (socket) => {
      const c = { socket, bytes: [] as Buffer[] };
      socket.on('data', (b: Buffer) => c.bytes.push(b));
      socket.on('error', () => {});
      l.connections.push(c);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return l;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

describe("integration: the server's proxy, discovered, and the streamhost each user could use", function () {
  this.timeout(300000);

  describe('with nothing configured', () => {
    let comp: RunningComponent;
    let rx: Rx;
    before(async function () {
      this.timeout(120000);
      comp = await startComponent({
        XR_REPORTS_SOURCE: 'http',
        XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
      });
      rx = await startReceiver('dora');
    });
    after(async () => {
      await stopReceiver(rx);
      await comp?.stop();
    });

    it("finds ejabberd's mod_proxy65 by disco and offers it after our own streamhost", async () => {
      const ej = await getEjabberd();
      const found = comp.logged('proxies discovered');
      expect(found, 'a "proxies discovered" log line').to.have.length(1);
      expect(found[0]).to.deep.include({
        domain: ej.domain,
        discovered: [`proxy.${ej.domain}`],
        offered: [`proxy.${ej.domain} 127.0.0.1:${ej.proxy65Port}`],
      });
      const body = randomBytes(200_000);
      const project = await publish(body);
      const r = await request(rx, project);
      expect(r.hosts).to.deep.equal([
        { jid: `${project}@${ej.componentDomain}/reports`, host: '127.0.0.1', port: comp.app.streamhost!.port },
        { jid: `proxy.${ej.domain}`, host: '127.0.0.1', port: ej.proxy65Port },
      ]);
      expectDelivered(r, body);
      expect(comp.logged('bytestream connected').find((l) => l.project === project)).to.include({
        streamhost: `${project}@${ej.componentDomain}/reports`,
      });
    });
  });

  describe('with transfer.discoverProxies off', () => {
    let comp: RunningComponent;
    let rx: Rx;
    before(async function () {
      this.timeout(120000);
      comp = await startComponent({
        XR_REPORTS_SOURCE: 'http',
        XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
        XR_DISCOVER_PROXIES: 'false',
      });
      rx = await startReceiver('dora');
    });
    after(async () => {
      await stopReceiver(rx);
      await comp?.stop();
    });

    it('asks the server nothing and offers only its own streamhost', async () => {
      const ej = await getEjabberd();
      expect(comp.logged(/proxies discovered|no proxy found/)).to.have.length(0);
      const body = randomBytes(1000);
      const project = await publish(body);
      const r = await request(rx, project);
      expect(r.hosts.map((h) => h.jid)).to.deep.equal([`${project}@${ej.componentDomain}/reports`]);
      expectDelivered(r, body);
    });
  });

  describe('when our streamhost cannot be reached (a silent listener instead)', () => {
    let comp: RunningComponent;
    let silent: SilentListener;
    let homer: Rx;
    let marge: Rx | undefined;
    before(async function () {
      this.timeout(120000);
      silent = await SilentListener.start();
      comp = await startComponent({
        XR_REPORTS_SOURCE: 'http',
        XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
        XR_PROXY_ADVERTISE_PORT: String(silent.port),
      });
      homer = await startReceiver('homer');
    });
    after(async () => {
      await stopReceiver(homer);
      await stopReceiver(marge);
      await comp?.stop();
      await silent?.stop();
    });

    it('first request: our streamhost is tried and waited out, the file comes through the proxy', async () => {
      const ej = await getEjabberd();
      const body = randomBytes(3_000_000);
      const project = await publish(body);
      const r = await request(homer, project);
      const own = { jid: `${project}@${ej.componentDomain}/reports`, host: '127.0.0.1', port: silent.port };
      const proxy = { jid: `proxy.${ej.domain}`, host: '127.0.0.1', port: ej.proxy65Port };
      expect(r.hosts).to.deep.equal([own, proxy]);
      expectDelivered(r, body);
      // libpurple did try the silent one first: it connected and sent its SOCKS5 greeting (05 01 00).
      expect(silent.connections).to.have.length(1);
      expect(Buffer.concat(silent.connections[0].bytes).subarray(0, 3).toString('hex')).to.equal('050100');
      expect(comp.logged('bytestream connected').find((l) => l.project === project)).to.include({
        streamhost: proxy.jid,
      });
      const changed = comp.logged('streamhost order changed');
      expect(changed).to.have.length(1);
      expect(changed[0]).to.deep.include({
        jid: `homer@${ej.domain}`,
        streamhost: proxy.jid,
        order: [proxy.jid, `127.0.0.1:${silent.port}`],
      });
    });

    it('second request of the same user: the proxy is offered first, our streamhost is not tried', async () => {
      const ej = await getEjabberd();
      const body = randomBytes(2_000_000);
      const project = await publish(body);
      const before = silent.connections.length;
      const r = await request(homer, project);
      expect(r.hosts).to.deep.equal([
        { jid: `proxy.${ej.domain}`, host: '127.0.0.1', port: ej.proxy65Port },
        { jid: `${project}@${ej.componentDomain}/reports`, host: '127.0.0.1', port: silent.port },
      ]);
      expectDelivered(r, body);
      expect(silent.connections.length, 'connections to the silent streamhost').to.equal(before);
      expect(comp.logged('bytestream connected').find((l) => l.project === project)).to.include({
        streamhost: `proxy.${ej.domain}`,
      });
      expect(comp.logged('streamhost order changed'), 'the order stayed as learnt').to.have.length(1);
    });

    it("another user's first offer still lists our streamhost first", async () => {
      const ej = await getEjabberd();
      marge = await startReceiver('marge');
      const body = randomBytes(500_000);
      const project = await publish(body);
      const r = await request(marge, project);
      expect(r.hosts.map((h) => h.jid)).to.deep.equal([
        `${project}@${ej.componentDomain}/reports`,
        `proxy.${ej.domain}`,
      ]);
      expectDelivered(r, body); // after waiting out the silent one, like homer's first request
      const changed = comp.logged('streamhost order changed').filter((l) => l.jid === `marge@${ej.domain}`);
      expect(changed).to.have.length(1);
      expect(changed[0].streamhost).to.equal(`proxy.${ej.domain}`);
    });
  });
});
