// The product across separate hosts (issue 13): a network lab of namespaces
// (test/support/netlab.ts, test/integration/lab.ts) with ejabberd, the
// component, the intranet and users on hosts of their own, a NATed home user
// behind a company firewall that drops, and an IPv6-only user. Root only: when
// the lab cannot be built, the tests fail and say why.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { CORP_PUBLIC_V4, HOME_PUBLIC_V4, LAB_ADDRESSES } from '../support/netlab.js';
import { field } from '../support/receiver.js';
import { makeTestCa } from '../support/tls.js';
import type { ComponentProcess, LogLine } from './harness.js';
import {
  fetchFrom,
  LAB_PORTS,
  requestReport,
  sha256,
  startLabComponent,
  startLabReceiver,
  startLabWorld,
  stopLabWorld,
  type LabReceiver,
  type LabWorld,
} from './lab.js';

let projectCounter = 930000 + Math.floor(Math.random() * 50000);
const nextProject = () => String(projectCounter++);

/** A TCP connect from a lab host: 'connected', 'timeout' (dropped) or the error code; with what the peer saw of us. */
async function probe(w: LabWorld, from: 'home' | 'office' | 'v6', host: string, port: number): Promise<string> {
  const code = `const c = require('net').connect(Number(process.argv[2]), process.argv[1]);
    const t = setTimeout(() => { console.log('timeout'); process.exit(0); }, 3000);
    c.on('connect', () => { clearTimeout(t); setTimeout(() => { console.log('connected'); process.exit(0); }, 1000); });
    c.on('data', (d) => { console.log('connected ' + String(d).trim()); process.exit(0); });
    c.on('error', (e) => { console.log(e.code); process.exit(0); });`;
  return (await w.lab.exec(from, process.execPath, ['-e', code, host, String(port)])).trim();
}

