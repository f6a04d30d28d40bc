// The component core against the real ejabberd, with @xmpp/client as the user.
import { expect } from 'chai';
import { spoolContents } from '../support/reports.js';
import { xml } from '@xmpp/client';
import { NS } from '../../src/xmpp/namespaces.js';
import { XmppUser } from '../support/xmpp-user.js';
import { getEjabberd, getIntranet, sleep, startComponent, user, type RunningComponent } from './harness.js';

describe('integration: component core (real ejabberd)', function () {
  this.timeout(60000);
  let comp: RunningComponent;
  let alice: XmppUser;
  let domain: string;
  let compDomain: string;

  before(async function () {
    this.timeout(120000);
    const ej = await getEjabberd();
    domain = ej.domain;
    compDomain = ej.componentDomain;
    const intranet = await getIntranet();
    comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_REPORTS_REQUESTER_HEADER: 'X-Requested-By',
      XR_REPORTS_AUTH_HEADER: 'Bearer very-secret-token',
      XR_REPORTS_TIMEOUT_MS: '1500',
      XR_REPORTS_MAX_BYTES: '100000',
    });
    const a = await user('alice');
    alice = await XmppUser.login({
      port: ej.c2sPort,
      domain,
      username: a.username,
      password: a.password,
      resource: 'core',
    });
  });

  after(async () => {
    await alice?.logout();
    await comp?.stop();
  });

  beforeEach(() => alice.clear());

  // ejabberd's spool outlives a run: fresh project ids keep roster state from earlier runs out of the way.
  const fresh = String(100000 + Math.floor(Math.random() * 800000));

  /** The component approved: a subscribed presence, or the roster push ejabberd turns it into. */
  const approved = (project: string) => (e: import('@xmpp/component').Element) =>
    (e.name === 'presence' && e.attrs.type === 'subscribed' && e.attrs.from === project) ||
    (e.name === 'iq' &&
      e
        .getChild('query', 'jabber:iq:roster')
        ?.getChildren('item')
        .some((i) => i.attrs.jid === project && (i.attrs.subscription === 'to' || i.attrs.subscription === 'both')) ===
        true);

  it('accepts a subscription, subscribes back and shows the project online with a status', async () => {
    const project = `${fresh}@${compDomain}`;
    await alice.presence(project, 'subscribe');
    await alice.waitFor(approved(project), 10000, 'subscription approved');
    await alice.waitFor(
      (e) => e.name === 'presence' && e.attrs.type === 'subscribe' && e.attrs.from === project,
      10000,
      'subscribe back',
    );
    const online = await alice.waitFor(
      (e) => e.name === 'presence' && !e.attrs.type && (e.attrs.from ?? '').startsWith(project + '/'),
      10000,
      'available',
    );
    expect(online.getChildText('status')).to.equal(`Send me a message to get the status report of project ${fresh}`);
    // Approve the component's subscription so the roster entry is "both".
    await alice.presence(project, 'subscribed');
  });

  it("answers the server's presence probe when the user logs in again", async () => {
    const ej = await getEjabberd();
    const project = `${fresh}@${compDomain}`;
    const a = await user('alice');
    // alice is subscribed to the project (previous test): a new session makes ejabberd probe it.
    const second = await XmppUser.login({
      port: ej.c2sPort,
      domain,
      username: a.username,
      password: a.password,
      resource: 'second',
    });
    try {
      const p = await second.waitFor(
        (e) => e.name === 'presence' && !e.attrs.type && (e.attrs.from ?? '').startsWith(project + '/'),
        10000,
        'probe answer',
      );
      expect(p.getChildText('status')).to.equal(`Send me a message to get the status report of project ${fresh}`);
    } finally {
      await second.logout();
    }
  });

  it('honours unsubscribe with unsubscribed and unavailable', async () => {
    const project = `${Number(fresh) + 1}@${compDomain}`;
    await alice.presence(project, 'subscribe');
    await alice.waitFor(approved(project), 10000, 'subscription approved');
    alice.clear();
    await alice.presence(project, 'unsubscribe');
    // The component answers unsubscribed, then unavailable; once the latter is here, ejabberd has applied the former.
    await alice.waitFor(
      (e) => e.name === 'presence' && e.attrs.type === 'unavailable' && e.attrs.from === `${project}/reports`,
      10000,
      'unavailable',
    );
    const roster = await alice.iq(domain, 'get', xml('query', { xmlns: 'jabber:iq:roster' }));
    const item = roster
      .getChild('query', 'jabber:iq:roster')!
      .getChildren('item')
      .find((i) => i.attrs.jid === project);
    expect(item?.attrs.subscription ?? 'none').to.equal('none');
  });

  it('refuses a subscription to something that is not a project id', async () => {
    const bogus = `not-a-project@${compDomain}`;
    await alice.presence(bogus, 'subscribe');
    await alice.waitFor(
      (e) => e.name === 'presence' && e.attrs.type === 'unsubscribed' && e.attrs.from === bogus,
      10000,
      'unsubscribed',
    );
  });

  it('answers disco#info on the domain and on project JIDs with the features', async () => {
    for (const to of [compDomain, `1234@${compDomain}/reports`, `1234@${compDomain}`]) {
      const r = await alice.iq(to, 'get', xml('query', { xmlns: NS.DISCO_INFO }));
      expect(r.attrs.type, to).to.equal('result');
      const features = r
        .getChild('query', NS.DISCO_INFO)!
        .getChildren('feature')
        .map((f) => f.attrs.var);
      for (const f of [NS.DISCO_INFO, NS.VERSION, NS.PING, NS.SI, NS.SI_FILE, NS.BYTESTREAMS, NS.IBB])
        expect(features, to).to.include(f);
      // XEP-0166 §11: Jingle, its file-transfer application and both transports (jingle is in the default transfer.order)
      for (const f of [NS.JINGLE, NS.JINGLE_FT, NS.JINGLE_S5B, NS.JINGLE_IBB]) expect(features, to).to.include(f);
      expect(r.getChild('query', NS.DISCO_INFO)!.getChild('identity')).to.not.equal(undefined);
    }
  });

  it('answers version and ping', async () => {
    const v = await alice.iq(compDomain, 'get', xml('query', { xmlns: NS.VERSION }));
    expect(v.getChild('query', NS.VERSION)!.getChildText('name')).to.equal('xmpp-reports');
    const p = await alice.iq(`1234@${compDomain}`, 'get', xml('ping', { xmlns: NS.PING }));
    expect(p.attrs.type).to.equal('result');
  });

  it('answers an unknown IQ exactly once with service-unavailable, and a known namespace with feature-not-implemented', async () => {
    const r = await alice.iq(compDomain, 'get', xml('query', { xmlns: 'urn:example:unknown' }));
    expect(r.attrs.type).to.equal('error');
    expect(r.getChild('error')!.getChild('service-unavailable', NS.STANZAS)).to.not.equal(undefined);
    const r2 = await alice.iq(compDomain, 'set', xml('query', { xmlns: NS.DISCO_INFO }));
    expect(r2.getChild('error')!.getChild('feature-not-implemented', NS.STANZAS)).to.not.equal(undefined);
    await sleep(500);
    const replies = alice.received.filter(
      (e) => e.name === 'iq' && (e.attrs.id === r.attrs.id || e.attrs.id === r2.attrs.id),
    );
    expect(replies).to.have.length(2);
  });

  it('explains the commands on "help", to the domain and to a project', async () => {
    await alice.say(compDomain, 'help');
    const m = await alice.waitForMessage(compDomain, /report 1234/);
    expect(m.getChildText('body')).to.match(/help/);
    await alice.say(`1234@${compDomain}`, 'help');
    await alice.waitForMessage(`1234@${compDomain}`, /I send project status reports/);
  });

  it('says clearly when the id is not a project id', async () => {
    await alice.say(compDomain, '../x');
    const m = await alice.waitForMessage(compDomain, /is not a project id/);
    expect(m.getChildText('body')).to.equal("'../x' is not a project id; project ids look like 1234.");
  });

  it('never answers error, groupchat or bodiless messages', async () => {
    const project = `1234@${compDomain}`;
    await alice.send(xml('message', { to: project, type: 'error' }, xml('body', {}, 'report')));
    await alice.send(xml('message', { to: project, type: 'groupchat' }, xml('body', {}, 'report')));
    await alice.send(xml('message', { to: project, type: 'chat' }, xml('active', { xmlns: NS.CHATSTATES })));
    await alice.send(xml('message', { to: compDomain, type: 'chat' }, xml('composing', { xmlns: NS.CHATSTATES })));
    // then a real one: when its answer arrives, anything the others caused would have arrived before it
    await alice.say(compDomain, 'help');
    await alice.waitForMessage(compDomain, /I send project status reports/);
    await sleep(300);
    const messages = alice.received.filter((e) => e.name === 'message');
    expect(messages.map((m) => m.getChildText('body'))).to.have.length(1);
  });

  async function requestAndExpect(project: string, reply: RegExp): Promise<string[]> {
    await alice.say(`${project}@${compDomain}`, 'report');
    await alice.waitForMessage(`${project}@${compDomain}`, reply, 20000);
    return alice.messagesFrom(`${project}@${compDomain}`);
  }

  it("fetches the report with the requester's JID and the auth header, offers it, and cleans the spool", async () => {
    const intranet = await getIntranet();
    intranet.projects.set('1234', { kind: 'file', body: Buffer.from('%PDF-1.4 status of 1234\n') });
    const before = intranet.requests.length;
    // @xmpp/client answers neither disco#info nor the SI offer (service-unavailable to both): on the wire that is
    // what a session that is gone looks like (Prosody's bare answer for a vanished resource), and reads so.
    const bodies = await requestAndExpect('1234', /your chat client went offline/);
    expect(bodies[0]).to.equal('Fetching the status report of project 1234…');
    expect(bodies[1]).to.match(/^Sending status-1234\.pdf \(24 bytes\)… please accept the file\.$/);
    const req = intranet.requests.slice(before).find((r) => r.url === '/projects/1234/status.pdf');
    expect(req, 'intranet request').to.not.equal(undefined);
    expect(req!.headers['x-requested-by']).to.equal(`alice@${domain}`);
    expect(req!.headers.authorization).to.equal('Bearer very-secret-token');
    expect(await spoolContents(comp.spoolDir)).to.deep.equal([]);
    expect(comp.logged('report fetched')[0]).to.include({ project: '1234', bytes: 24 });
  });

  it('works when the project id comes in a message to the domain', async () => {
    const intranet = await getIntranet();
    intranet.projects.set('4321', { kind: 'file', body: Buffer.from('x') });
    await alice.say(compDomain, 'report 4321');
    await alice.waitForMessage(compDomain, /Fetching the status report of project 4321/);
  });

  it('tells the user when there is no such report (404)', async () => {
    await requestAndExpect('404404', /There is no status report for project 404404\./);
  });

  it('tells the user when access is refused (401/403)', async () => {
    const intranet = await getIntranet();
    intranet.projects.set('401', { kind: 'status', status: 401 });
    intranet.projects.set('403', { kind: 'status', status: 403 });
    await requestAndExpect('401', /refused you access/);
    await requestAndExpect('403', /refused you access/);
  });

  it('tells the user when the intranet fails (5xx) or is too slow', async () => {
    const intranet = await getIntranet();
    intranet.projects.set('500', { kind: 'status', status: 500 });
    intranet.projects.set('503', { kind: 'status', status: 503 });
    intranet.projects.set('777', { kind: 'hang' });
    // Without a Content-Length the offer waits for the whole report, so a stall is the intranet's failure before any offer
    // (with one, the file is offered at once and a stall breaks the transfer: transfer.test.ts).
    intranet.projects.set('778', { kind: 'stall', body: Buffer.alloc(5000, 1), after: 100, chunked: true });
    await requestAndExpect(
      '500',
      /^The intranet answered with an error \(HTTP 500\) for the report of project 500, so it could not be fetched\./,
    );
    await requestAndExpect('503', /answered with an error \(HTTP 503\)/);
    await requestAndExpect('777', /not reachable right now/);
    await requestAndExpect('778', /not reachable right now/);
    expect(await spoolContents(comp.spoolDir)).to.deep.equal([]);
  });

  it('tells the user when the report is too large or empty', async () => {
    const intranet = await getIntranet();
    intranet.projects.set('999', { kind: 'file', body: Buffer.alloc(100001, 7) });
    intranet.projects.set('0', { kind: 'file', body: Buffer.alloc(0) });
    await requestAndExpect('999', /larger than the limit of 97\.7 KiB/);
    await requestAndExpect('0', /is empty, so there is nothing to send/);
  });

  it('never writes the secrets to its log', () => {
    const all = comp.rawLog.join('\n');
    expect(all).to.not.include('very-secret-token');
    expect(all).to.not.include('test-secret');
    expect(comp.logged('starting')).to.have.length(1);
  });
});

