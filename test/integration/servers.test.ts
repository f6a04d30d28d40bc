// One matrix, two servers: the same cases against the private ejabberd 23.01
// and the private Prosody 0.12 (scripts/ejabberd.sh, scripts/prosody.sh), with
// the same real clients (libpurple, slixmpp, @xmpp/client). Every transfer is
// checked by the bytes on the receiver's disk and their SHA-256, every outcome
// by the text the user reads.
//
// Prosody accepts one connection per component domain: each describe below
// starts its component in its before() and stops it in its after(), so there
// is never a second component connected to the same server.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProsody, type ProsodyInstance } from '../support/prosody.js';
import type { TestServer } from '../support/server.js';
import { XmppUser } from '../support/xmpp-user.js';
import {
  ComponentProcess,
  freePort,
  getIntranet,
  prosodyPortBase,
  servers,
  sleep,
  startComponent,
  user,
  type RunningComponent,
} from './harness.js';
import {
  expectDelivered,
  projectIds,
  requestReport,
  sha256,
  startReceiver,
  stopReceiver,
  type Kind,
  type Rx,
} from './receivers.js';

const KINDS: Array<{ kind: Kind; label: string }> = [
  { kind: 'purple', label: 'libpurple' },
  { kind: 'slix', label: 'slixmpp' },
];
const { fresh, publish } = projectIds(300000);
const request = requestReport;

async function httpComponent(server: TestServer, env: Record<string, string> = {}): Promise<RunningComponent> {
  return startComponent(
    { XR_REPORTS_SOURCE: 'http', XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate, ...env },
    { server },
  );
}

