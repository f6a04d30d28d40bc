// Running it as a service, against the real ejabberd: /healthz and /metrics
// after real transfers, the admin ad-hoc commands (admin vs non-admin, cancel
// a running transfer), a config reload that keeps the connection, and vCards
// with project names from the intranet.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml } from '@xmpp/client';
import type { Element } from '@xmpp/component';
import { ADMIN_NODES } from '../../src/admin.js';
import { NS } from '../../src/xmpp/namespaces.js';
import { field, type ReceiverEvent, type ReceiverProcess } from '../support/receiver.js';
import { startSlixReceiver } from '../support/slix.js';
import { XmppUser } from '../support/xmpp-user.js';
import { freePort, getEjabberd, getIntranet, sleep, startComponent, user, type RunningComponent } from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A stand-in for the intranet's project metadata: /meta/<id>.json → {"name": …}. */
async function metadataServer(
  names: Record<string, string>,
  slow: Set<string>,
): Promise<{ server: Server; template: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    const id = decodeURIComponent(/^\/meta\/([^/]+)\.json$/.exec(req.url ?? '')?.[1] ?? '');
    hits.push(id);
    const answer = () =>
      names[id]
        ? res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: names[id] }))
        : res.writeHead(404).end();
    if (slow.has(id)) setTimeout(answer, 5000);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, template: `http://127.0.0.1:${(server.address() as AddressInfo).port}/meta/{project}.json`, hits };
}

let projectCounter = 610000 + Math.floor(Math.random() * 80000);
async function publish(body: Buffer): Promise<string> {
  const project = String(projectCounter++);
  (await getIntranet()).projects.set(project, { kind: 'file', body });
  return project;
}