describe('integration: intranet down and access rules', function () {
  this.timeout(60000);

  it('tells the user when the intranet refuses connections', async () => {
    const ej = await getEjabberd();
    // a port nothing listens on: bind, read the port, close
    const { createServer } = await import('node:net');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: `http://127.0.0.1:${port}/p/{project}.pdf`,
    });
    const a = await user('alice');
    const u = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: a.username,
      password: a.password,
      resource: 'down',
    });
    try {
      await u.say(`1234@${ej.componentDomain}`, 'report');
      await u.waitForMessage(`1234@${ej.componentDomain}`, /not reachable right now/, 15000);
      expect(comp.logged('report fetch failed')[0]).to.include({ reason: 'unavailable', project: '1234' });
    } finally {
      await u.logout();
      await comp.stop();
    }
  });

  it('politely refuses users of domains that are not allowed', async () => {
    const ej = await getEjabberd();
    const comp = await startComponent({ XR_ACCESS_ALLOWED_DOMAINS: 'elsewhere.example' });
    const a = await user('alice');
    const u = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: a.username,
      password: a.password,
      resource: 'acl',
    });
    try {
      await u.say(`1234@${ej.componentDomain}`, 'report');
      await u.waitForMessage(`1234@${ej.componentDomain}`, /only available to users of elsewhere\.example/);
      expect(comp.logged('request refused: requester not allowed')).to.have.length(1);
    } finally {
      await u.logout();
      await comp.stop();
    }
  });
});
