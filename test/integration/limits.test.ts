// Limits and hostile input against the running component and the real
// ejabberd: rate limit, queue with its place told, shared downloads, deny
// list, and a streamhost port that sees garbage yet keeps serving.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { XmppUser } from '../support/xmpp-user.js';
import { getEjabberd, getIntranet, sleep, startComponent, user } from './harness.js';

let counter = 430000 + Math.floor(Math.random() * 80000);
const next = () => String(counter++);

async function login(name: string, resource = 'limits'): Promise<XmppUser> {
  const ej = await getEjabberd();
  const u = await user(name);
  return XmppUser.login({ port: ej.c2sPort, domain: ej.domain, username: u.username, password: u.password, resource });
}

describe('integration: limits and hostile input', function () {
  this.timeout(90000);

  it('refuses requests beyond the per-user rate, politely', async () => {
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_LIMITS_REQUESTS_PER_MINUTE: '2',
    });
    const u = await login('rita');
    try {
      for (let i = 0; i < 3; i++) await u.say(`${next()}@${ej.componentDomain}`, 'report');
      const m = await u.waitForMessage('', /asking a bit fast; please try again in \d+ seconds?\./);
      expect(m.getChildText('body')).to.match(/^You are asking a bit fast/);
      await sleep(300);
      expect(u.received.filter((e) => /Fetching/.test(e.getChildText('body') ?? ''))).to.have.length(2);
      expect(comp.logged('request refused: rate limit')).to.have.length(1);
    } finally {
      await u.logout();
      await comp.stop();
    }
  });

  it('queues requests beyond the concurrency cap, tells the place, and serves them in turn', async () => {
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_LIMITS_MAX_CONCURRENT: '1',
    });
    const a = await login('quinn');
    const b = await login('ruth');
    try {
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const slow = next();
      const quick = next();
      intranet.projects.set(slow, { kind: 'gate', body: Buffer.from('slow report'), open: gate });
      intranet.projects.set(quick, { kind: 'file', body: Buffer.from('quick report') });
      await a.say(`${slow}@${ej.componentDomain}`, 'report');
      await a.waitForMessage(`${slow}@`, /Fetching/);
      await b.say(`${quick}@${ej.componentDomain}`, 'report');
      const queued = await b.waitForMessage(`${quick}@`, /in the queue/);
      expect(queued.getChildText('body')).to.equal(
        'Many reports are being sent right now; yours is number 1 in the queue and will follow shortly.',
      );
      expect(b.messagesFrom(`${quick}@`).some((t) => /Fetching/.test(t))).to.equal(false);
      open();
      await b.waitForMessage(`${quick}@`, /Fetching the status report of project/, 20000);
    } finally {
      await a.logout();
      await b.logout();
      await comp.stop();
    }
  });

  it('shares one intranet download between identical concurrent requests', async () => {
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({ XR_REPORTS_SOURCE: 'http', XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate });
    const a = await login('sara');
    const b = await login('tom');
    try {
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const project = next();
      intranet.projects.set(project, { kind: 'gate', body: randomBytes(5000), open: gate });
      const before = intranet.requests.filter((r) => r.url.includes(`/${project}/`)).length;
      await a.say(`${project}@${ej.componentDomain}`, 'report');
      await b.say(`${project}@${ej.componentDomain}`, 'report');
      await a.waitForMessage(`${project}@`, /Fetching/);
      await b.waitForMessage(`${project}@`, /Fetching/);
      open();
      // (@xmpp/client answers neither disco#info nor SI: read as gone, see core.test.ts)
      await a.waitForMessage(`${project}@`, /your chat client went offline/, 20000);
      await b.waitForMessage(`${project}@`, /your chat client went offline/, 20000);
      expect(intranet.requests.filter((r) => r.url.includes(`/${project}/`)).length - before).to.equal(1);
    } finally {
      await a.logout();
      await b.logout();
      await comp.stop();
    }
  });

  it('refuses a denied JID even from an allowed domain', async () => {
    const ej = await getEjabberd();
    const comp = await startComponent({ XR_ACCESS_DENY_JIDS: `mallory@${ej.domain}` });
    const m = await login('mallory');
    try {
      await m.say(`1234@${ej.componentDomain}`, 'report');
      await m.waitForMessage(`1234@`, /only available to users of/);
      expect(comp.logged('request refused: requester not allowed')).to.have.length(1);
    } finally {
      await m.logout();
      await comp.stop();
    }
  });

  it('shrugs off garbage, unknown sessions and half handshakes on its streamhost port, keeping nothing open', async () => {
    const comp = await startComponent({ XR_PROXY_HANDSHAKE_TIMEOUT_MS: '500' });
    const port = comp.app.streamhost!.port;
    const poke = (bytes: Buffer) =>
      new Promise<Buffer>((resolve) => {
        const s = connect({ host: '127.0.0.1', port });
        const got: Buffer[] = [];
        s.on('data', (c) => got.push(c));
        s.on('error', () => {});
        s.on('close', () => resolve(Buffer.concat(got)));
        s.on('connect', () => s.write(bytes));
        setTimeout(() => s.destroy(), 5000);
      });
    try {
      expect((await poke(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).length).to.equal(0);
      const hash = createHash('sha1').update('guess').digest('hex');
      const unknown = await poke(
        Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 3, 40]), Buffer.from(hash), Buffer.from([0, 0])]),
      );
      expect([...unknown.subarray(0, 4)]).to.deep.equal([5, 0, 5, 2]); // "connection not allowed"
      expect((await poke(Buffer.from([5]))).length).to.equal(0); // half a greeting: closed at the deadline
      expect(comp.logged('streamhost handshake refused').length).to.be.at.least(3);
      // the server side closes right after the client saw its reply: wait (bounded) for it to settle
      for (let i = 0; i < 50 && comp.app.streamhost!.connections > 0; i++) await sleep(50);
      expect(comp.app.streamhost!.connections).to.equal(0);
    } finally {
      await comp.stop();
    }
  });
});