describe('integration: metrics, admin commands, reload, vCard', function () {
  this.timeout(180000);
  let comp: RunningComponent;
  let metricsBase: string;
  let configFile: string;
  let dir: string;
  let admin: XmppUser;
  let alice: XmppUser;
  let s5bRx: ReceiverProcess;
  let ibbRx: ReceiverProcess;
  let meta: Awaited<ReturnType<typeof metadataServer>>;
  let compDomain: string;
  let domain: string;

  const baseConfig = (extra = '') => `admin:\n  jids: [boss@example.com]\n${extra}`;

  before(async function () {
    this.timeout(180000);
    const ej = await getEjabberd();
    compDomain = ej.componentDomain;
    domain = ej.domain;
    dir = await mkdtemp(join(tmpdir(), 'xr-ops-'));
    configFile = join(dir, 'config.yml');
    meta = await metadataServer({ '1234': 'Apollo' }, new Set(['4242']));
    // Reloadable settings live in the file (the environment would win over it).
    await writeFile(configFile, baseConfig(`reports:\n  metadataUrlTemplate: ${meta.template}\n`));
    const port = await freePort();
    metricsBase = `http://127.0.0.1:${port}`;
    comp = await startComponent({
      XR_CONFIG: configFile,
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
      XR_METRICS_BIND_HOST: '127.0.0.1',
      XR_METRICS_BIND_PORT: String(port),
      XR_IBB_BLOCK_SIZE: '4096',
      XR_IBB_WINDOW: '1',
    });
    const b = await user('boss');
    const a = await user('alice');
    admin = await XmppUser.login({
      port: ej.c2sPort,
      domain,
      username: b.username,
      password: b.password,
      resource: 'ops',
    });
    alice = await XmppUser.login({
      port: ej.c2sPort,
      domain,
      username: a.username,
      password: a.password,
      resource: 'ops',
    });
    const r1 = await user('opsfast');
    const r2 = await user('opsibb');
    s5bRx = await startSlixReceiver({
      jid: `${r1.jid}/slix`,
      password: r1.password,
      host: '127.0.0.1',
      port: ej.c2sPort,
      outDir: join(dir, 'rx1'),
      timeoutSec: 600,
    });
    ibbRx = await startSlixReceiver({
      jid: `${r2.jid}/slix`,
      password: r2.password,
      host: '127.0.0.1',
      port: ej.c2sPort,
      outDir: join(dir, 'rx2'),
      timeoutSec: 600,
      methods: ['ibb'],
    });
  });

  after(async () => {
    await s5bRx?.quit();
    await ibbRx?.quit();
    await admin?.logout();
    await alice?.logout();
    await comp?.stop();
    await new Promise((r) => meta?.server.close(r));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const metric = async (line: RegExp): Promise<number | undefined> => {
    const text = await (await fetch(`${metricsBase}/metrics`)).text();
    for (const l of text.split('\n')) {
      const m = line.exec(l);
      if (m) return Number(l.slice(l.lastIndexOf(' ') + 1));
    }
    return undefined;
  };

  async function transfer(rx: ReceiverProcess, body: Buffer): Promise<{ project: string; end: ReceiverEvent }> {
    const project = await publish(body);
    rx.send(`${project}@${compDomain}`, 'report');
    const end = await rx.waitFor(
      (e) => (e.event === 'received' || e.event === 'failed') && e.name === `status-${project}.pdf`,
      120000,
    );
    await rx.waitFor(
      (e) =>
        e.event === 'message' &&
        /^Delivered /.test(field(e, 'body')) &&
        field(e, 'body').includes(`status-${project}.pdf`),
      30000,
    );
    return { project, end };
  }

  const command = (who: XmppUser, attrs: Record<string, string>, ...children: Element[]) =>
    who.iq(compDomain, 'set', xml('command', { xmlns: NS.COMMANDS, ...attrs }, ...children));
  const formValues = (iq: Element, v: string) =>
    iq
      .getChild('command', NS.COMMANDS)!
      .getChild('x', NS.DATA_FORMS)!
      .getChildren('field')
      .find((f) => f.attrs.var === v)
      ?.getChildren('value')
      .map((x) => x.text()) ?? [];
  const notes = (iq: Element) =>
    iq
      .getChild('command', NS.COMMANDS)!
      .getChildren('note')
      .map((n) => `${n.attrs.type}: ${n.text()}`);

  it('/healthz says connected with the streamhost listening', async () => {
    const r = await fetch(`${metricsBase}/healthz`);
    expect(r.status).to.equal(200);
    expect(await r.json()).to.include({ ok: true, xmpp: 'connected', streamhost: 'listening' });
  });

  it('/metrics counts requests, transfers by method, bytes, durations and fetches after real transfers', async () => {
    const a = randomBytes(300_000);
    const b = randomBytes(50_000);
    const r1 = await transfer(s5bRx, a);
    const r2 = await transfer(ibbRx, b);
    expect(r1.end).to.include({ event: 'received', method: 's5b', sha256: sha256(a) });
    expect(r2.end).to.include({ event: 'received', method: 'ibb', sha256: sha256(b) });
    s5bRx.send(`404404@${compDomain}`, 'report');
    await s5bRx.waitFor(
      (e) => e.event === 'message' && /no status report for project 404404/.test(field(e, 'body')),
      20000,
    );
    await sleep(200);
    expect(await metric(/^xmpp_reports_requests_total\{outcome="delivered"\}/)).to.equal(2);
    expect(await metric(/^xmpp_reports_requests_total\{outcome="not-found"\}/)).to.equal(1);
    expect(await metric(/^xmpp_reports_transfers_total\{method="s5b",outcome="delivered"\}/)).to.equal(1);
    expect(await metric(/^xmpp_reports_transfers_total\{method="ibb",outcome="delivered"\}/)).to.equal(1);
    expect(await metric(/^xmpp_reports_bytes_sent_total\{method="s5b"\}/)).to.equal(a.length);
    expect(await metric(/^xmpp_reports_bytes_sent_total\{method="ibb"\}/)).to.equal(b.length);
    expect(await metric(/^xmpp_reports_transfer_duration_seconds_count\{method="ibb"\}/)).to.equal(1);
    expect(await metric(/^xmpp_reports_report_fetch_duration_seconds_count\{source="http",result="ok"\}/)).to.equal(2);
    expect(await metric(/^xmpp_reports_report_fetch_errors_total\{source="http",kind="not-found"\}/)).to.equal(1);
    expect(await metric(/^xmpp_reports_active_transfers /)).to.equal(0);
    expect(await metric(/^xmpp_reports_proxy_connections /)).to.be.a('number');
    expect(await metric(/^xmpp_reports_xmpp_connected /)).to.equal(1);
  });

  it('shows no commands to a non-admin and refuses them execution', async () => {
    const items = await alice.iq(compDomain, 'get', xml('query', { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS }));
    expect(items.attrs.type).to.equal('result');
    expect(items.getChild('query', NS.DISCO_ITEMS)!.getChildren('item')).to.have.length(0);
    for (const node of Object.values(ADMIN_NODES)) {
      const r = await command(alice, { node, action: 'execute' });
      expect(r.attrs.type, node).to.equal('error');
      expect(r.getChild('error')!.getChild('forbidden', NS.STANZAS), node).to.not.equal(undefined);
    }
    const info = await alice.iq(compDomain, 'get', xml('query', { xmlns: NS.DISCO_INFO }));
    expect(
      info
        .getChild('query', NS.DISCO_INFO)!
        .getChildren('feature')
        .map((f) => f.attrs.var),
    ).to.include.members([NS.COMMANDS, NS.VCARD]);
  });

  it('lists the commands to an admin and shows the counters', async () => {
    const items = await admin.iq(compDomain, 'get', xml('query', { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS }));
    expect(
      items
        .getChild('query', NS.DISCO_ITEMS)!
        .getChildren('item')
        .map((i) => i.attrs.node),
    ).to.deep.equal(Object.values(ADMIN_NODES));
    const r = await command(admin, { node: ADMIN_NODES.counters, action: 'execute' });
    expect(r.attrs.type).to.equal('result');
    expect(r.getChild('command', NS.COMMANDS)!.attrs.status).to.equal('completed');
    expect(formValues(r, 'counters')).to.include.members([
      'requests_total{outcome=delivered} 2',
      'transfers_total{method=ibb,outcome=delivered} 1',
    ]);
    expect(formValues(r, 'health')[0]).to.match(/^ok: XMPP connected, streamhost listening/);
  });

  it('lists a running transfer and cancels it; the user is told, the receiver sees it fail', async () => {
    const body = randomBytes(40_000_000); // in-band, 4096-byte blocks, one in flight: long enough to catch it running
    const project = await publish(body);
    ibbRx.send(`${project}@${compDomain}`, 'report');
    let line: string | undefined;
    const deadline = Date.now() + 60000;
    while (!line && Date.now() < deadline) {
      const list = await command(admin, { node: ADMIN_NODES.list, action: 'execute' });
      line = formValues(list, 'transfers').find((l) => l.includes(`status-${project}.pdf`) && l.includes(': sending '));
      if (!line) await sleep(200);
    }
    expect(line, 'transfer listed as sending').to.match(
      /^#\d+ opsibb@example\.com\/slix: sending status-\d+\.pdf \(38\.1 MiB\), for \d+ s$/,
    );
    const id = /^#(\d+)/.exec(line!)![1];
    const first = await command(admin, { node: ADMIN_NODES.cancel, action: 'execute' });
    const cmd = first.getChild('command', NS.COMMANDS)!;
    expect(cmd.attrs.status).to.equal('executing');
    const done = await command(
      admin,
      { node: ADMIN_NODES.cancel, sessionid: cmd.attrs.sessionid!, action: 'complete' },
      xml('x', { xmlns: NS.DATA_FORMS, type: 'submit' }, xml('field', { var: 'id' }, xml('value', {}, id))),
    );
    expect(notes(done)).to.deep.equal([`info: Cancelled #${id}: project ${project} for opsibb@example.com/slix.`]);
    await ibbRx.waitFor(
      (e) =>
        e.event === 'message' &&
        field(e, 'body') ===
          `An administrator cancelled sending status-${project}.pdf. Send me another message to ask again.`,
      30000,
    );
    await ibbRx.waitFor((e) => e.event === 'failed' && e.name === `status-${project}.pdf`, 60000);
    expect(await metric(/^xmpp_reports_requests_total\{outcome="cancelled"\}/)).to.equal(1);
    expect(await metric(/^xmpp_reports_transfers_total\{method="ibb",outcome="cancelled"\}/)).to.equal(1);
    const after = await command(admin, { node: ADMIN_NODES.list, action: 'execute' });
    expect(formValues(after, 'transfers').some((l) => l.includes(`status-${project}.pdf`))).to.equal(false);
  });

  it('reloads the config on the admin command without dropping the connection; refuses a broken one', async () => {
    const connectedBefore = comp.logged('connected to the XMPP server').length;
    await writeFile(
      configFile,
      baseConfig(
        `reports:\n  metadataUrlTemplate: ${meta.template}\naccess:\n  denyJids: [alice@example.com]\ntransfer:\n  stallTimeoutMs: 70000\n`,
      ),
    );
    const r = await command(admin, { node: ADMIN_NODES.reload, action: 'execute' });
    expect(notes(r)).to.have.length(2);
    expect(notes(r)[0]).to.match(/^info: Reloaded on .*; now in effect: access\.denyJids\.$/);
    expect(notes(r)[1]).to.equal('warn: Changed but only in effect after a restart: transfer.stallTimeoutMs.');
    alice.clear();
    await alice.say(`1234@${compDomain}`, 'report');
    await alice.waitForMessage(`1234@${compDomain}`, /only available to users of/, 10000);
    expect(await metric(/^xmpp_reports_requests_total\{outcome="refused"\}/)).to.equal(1);

    await writeFile(configFile, baseConfig('limits:\n  maxQueue: lots\n'));
    const bad = await command(admin, { node: ADMIN_NODES.reload, action: 'execute' });
    expect(notes(bad)[0]).to.match(/^error: Not reloaded; the running configuration is unchanged\. limits\.maxQueue/);
    alice.clear();
    await alice.say(`1234@${compDomain}`, 'report');
    await alice.waitForMessage(`1234@${compDomain}`, /only available to users of/, 10000);

    // back to normal: alice is served again
    await writeFile(configFile, baseConfig(`reports:\n  metadataUrlTemplate: ${meta.template}\n`));
    const ok = await command(admin, { node: ADMIN_NODES.reload, action: 'execute' });
    expect(notes(ok)[0]).to.match(/now in effect: access\.denyJids/);
    alice.clear();
    await alice.say(`404405@${compDomain}`, 'report');
    await alice.waitForMessage(`404405@${compDomain}`, /There is no status report for project 404405/, 10000);
    expect(comp.logged('connected to the XMPP server')).to.have.length(connectedBefore);
  });

  it('answers vCard requests with the project name from the intranet, cached, and never waits long', async () => {
    const fn = async (to: string) => {
      const r = await alice.iq(to, 'get', xml('vCard', { xmlns: NS.VCARD }));
      expect(r.attrs.type, to).to.equal('result');
      return r.getChild('vCard', NS.VCARD)!.getChildText('FN');
    };
    meta.hits.length = 0;
    expect(await fn(`1234@${compDomain}`)).to.equal('Project 1234 - Apollo');
    expect(await fn(`1234@${compDomain}`)).to.equal('Project 1234 - Apollo');
    expect(
      meta.hits.filter((h) => h === '1234'),
      'cached',
    ).to.have.length(1);
    expect(await fn(`5555@${compDomain}`)).to.equal('Project 5555');
    const t0 = Date.now();
    expect(await fn(`4242@${compDomain}`)).to.equal('Project 4242');
    expect(Date.now() - t0).to.be.below(4000);
    expect(await fn(compDomain)).to.equal('Project status reports');
    const bogus = await alice.iq(`not-a-project@${compDomain}`, 'get', xml('vCard', { xmlns: NS.VCARD }));
    expect(bogus.attrs.type).to.equal('error');
  });
});