describe('integration: the network lab (namespaces, NAT, a dropping firewall)', function () {
  this.timeout(300000);
  let w: LabWorld | undefined;

  before(async function () {
    this.timeout(240000);
    w = await startLabWorld();
  });
  after(async function () {
    this.timeout(120000);
    await stopLabWorld(w);
  });

  it('routes every user network to the company, masquerades home, and drops what the firewall drops', async () => {
    // A server on the component host that tells each client the address it came from.
    const echo = w!.lab.spawn('component', process.execPath, [
      '-e',
      `require('net').createServer((c) => c.end(c.remoteAddress + '\\n')).listen(7000, '::');
       setTimeout(() => process.exit(0), 60000);`,
    ]);
    try {
      await new Promise((r) => setTimeout(r, 500));
      expect(await probe(w!, 'office', LAB_ADDRESSES.component.v4!, 7000)).to.equal(
        `connected ::ffff:${LAB_ADDRESSES.office.v4}`,
      );
      expect(await probe(w!, 'home', LAB_ADDRESSES.component.v4!, 7000), 'home arrives as its router').to.equal(
        `connected ::ffff:${HOME_PUBLIC_V4}`,
      );
      expect(await probe(w!, 'v6', LAB_ADDRESSES.component.v6!, 7000)).to.equal(`connected ${LAB_ADDRESSES.v6.v6}`);
      await w!.lab.forward(7001, 'component', 7000);
      expect(await probe(w!, 'home', CORP_PUBLIC_V4, 7001), 'a port forward on the company router').to.equal(
        `connected ::ffff:${HOME_PUBLIC_V4}`,
      );
      await w!.lab.dropFromOutside('component', 7000);
      expect(await probe(w!, 'home', LAB_ADDRESSES.component.v4!, 7000), 'dropped, not refused').to.equal('timeout');
      expect(await probe(w!, 'office', LAB_ADDRESSES.component.v4!, 7000), 'the LAN is not filtered').to.match(
        /^connected/,
      );
    } finally {
      echo.kill('SIGKILL');
    }
    // ejabberd's c2s and proxy65 are reachable from every user network.
    for (const from of ['office', 'home'] as const) {
      expect(await probe(w!, from, LAB_ADDRESSES.xmpp.v4!, w!.ej.c2sPort), `c2s from ${from}`).to.equal('connected');
      expect(await probe(w!, from, LAB_ADDRESSES.xmpp.v4!, w!.ej.proxy65Port), `proxy65 from ${from}`).to.equal(
        'connected',
      );
    }
    expect(await probe(w!, 'v6', LAB_ADDRESSES.xmpp.v6!, w!.ej.c2sPort), 'c2s over IPv6').to.equal('connected');
  });

  /** The component on its host with env; receivers per test; both stopped after. */
  function withComponent(env: () => Record<string, string>) {
    const ctx: { component?: ComponentProcess; rxs: LabReceiver[] } = { rxs: [] };
    before(async function () {
      this.timeout(60000);
      ctx.component = await startLabComponent(w!, env());
    });
    after(async function () {
      this.timeout(60000);
      for (const rx of ctx.rxs) {
        await rx.proc.quit();
        await rm(rx.outDir, { recursive: true, force: true });
      }
      await ctx.component?.stop();
    });
    return ctx;
  }

  /** Requests a fresh report; asserts it arrived byte-exact by `method`; returns the component's log lines for it. */
  async function deliver(
    ctx: { component?: ComponentProcess },
    rx: LabReceiver,
    method: 's5b' | 'ibb',
    size = 2 * 1024 * 1024 + 17,
  ) {
    const body = randomBytes(size);
    const project = nextProject();
    await w!.intranet.publish(project, body);
    const end = await requestReport(w!, rx, project);
    expect(end.event, JSON.stringify(end)).to.equal('received');
    expect(end.method, 'the method libpurple saw').to.equal(method);
    expect(field(end, 'sha256')).to.equal(sha256(body));
    expect(sha256(await readFile(field(end, 'path')))).to.equal(sha256(body));
    // the receiver may have every byte a moment before the component logs the end
    const delivered = await ctx.component!.waitForLog((l) => l.msg === 'delivered' && l.project === project, 30000);
    const lines = ctx.component!.logs.filter((l) => l.project === project);
    expect(delivered?.method, 'the method the component logged').to.equal(method);
    return { project, lines };
  }

  /** The project's full JID, under which our own streamhost is offered. */
  const own = (lines: LogLine[]) => `${String(lines[0].project)}@${w!.ej.componentDomain}/reports`;

  describe('the default streamhost (bound to all addresses, no advertiseHost)', () => {
    const ctx = withComponent(() => ({}));

    it("offers the component host's own addresses, never 127.0.0.1, and logs them at start", () => {
      const listening = ctx.component!.logs.find((l) => l.msg === 'streamhost listening');
      expect(listening?.advertised).to.deep.equal([
        `${LAB_ADDRESSES.component.v4}:${LAB_PORTS.streamhost}`,
        `[${LAB_ADDRESSES.component.v6}]:${LAB_PORTS.streamhost}`,
      ]);
      expect(ctx.component!.logs.some((l) => /only loopback/.test(l.msg))).to.equal(false);
    });

    it('the office user (libpurple, same LAN) gets the report by S5B straight from our streamhost, byte-exact', async () => {
      const rx = await startLabReceiver(w!, 'purple', 'office', 'office1');
      ctx.rxs.push(rx);
      const { project, lines } = await deliver(ctx, rx, 's5b');
      const offered = lines.find((l) => l.msg === 'streamhosts offered');
      expect(offered?.streamhosts).to.deep.equal([
        `${project}@${w!.ej.componentDomain}/reports ${LAB_ADDRESSES.component.v4}:${LAB_PORTS.streamhost}`,
        `${project}@${w!.ej.componentDomain}/reports [${LAB_ADDRESSES.component.v6}]:${LAB_PORTS.streamhost}`,
        `proxy.${w!.ej.domain} ${LAB_ADDRESSES.xmpp.v4}:${w!.ej.proxy65Port}`, // found at connect, offered last
      ]);
      // our own streamhost is offered under the project's JID (XEP-0065 §5): direct, not a proxy
      const connected = lines.find((l) => l.msg === 'bytestream connected');
      expect(String(connected?.streamhost)).to.equal(`${project}@${w!.ej.componentDomain}/reports`);
      expect(connected?.early, 'bytes before its streamhost-used (transfer.proxy.earlyClients)').to.equal(true);
    });

    it('the IPv6-only user (libpurple) gets it by S5B direct over IPv6, byte-exact', async () => {
      const rx = await startLabReceiver(w!, 'purple', 'v6', 'sixer');
      ctx.rxs.push(rx);
      const { project, lines } = await deliver(ctx, rx, 's5b');
      const connected = lines.find((l) => l.msg === 'bytestream connected');
      expect(String(connected?.streamhost)).to.equal(`${project}@${w!.ej.componentDomain}/reports`);
      expect(connected?.early, 'bytes before its streamhost-used (transfer.proxy.earlyClients)').to.equal(true);
    });
  });

  describe('the home user behind NAT, the company firewall dropping the streamhost port', () => {
    before(async function () {
      await w!.lab.dropFromOutside('component', LAB_PORTS.streamhost);
    });

    describe("with ejabberd's proxy65, found at connect", () => {
      // the default: the component finds ejabberd's proxy65 at connect (disco#items, disco#info)
      const ctx = withComponent(() => ({}));
      it('libpurple at home gets the report byte-exact by S5B through proxy65', async function () {
        this.timeout(180000);
        const rx = await startLabReceiver(w!, 'purple', 'home', 'home1');
        ctx.rxs.push(rx);
        const { lines } = await deliver(ctx, rx, 's5b');
        const connected = lines.find((l) => l.msg === 'bytestream connected');
        expect(String(connected?.streamhost), 'through the proxy, not direct').to.equal(`proxy.${w!.ej.domain}`);
        // first request: our streamhost's addresses first (the firewall drops them), the proxy last
        const offered = lines.find((l) => l.msg === 'streamhosts offered')?.streamhosts as string[];
        expect(offered.map((h) => h.split(' ')[0])).to.deep.equal([own(lines), own(lines), `proxy.${w!.ej.domain}`]);
      });

      it("the home user's second request starts with the proxy that worked (the streamhost memory)", async function () {
        this.timeout(180000);
        const rx = ctx.rxs[0];
        const { lines } = await deliver(ctx, rx, 's5b');
        const offered = lines.find((l) => l.msg === 'streamhosts offered')?.streamhosts as string[];
        expect(offered[0], 'the proxy first').to.equal(
          `proxy.${w!.ej.domain} ${LAB_ADDRESSES.xmpp.v4}:${w!.ej.proxy65Port}`,
        );
        const connected = lines.find((l) => l.msg === 'bytestream connected');
        expect(String(connected?.streamhost)).to.equal(`proxy.${w!.ej.domain}`);
      });

      it("what the home user taught changes nobody else's order: the office user still starts with our streamhost", async function () {
        this.timeout(180000);
        const rx = await startLabReceiver(w!, 'purple', 'office', 'office2');
        ctx.rxs.push(rx);
        const { lines } = await deliver(ctx, rx, 's5b');
        const offered = lines.find((l) => l.msg === 'streamhosts offered')?.streamhosts as string[];
        expect(offered[0]).to.equal(`${own(lines)} ${LAB_ADDRESSES.component.v4}:${LAB_PORTS.streamhost}`);
        expect(String(lines.find((l) => l.msg === 'bytestream connected')?.streamhost)).to.equal(own(lines));
      });
    });

    describe("Jingle at home, with ejabberd's proxy65, found at connect", () => {
      // the default: the component finds ejabberd's proxy65 at connect (disco#items, disco#info)
      const ctx = withComponent(() => ({}));
      it('a Jingle receiver at home gets the report byte-exact by Jingle S5B through proxy65', async function () {
        this.timeout(180000);
        const rx = await startLabReceiver(w!, 'jingle', 'home', 'jhome1');
        ctx.rxs.push(rx);
        const { lines } = await deliver(ctx, rx, 's5b');
        const end = rx.proc.events.find((e) => e.event === 'received');
        expect(end?.streamhost, 'the candidate the receiver used').to.equal(`proxy.${w!.ej.domain}`);
        // the direct candidates (our streamhost) were tried first and are dropped from outside
        const tried = rx.proc.events.filter((e) => e.event === 'candidate');
        expect(tried.map((e) => [e.type, e.used])).to.deep.equal([
          ['direct', false],
          ['direct', false],
          ['proxy', true],
        ]);
        const connected = lines.find((l) => l.msg === 'bytestream connected');
        expect(String(connected?.candidate)).to.match(/^proxy /);
      });
    });

    describe('Jingle at home without any proxy', () => {
      const ctx = withComponent(() => ({ XR_DISCOVER_PROXIES: 'false' }));
      it('a Jingle receiver at home gets the report byte-exact by Jingle IBB (transport-replace)', async function () {
        this.timeout(180000);
        const rx = await startLabReceiver(w!, 'jingle', 'home', 'jhome2');
        ctx.rxs.push(rx);
        const { lines } = await deliver(ctx, rx, 'ibb', 512 * 1024 + 3);
        expect(lines.some((l) => l.msg === 'bytestream connected')).to.equal(false);
        expect(rx.proc.events.find((e) => e.event === 'offer')?.transport, 'offered S5B first').to.equal(
          'urn:xmpp:jingle:transports:s5b:1',
        );
      });
    });

    describe('without any proxy', () => {
      const ctx = withComponent(() => ({ XR_DISCOVER_PROXIES: 'false' }));
      it('libpurple at home gets the report byte-exact by IBB', async function () {
        this.timeout(180000);
        const rx = await startLabReceiver(w!, 'purple', 'home', 'home2');
        ctx.rxs.push(rx);
        const { lines } = await deliver(ctx, rx, 'ibb', 512 * 1024 + 3);
        expect(lines.some((l) => l.msg === 'bytestream connected')).to.equal(false);
      });
    });

    describe("links from outside: links.publicBaseUrl at the company's public address", () => {
      const publicPort = 8443;
      const ctx = withComponent(() => ({
        XR_TRANSFER_ORDER: 'link',
        XR_LINKS_PUBLIC_BASE_URL: `http://${CORP_PUBLIC_V4}:${publicPort}/files/`,
      }));
      before(async () => {
        await w!.lab.forward(publicPort, 'component', LAB_PORTS.links);
      });
      it('the home user gets a link that downloads byte-exact from the home host', async function () {
        this.timeout(180000);
        const rx = await startLabReceiver(w!, 'purple', 'home', 'home3');
        ctx.rxs.push(rx);
        const body = randomBytes(700 * 1024 + 5);
        const project = nextProject();
        await w!.intranet.publish(project, body);
        rx.proc.send(`${project}@${w!.ej.componentDomain}`, 'report');
        const prefix = `http://${CORP_PUBLIC_V4}:${publicPort}/files/`;
        const msg = await rx.proc.waitFor((e) => e.event === 'message' && field(e, 'body').includes(prefix), 60000);
        const url = new RegExp(`${prefix.replace(/[.]/g, '\\.')}\\S+`).exec(field(msg, 'body'))![0];
        const got = await fetchFrom(w!, 'home', url);
        expect(got.length).to.equal(body.length);
        expect(sha256(got)).to.equal(sha256(body));
      });
    });
  });
  describe('the component linked to ejabberd over TLS, across hosts', () => {
    let tlsEj: EjabberdInstance | undefined;
    let component: ComponentProcess | undefined;
    let rx: LabReceiver | undefined;
    before(async function () {
      this.timeout(240000);
      const ca = await makeTestCa(join(w!.runDir, 'ca'));
      // a second ejabberd on the xmpp host, its component listener on direct TLS (certificate for "localhost")
      tlsEj = await startEjabberd({
        runDir: join(w!.runDir, 'ejabberd-tls'),
        portBase: 6222,
        nodeName: `${w!.lab.prefix}tls@localhost`,
        listenIp: '::',
        proxy65Ip: '::',
        proxy65Host: LAB_ADDRESSES.xmpp.v4,
        netns: w!.lab.ns('xmpp'),
        certFile: ca.serverPem,
        componentTls: true,
      });
      component = await startLabComponent(
        w!,
        {
          XR_XMPP_SERVICE: `xmpps://${LAB_ADDRESSES.xmpp.v4}:${tlsEj.componentPort}`,
          XR_XMPP_TLS_CA_FILE: ca.caCert,
          XR_XMPP_TLS_SERVER_NAME: 'localhost',
          XR_TRANSFER_METHODS: 'ibb', // the report's bytes travel in stanzas, over the TLS link
        },
        tlsEj,
      );
      rx = await startLabReceiver(w!, 'purple', 'office', 'tlsuser', { ejabberd: tlsEj });
    });
    after(async function () {
      this.timeout(120000);
      await rx?.proc.quit();
      if (rx) await rm(rx.outDir, { recursive: true, force: true });
      await component?.stop();
      await tlsEj?.stop();
    });

    it('connects with xmpps:// to the other host, verified, and delivers a report in-band byte-exact', async () => {
      const connected = component!.logs.find((l) => l.msg === 'connected to the XMPP server');
      expect(connected?.server).to.equal(`xmpps://${LAB_ADDRESSES.xmpp.v4}:${tlsEj!.componentPort}`);
      expect(connected?.tls).to.equal(true);
      const body = randomBytes(256 * 1024 + 9);
      const project = nextProject();
      await w!.intranet.publish(project, body);
      const end = await rx!.proc.waitFor(
        (e) => (e.event === 'received' || e.event === 'failed') && field(e, 'name') === `status-${project}.pdf`,
        (rx!.proc.send(`${project}@${tlsEj!.componentDomain}`, 'report'), 120000),
      );
      expect(end.event, JSON.stringify(end)).to.equal('received');
      expect(end.method).to.equal('ibb');
      expect(field(end, 'sha256')).to.equal(sha256(body));
    });
  });
});