for (const server of servers) {
  describe(`integration: the server matrix on ${server.name}`, function () {
    this.timeout(300000);
    let srv: TestServer;
    const rx: Partial<Record<Kind, Rx>> = {};

    before(async function () {
      this.timeout(180000);
      srv = await server.get();
      for (const { kind } of KINDS) rx[kind] = await startReceiver(srv, kind, `mx-${kind}`);
    });
    after(async () => {
      for (const { kind } of KINDS) await stopReceiver(rx[kind]);
    });

    describe("SI over SOCKS5 through the component's own streamhost", () => {
      let comp: RunningComponent;
      before(async () => (comp = await httpComponent(srv)));
      after(async () => comp.stop());

      for (const { kind, label } of KINDS)
        it(`delivers 3 MB to ${label} by direct connection, byte-exact`, async () => {
          const body = randomBytes(3_000_000);
          const project = await publish(body);
          expectDelivered(await request(srv, rx[kind]!, project), body, 's5b');
          expect(comp.logged('delivered').find((l) => l.project === project)).to.include({
            method: 's5b',
            bytes: body.length,
          });
          // libpurple (transfer.proxy.earlyClients) gets its bytes as soon as it is connected; slixmpp only
          // after its streamhost-used, as XEP-0065 §5.3.3 has it
          const connected = comp.logged('bytestream connected').find((l) => l.project === project);
          expect(connected, 'a bytestream connected line').to.include({ method: 's5b' });
          expect(connected!.early, 'bytes before streamhost-used').to.equal(kind === 'purple' ? true : undefined);
        });
    });

    describe('SI over in-band bytestreams only', () => {
      let comp: RunningComponent;
      before(async () => (comp = await httpComponent(srv, { XR_TRANSFER_METHODS: 'ibb', XR_IBB_BLOCK_SIZE: '4096' })));
      after(async () => comp.stop());

      for (const { kind, label } of KINDS)
        it(`delivers 300 kB to ${label} in-band, byte-exact`, async () => {
          const body = randomBytes(300_000);
          const project = await publish(body);
          expectDelivered(await request(srv, rx[kind]!, project), body, 'ibb');
        });
    });

    describe('the fallback from SOCKS5 to IBB when the advertised streamhost is unreachable', () => {
      let comp: RunningComponent;
      // No proxy, so the only way left after our streamhost is IBB.
      before(
        async () =>
          (comp = await httpComponent(srv, {
            XR_PROXY_ADVERTISE_PORT: String(await freePort()),
            XR_DISCOVER_PROXIES: 'false',
          })),
      );
      after(async () => comp.stop());

      for (const { kind, label } of KINDS)
        it(`falls back to IBB with the same sid for ${label}, byte-exact`, async () => {
          const body = randomBytes(200_000);
          const project = await publish(body);
          expectDelivered(await request(srv, rx[kind]!, project), body, 'ibb');
          expect(comp.logged(/falling back to in-band/).some((l) => l.project === project)).to.equal(true);
        });
    });

    describe(`the server's SOCKS5 proxy (${server.name === 'prosody' ? 'proxy65 with proxy65_acl' : 'mod_proxy65'}) as an external proxy`, () => {
      let comp: RunningComponent;
      before(async () => {
        comp = await httpComponent(srv, {
          XR_PROXY_ENABLED: 'false',
          XR_DISCOVER_PROXIES: 'false', // this one as configured, not found
          XR_EXTERNAL_PROXIES: `${srv.proxyJid}@127.0.0.1:${srv.proxy65Port}`,
        });
      });
      after(async () => comp.stop());

      it('is checked at connect (XEP-0065 §4.2) and kept', () => {
        expect(comp.logged('proxy checked').map((l) => l.proxy)).to.deep.equal([srv.proxyJid]);
      });

      for (const { kind, label } of KINDS)
        it(`relays 3 MB to ${label} after activation, byte-exact`, async () => {
          const body = randomBytes(3_000_000);
          const project = await publish(body);
          expectDelivered(await request(srv, rx[kind]!, project), body, 's5b');
          expect(comp.logged('bytestream connected').find((l) => l.project === project)).to.include({
            streamhost: srv.proxyJid,
          });
        });
    });

    describe(`the server's SOCKS5 proxy found by disco#items (nothing configured)`, () => {
      let comp: RunningComponent;
      before(async () => (comp = await httpComponent(srv, { XR_PROXY_ENABLED: 'false' })));
      after(async () => comp.stop());

      it(`is discovered, checked and relays 1 MB to libpurple, byte-exact`, async () => {
        expect(comp.logged('proxy checked').map((l) => l.proxy)).to.deep.equal([srv.proxyJid]);
        const body = randomBytes(1_000_000);
        const project = await publish(body);
        expectDelivered(await request(srv, rx.purple!, project), body, 's5b');
        expect(comp.logged('bytestream connected').find((l) => l.project === project)).to.include({
          streamhost: srv.proxyJid,
        });
      });
    });

    describe('keepalive (XEP-0199 pings to the server domain)', () => {
      it(`${server.name} answers the component's pings, and the link stays up`, async () => {
        const comp = await httpComponent(srv, { XR_XMPP_KEEPALIVE_MS: '200' });
        try {
          const deadline = Date.now() + 20000;
          while (comp.logged('the XMPP server answered a ping').length < 3 && Date.now() < deadline) await sleep(50);
          expect(comp.logged('the XMPP server answered a ping').length).to.be.at.least(3);
          expect(comp.logged('the XMPP server did not answer a ping; dropping the link')).to.deep.equal([]);
          expect(comp.logged('connected to the XMPP server')).to.have.length(1);
        } finally {
          await comp.stop();
        }
      });
    });

    describe('links, for a client without file transfer', () => {
      let comp: RunningComponent;
      let plain: Rx;
      let stateDir: string;
      before(async () => {
        stateDir = await mkdtemp(join(tmpdir(), 'xr-mx-links-'));
        comp = await httpComponent(srv, {
          XR_LINKS_PUBLIC_BASE_URL: 'http://127.0.0.1:0/files/',
          XR_LINKS_BIND_HOST: '127.0.0.1',
          XR_LINKS_BIND_PORT: '0',
          XR_LINKS_STATE_DIR: stateDir,
        });
        plain = await startReceiver(srv, 'slix', 'mx-plain', { noSi: true });
      });
      after(async () => {
        await stopReceiver(plain);
        await comp.stop();
        await rm(stateDir, { recursive: true, force: true });
      });

      it('sends the link in the body and in jabber:x:oob, says why, and the file downloads byte-exact', async () => {
        const body = randomBytes(250_000);
        const project = await publish(body);
        plain.proc.send(`${project}@${srv.componentDomain}`, 'report');
        const link = await plain.proc.waitFor(
          (e) => e.event === 'message' && typeof e.oob === 'string' && String(e.oob).includes(`status-${project}.pdf`),
          60000,
        );
        expect(link.body).to.equal(link.oob);
        const final = await plain.proc.waitFor(
          (e) => e.event === 'message' && String(e.body).startsWith(`The link above downloads status-${project}.pdf`),
          30000,
        );
        expect(String(final.body)).to.match(/^The link above downloads status-\d+\.pdf \(.+\)/);
        expect(
          plain.proc.events.some(
            (e) =>
              e.event === 'message' &&
              String(e.body) ===
                `Your chat client does not receive file transfers, so here is a download link for status-${project}.pdf instead.`,
          ),
        ).to.equal(true);
        const url = String(link.oob).replace('http://127.0.0.1:0/', `http://127.0.0.1:${comp.app.linkServer!.port}/`);
        const res = await fetch(url, { signal: AbortSignal.timeout(20000) });
        expect(res.status).to.equal(200);
        expect(sha256(Buffer.from(await res.arrayBuffer()))).to.equal(sha256(body));
      });
    });

    describe('presence and subscription', () => {
      let comp: RunningComponent;
      let u: XmppUser;
      before(async () => {
        comp = await httpComponent(srv);
        const a = await user('mx-olive', srv);
        u = await XmppUser.login({ port: srv.c2sPort, domain: srv.domain, username: a.username, password: a.password });
      });
      after(async () => {
        await u?.logout();
        await comp.stop();
      });

      it('accepts a subscription, subscribes back and shows the project online with its status', async () => {
        const id = fresh();
        const project = `${id}@${srv.componentDomain}`;
        await u.presence(project, 'subscribe');
        // subscribed, or the roster push the server turns it into
        await u.waitFor(
          (e) =>
            (e.name === 'presence' && e.attrs.type === 'subscribed' && e.attrs.from === project) ||
            (e.name === 'iq' &&
              e
                .getChild('query', 'jabber:iq:roster')
                ?.getChildren('item')
                .some((i) => i.attrs.jid === project && ['to', 'both'].includes(i.attrs.subscription ?? '')) === true),
          15000,
          'subscription approved',
        );
        await u.waitFor(
          (e) => e.name === 'presence' && e.attrs.type === 'subscribe' && e.attrs.from === project,
          15000,
          'subscribe back',
        );
        const online = await u.waitFor(
          (e) => e.name === 'presence' && !e.attrs.type && (e.attrs.from ?? '').startsWith(project + '/'),
          15000,
          'available presence',
        );
        expect(online.getChildText('status')).to.equal(`Send me a message to get the status report of project ${id}`);
      });
    });

    describe('a user whose session is gone before the offer', () => {
      let comp: RunningComponent;
      before(async () => (comp = await httpComponent(srv, { XR_REPORTS_TIMEOUT_MS: '60000' })));
      after(async () => comp.stop());

      it('reads "your chat client went offline" as an offline message at the next login', async () => {
        const a = await user('mx-gone', srv);
        const login = (resource: string) =>
          XmppUser.login({
            port: srv.c2sPort,
            domain: srv.domain,
            username: a.username,
            password: a.password,
            resource,
          });
        const project = fresh();
        const contact = `${project}@${srv.componentDomain}`;
        const intranet = await getIntranet();
        let open!: () => void;
        intranet.projects.set(project, {
          kind: 'gate',
          body: randomBytes(1000),
          open: new Promise<void>((r) => (open = r)),
        });
        const first = await login('gone');
        let again: XmppUser | undefined;
        try {
          await first.say(contact, 'report');
          await first.waitForMessage(contact, /^Fetching the status report/, 20000);
          await first.logout(); // not subscribed: no presence tells the component; the disco#info and the offer find no session
          await sleep(500);
          open();
          const deadline = Date.now() + 30000;
          // the request ends (its closing line sent) before the user comes back
          await sleep(200);
          while (comp.app.requests.list().length > 0 && Date.now() < deadline) await sleep(100);
          expect(comp.app.requests.list()).to.deep.equal([]);
          expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
          again = await login('back');
          const m = await again.waitForMessage(contact, /^Could not send/, 20000);
          expect(m.getChildText('body')).to.equal(
            `Could not send status-${project}.pdf: your chat client went offline. Send me another message to try again.`,
          );
          if (srv.kind === 'prosody')
            // Prosody's bare service-unavailable, read by the disco#info + offer rule (ejabberd says "User session not found")
            expect(
              comp
                .logged('receiver went offline (disco#info and offer both unanswered)')
                .some((l) => l.project === project),
            ).to.equal(true);
        } finally {
          await again?.logout();
          await first.logout();
        }
      });
    });

    if (server.name === 'prosody')
      describe('a second instance on the same component domain', () => {
        let comp: RunningComponent;
        before(async () => (comp = await httpComponent(srv)));
        after(async () => comp.stop());

        it("is refused with Prosody's own words and exits 2; the first instance keeps serving", async () => {
          const second = await ComponentProcess.spawn({}, { online: false, ejabberd: srv });
          try {
            expect(await second.exited).to.equal(2);
            const fatal = second.logs.filter((l) => l.level === 60);
            expect(fatal.map((l) => l.msg)).to.deep.equal([
              `the XMPP server refused the component ${srv.componentDomain} (conflict): the server said "Component already connected"`,
            ]);
          } finally {
            await second.stop();
            await rm(second.spoolDir, { recursive: true, force: true });
          }
          const body = randomBytes(100_000);
          const project = await publish(body);
          expectDelivered(await request(srv, rx.slix!, project), body, 's5b');
        });
      });

    // Last: the restart drops every c2s session of this server.
    describe('reconnect after a server restart', () => {
      let comp: RunningComponent;
      before(async () => (comp = await httpComponent(srv)));
      after(async () => comp.stop());

      it('reconnects by itself, and a request after the restart is delivered byte-exact', async () => {
        expect(comp.logged('connected to the XMPP server')).to.have.length(1);
        await srv.restart();
        const deadline = Date.now() + 60000;
        while (comp.logged('connected to the XMPP server').length < 2 && Date.now() < deadline) await sleep(200);
        expect(comp.logged('connected to the XMPP server')).to.have.length(2);
        expect(comp.logged(/^disconnected from the XMPP server; reconnecting/)).to.have.length(1);
        const fresh = await startReceiver(srv, 'slix', 'mx-after');
        try {
          const body = randomBytes(1_000_000);
          const project = await publish(body);
          expectDelivered(await request(srv, fresh, project), body, 's5b');
        } finally {
          await stopReceiver(fresh);
        }
      });
    });
  });
}

