// The product across separate hosts (issue 13): a network lab of namespaces
// (test/support/netlab.ts, test/integration/lab.ts) with ejabberd, the
// component, the intranet and users on hosts of their own, a NATed home user
// behind a company firewall that drops, and an IPv6-only user. Root only: when
// the lab cannot be built, the tests fail and say why.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { CORP_PUBLIC_V4, HOME_PUBLIC_V4, LAB_ADDRESSES } from '../support/netlab.js';
import { field } from '../support/receiver.js';
import type { ComponentProcess } from './harness.js';
import {
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

  describe("the office user (libpurple, on the component's LAN)", () => {
    let component: ComponentProcess | undefined;
    let rx: LabReceiver | undefined;
    before(async function () {
      this.timeout(120000);
      component = await startLabComponent(w!, { XR_PROXY_ADVERTISE_HOST: '192.0.2.20' });
      rx = await startLabReceiver(w!, 'purple', 'office', 'office1');
    });
    after(async function () {
      this.timeout(60000);
      await rx?.proc.quit();
      if (rx) await rm(rx.outDir, { recursive: true, force: true });
      await component?.stop();
    });

    it('gets the report by S5B straight from our streamhost, byte-exact', async () => {
      const body = randomBytes(3 * 1024 * 1024 + 17);
      const project = nextProject();
      await w!.intranet.publish(project, body);
      const end = await requestReport(w!, rx!, project);
      expect(end.event, JSON.stringify(end)).to.equal('received');
      expect(end.method).to.equal('s5b');
      expect(field(end, 'sha256')).to.equal(sha256(body));
      expect(sha256(await readFile(field(end, 'path')))).to.equal(sha256(body));
      const connected = component!.logs.find((l) => l.msg === 'bytestream connected' && l.project === project);
      expect(connected, 'the bytestream log line').to.not.equal(undefined);
      // our own streamhost is offered under the project's JID (XEP-0065 §5): direct, not a proxy
      expect(String(connected!.streamhost)).to.match(new RegExp(`^${project}@`));
    });
  });
});
