// Jingle file transfer (XEP-0234 over XEP-0260 S5B) to a real Dino 0.4.2,
// driven headless (test/support/dino.ts): the user messages the project
// JID, the report lands on Dino's disk byte-exact.
//
// Dino has no host/port setting: it connects to localhost:5222 with its
// vhost and insists on STARTTLS with a certificate it trusts. So this file
// runs its own ejabberd (vhost `localhost`, component `reports.localhost`,
// c2s on 127.0.0.1:5222 with STARTTLS and a test-CA certificate, the other
// ports from XR_DINO_PORT_BASE, default 28222), not the shared test one.
// If something else listens on 5222 (e.g. the system ejabberd service) the
// test fails with a message saying so; nothing is stopped for it.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rm, mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { DinoClient, ensureDinoDeps, makeTestCa } from '../support/dino.js';
import { getIntranet, startComponent, type RunningComponent } from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const repoRoot = process.cwd();
const runDir = join(repoRoot, '.run', 'dino');
let projectCounter = 810000 + Math.floor(Math.random() * 90000);

function portTaken(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (taken: boolean) => {
      s.destroy();
      resolve(taken);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function stopLeftover(ejRunDir: string): Promise<void> {
  return new Promise((resolve) => {
    execFile(
      'bash',
      [join(repoRoot, 'scripts', 'ejabberd.sh'), 'stop'],
      { env: { ...process.env, XR_RUN_DIR: ejRunDir }, timeout: 60_000 },
      () => resolve(),
    );
  });
}

/** The XMPP stanzas Dino received (its --print-xmpp log), each as text. */
function incomingStanzas(log: string): string[] {
  return log
    .split(/\nXMPP (?=IN |OUT )/)
    .filter((b) => b.startsWith('IN '))
    .map((b) => b.slice(b.indexOf('\n') + 1));
}

describe('integration: Jingle file transfer to a real Dino 0.4.2', function () {
  this.timeout(300_000);
  let ej: EjabberdInstance;
  let dino: DinoClient;
  const user = { name: 'dave', password: 'pw-dave' };

  before(async function () {
    this.timeout(20 * 60_000); // a first run installs dino-im and friends
    await ensureDinoDeps(repoRoot);
    // An instance left running by an interrupted run of this file is ours to stop (its run dir says so).
    await stopLeftover(join(runDir, 'ejabberd'));
    for (const host of ['127.0.0.1', '::1']) {
      if (await portTaken(host, 5222)) {
        throw new Error(
          `port 5222 on ${host} is in use. The Dino test needs it for its own ejabberd, because Dino always connects to localhost:5222. ` +
            'Is the system ejabberd service running (systemctl status ejabberd)? Stop it, or whatever listens there, and run the test again; the test does not stop it for you.',
        );
      }
    }
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const ca = await makeTestCa(join(runDir, 'tls'));
    ej = await startEjabberd({
      runDir: join(runDir, 'ejabberd'),
      portBase: Number(process.env.XR_DINO_PORT_BASE ?? 28222),
      c2sPort: 5222,
      nodeName: 'xrdino@localhost',
      domain: 'localhost',
      componentDomain: 'reports.localhost',
      certFile: ca.serverPem,
      starttls: true,
    });
    await ej.register(user.name, user.password);
    dino = await DinoClient.start({
      workDir: join(runDir, 'dino'),
      jid: `${user.name}@localhost`,
      password: user.password,
      caBundle: ca.bundle,
    });
  });

  after(async function () {
    this.timeout(120_000);
    if (dino && this.currentTest?.state === 'failed')
      await dino.screenshot(join(runDir, 'failure.png')).catch(() => {});
    await dino?.stop();
    await ej?.stop();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && dino)
      await dino.screenshot(join(runDir, `failed-${Date.now()}.png`)).catch(() => {});
  });

  /** A new project whose report is `body`, in Dino's roster (so Dino accepts its files) with a conversation open. */
  async function project(body: Buffer): Promise<{ id: string; jid: string; full: string }> {
    const id = String(projectCounter++);
    (await getIntranet()).projects.set(id, { kind: 'file', body });
    const jid = `${id}@${ej.componentDomain}`;
    const res = await fetch(`http://127.0.0.1:${ej.httpPort}/api/add_rosteritem`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        localuser: user.name,
        localhost: ej.domain,
        user: id,
        host: ej.componentDomain,
        nick: `Project ${id}`,
        group: 'Reports',
        subs: 'both',
      }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.status, await res.text()).to.equal(200);
    await dino.openChat(jid);
    return { id, jid, full: `${jid}/reports` };
  }

  async function component(env: Record<string, string>): Promise<RunningComponent> {
    return startComponent(
      {
        XR_REPORTS_SOURCE: 'http',
        XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
        XR_JINGLE_PEER_NETWORKS: '127.0.0.0/8', // loopback only, here
        XR_DISCOVER_PROXIES: 'false', // these cases are about our streamhost and Dino's own candidates
        ...env,
      },
      { ejabberd: ej },
    );
  }

  describe("with the component's own streamhost reachable", () => {
    let comp: RunningComponent;
    before(async () => {
      comp = await component({});
    });
    after(async () => {
      await comp?.stop();
    });

    it("delivers the report byte-exact by Jingle S5B, every stanza from the project's full JID", async () => {
      const body = randomBytes(3_000_000);
      const p = await project(body);
      const before = await dino.files();
      const logFrom = await dino.logOffset;
      await dino.sendMessage('report');
      const got = await dino.waitForFile(`status-${p.id}.pdf`, body.length, before, 120_000);
      expect(got.sha256).to.equal(sha256(body));
      // The user is told, and the component logged a Jingle S5B delivery.
      const log = await dino.waitForLog(
        new RegExp(`Delivered status-${p.id}\\.pdf \\(2\\.9 MiB\\) by direct connection\\.`),
        logFrom,
        30_000,
        'the closing message',
      );
      const delivered = comp.logged('delivered').find((l) => l.project === p.id);
      expect(delivered).to.include({ method: 's5b', bytes: body.length, protocol: 'jingle' });
      const connected = comp.logged('bytestream connected').find((l) => l.project === p.id);
      expect(connected).to.include({ side: 'ours' });
      expect(String(connected!.candidate)).to.match(/^direct 127\.0\.0\.1:\d+$/);
      expect(comp.logged('receiver confirmed').find((l) => l.project === p.id)).to.include({
        confirmedBy: 'session-terminate',
      });
      // Everything Dino got from the project came from its full JID, which is also the session's initiator.
      const sid = String(delivered!.sid);
      const fromProject = incomingStanzas(log).filter((s) => s.includes(`{jabber:client}:from='${p.jid}`));
      expect(fromProject.length).to.be.greaterThan(4);
      for (const s of fromProject) expect(s, s).to.include(`{jabber:client}:from='${p.full}'`);
      const ours = fromProject.filter((s) => s.includes(`sid='${sid}'`));
      expect(ours.length).to.be.at.least(3); // session-initiate, transport-info, checksum (Dino ends the session itself)
      for (const s of ours) expect(s).to.include(`{urn:xmpp:jingle:1}:initiator='${p.full}'`);
      const initiate = ours.find((s) => s.includes(":action='session-initiate'"))!;
      expect(initiate).to.include(`status-${p.id}.pdf`);
      // XEP-0234 §8.1: the offer announces the hash (hash-used) instead of waiting for it; Dino takes it so.
      expect(initiate).to.include('hash-used');
      expect(initiate).to.include(`algo='sha-256'`);
      // The checksum (§8.2) follows the last byte (the hash of 3 MB is ready long before Dino's session-terminate).
      const checksum = ours.find((s) => s.includes(":action='session-info'") && s.includes('checksum'));
      expect(checksum, 'a session-info <checksum/>').to.not.equal(undefined);
      expect(checksum).to.include(Buffer.from(sha256(body), 'hex').toString('base64'));
    });
  });

  describe("when the component's streamhost is unreachable", () => {
    let comp: RunningComponent;
    before(async () => {
      comp = await component({ XR_PROXY_ADVERTISE_PORT: '9' }); // discard: nobody listens on 127.0.0.1:9
    });
    after(async () => {
      await comp?.stop();
    });

    it("uses Dino's own proxy candidate (ejabberd mod_proxy65, activated by Dino), byte-exact", async () => {
      const body = randomBytes(1_000_000);
      const p = await project(body);
      const before = await dino.files();
      await dino.sendMessage('report');
      const got = await dino.waitForFile(`status-${p.id}.pdf`, body.length, before, 120_000);
      expect(got.sha256).to.equal(sha256(body));
      const connected = comp.logged('bytestream connected').find((l) => l.project === p.id);
      expect(connected).to.include({ side: 'theirs', method: 's5b' });
      expect(String(connected!.candidate)).to.equal(`proxy 127.0.0.1:${ej.proxy65Port}`);
      // Dino's candidates on other interfaces were never tried: loopback only.
      const skipped = comp.logged('responder candidate not used').filter((l) => l.project === p.id);
      for (const s of skipped)
        expect(String(s.why)).to.match(/outside transfer\.jingle\.peerNetworks|no longer needed/);
      expect(comp.logged('delivered').find((l) => l.project === p.id)).to.include({
        method: 's5b',
        bytes: body.length,
      });
    });
  });

  describe('when no direct connection is possible at all', () => {
    let comp: RunningComponent;
    before(async () => {
      comp = await component({
        XR_PROXY_ADVERTISE_PORT: '9',
        XR_JINGLE_PEER_NETWORKS: 'none',
        XR_LINKS_PUBLIC_BASE_URL: `http://127.0.0.1:${ej.httpPort + 8}/files/`,
        XR_LINKS_BIND_HOST: '127.0.0.1',
        XR_LINKS_BIND_PORT: String(ej.httpPort + 8),
        XR_LINKS_STATE_DIR: join(runDir, 'links'),
      });
    });
    after(async () => {
      await comp?.stop();
    });

    it("never trusts Dino's Jingle IBB: sends a link with a word of why, and Dino fetches it byte-exact", async () => {
      const body = randomBytes(1_000_000);
      const p = await project(body);
      const before = await dino.files();
      const logFrom = await dino.logOffset;
      await dino.sendMessage('report');
      await dino.waitForLog(
        /A direct connection to your chat client was not possible, and its in-band file transfer does not reliably save files/,
        logFrom,
        120_000,
        'the link-instead message',
      );
      // Dino downloads an OOB link from a roster contact by itself.
      const got = await dino.waitForFile(`status-${p.id}.pdf`, body.length, before, 60_000);
      expect(got.sha256).to.equal(sha256(body));
      const log = await dino.logSince(logFrom);
      // No in-band bytestream was ever opened.
      expect(log).to.not.include('http://jabber.org/protocol/ibb}:open');
      // We never propose Jingle IBB. Dino may propose it itself when its candidates fail (it does when
      // our session-terminate is slow to come): we reject that, never accept it.
      const stanzas = log.split(/(?=XMPP (?:IN|OUT) )/);
      expect(stanzas.filter((t) => t.startsWith('XMPP IN') && t.includes(":action='transport-replace'"))).to.deep.equal(
        [],
      );
      expect(log).to.not.include(":action='transport-accept'");
      expect(comp.logged('delivered').find((l) => l.project === p.id)).to.equal(undefined);
      expect(comp.logged('link published').find((l) => l.project === p.id)).to.include({ why: 'no-direct-connection' });
    });
  });
});