describe("integration: Prosody's proxy65 without proxy65_acl", function () {
  this.timeout(180000);
  let noAcl: ProsodyInstance;
  let comp: RunningComponent;
  let rx: Rx;

  before(async function () {
    this.timeout(120000);
    // A second Prosody of its own (the matrix's one keeps its ACL), ports 10 above it.
    noAcl = await startProsody({
      runDir: join(process.cwd(), '.run', 'test-prosody-noacl'),
      portBase: prosodyPortBase() + 10,
      proxy65Acl: false,
    });
    comp = await httpComponent(noAcl, { XR_EXTERNAL_PROXIES: `${noAcl.proxyJid}@127.0.0.1:${noAcl.proxy65Port}` });
    rx = await startReceiver(noAcl, 'slix', 'mx-noacl');
  });
  after(async () => {
    await stopReceiver(rx);
    await comp?.stop();
    await noAcl?.stop();
  });

  it('logs the refusal as a configuration error naming proxy65_acl, and never offers that proxy', async () => {
    const refused = comp.logged(/^proxy proxy\.example\.com refuses the component/);
    expect(refused, comp.logs.map((l) => l.msg).join(' | ')).to.have.length(1);
    expect(refused[0]).to.include({ proxy: noAcl.proxyJid, condition: 'forbidden', level: 50 });
    expect(refused[0].msg).to.include('proxy65_acl');
    expect(await noAcl.readLog()).to.match(/Denying use of proxy for reports\.example\.com/);
    const body = randomBytes(500_000);
    const project = await publish(body);
    expectDelivered(await request(noAcl, rx, project), body, 's5b');
    const hosts = rx.proc.events.filter((e) => e.event === 'streamhosts').pop()!.hosts as Array<{ jid: string }>;
    expect(hosts.map((h) => h.jid)).to.deep.equal([`${project}@${noAcl.componentDomain}/reports`]);
  });
});
