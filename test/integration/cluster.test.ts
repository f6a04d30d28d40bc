// Two component instances behind one ejabberd with domain_balancing
// (type bare_source, component_number 2): every stanza from one user reaches
// the same instance, so the SI result, the bytestreams result and every IBB
// acknowledgement of a transfer come back to the instance that offered it. Many requests from several users, S5B and IBB: every transfer
// completes byte-exact, and each request is handled by exactly one instance.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml } from '@xmpp/client';
import type { Element } from '@xmpp/component';
import { NS } from '../../src/xmpp/namespaces.js';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { field, type ReceiverEvent, type ReceiverProcess } from '../support/receiver.js';
import { startSlixReceiver } from '../support/slix.js';
import { XmppUser } from '../support/xmpp-user.js';
import { getIntranet, startComponent, type RunningComponent } from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const PORT_BASE = Number(process.env.XR_TEST_CLUSTER_PORT_BASE ?? 26222);
const REQUESTS_PER_USER = 5;

interface Rx {
  name: string;
  jid: string; // full JID
  method: 's5b' | 'ibb';
  instance: number; // index into comps, as probed
  proc: ReceiverProcess;
}

describe('integration: two component instances behind one ejabberd with domain_balancing', function () {
  this.timeout(600000);
  let ej: EjabberdInstance;
  let dir: string;
  const comps: RunningComponent[] = [];
  const seenBy: Array<Set<string>> = [new Set(), new Set()]; // full JIDs each instance received stanzas from
  const receivers: Rx[] = [];
  let projectCounter = 820000 + Math.floor(Math.random() * 50000);

  before(async function () {
    this.timeout(300000);
    ej = await startEjabberd({
      runDir: join(process.cwd(), '.run', 'cluster-ejabberd'),
      portBase: PORT_BASE,
      nodeName: 'xrcluster@localhost',
      domainBalancing: 'bare_source:2',
    });
    dir = await mkdtemp(join(tmpdir(), 'xr-cluster-'));
    const intranet = await getIntranet();
    for (let i = 0; i < 2; i++) {
      const c = await startComponent(
        {
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
          XR_IBB_BLOCK_SIZE: '4096',
          XR_LIMITS_MAX_CONCURRENT_PER_USER: '10',
          XR_LIMITS_REQUESTS_PER_MINUTE: '100',
          // the server's answers to one instance's disco reach the instance its JID is balanced to
          XR_DISCOVER_PROXIES: 'false',
        },
        { ejabberd: ej },
      );
      c.app.connection.xmpp.on('stanza', (el: Element) => el.attrs.from && seenBy[i].add(el.attrs.from));
      comps.push(c);
    }
    expect(comps[0].app.streamhost!.port).to.not.equal(comps[1].app.streamhost!.port);

    // Which instance gets a user's stanzas depends only on the user's bare JID
    // (bare_source): probe candidate users with a short login, and keep a mix of
    // users on both instances, for S5B and for IBB.
    const plan: Array<{ name: string; method: 's5b' | 'ibb' }> = [
      { name: 'clus1', method: 's5b' },
      { name: 'clus2', method: 's5b' },
      { name: 'clus3', method: 's5b' },
      { name: 'clui1', method: 'ibb' },
      { name: 'clui2', method: 'ibb' },
      { name: 'clui3', method: 'ibb' },
    ];
    const perMethod = { s5b: [0, 0], ibb: [0, 0] };
    for (const p of plan) {
      const counts = perMethod[p.method];
      for (let k = 1; ; k++) {
        if (k > 20) throw new Error(`no user named ${p.name}… reaches the instance that needs users`);
        const name = `${p.name}x${k}`;
        await ej.register(name, `pw-${name}`);
        const jid = `${name}@${ej.domain}/slix`;
        const instance = await probe(name, 'probe', `${name}@${ej.domain}/probe`);
        // the first user of a method may go anywhere; later ones go where fewer are
        const want = counts[0] + counts[1] === 0 ? instance : counts[0] <= counts[1] ? 0 : 1;
        if (instance !== want) continue;
        counts[instance]++;
        const proc = await startSlixReceiver({
          jid,
          password: `pw-${name}`,
          host: '127.0.0.1',
          port: ej.c2sPort,
          outDir: join(dir, name),
          timeoutSec: 900,
          methods: p.method === 'ibb' ? ['ibb'] : ['s5b', 'ibb'],
        });
        receivers.push({ name, jid, method: p.method, instance, proc });
        break;
      }
    }
    expect(perMethod.s5b.every((n) => n > 0) && perMethod.ibb.every((n) => n > 0), JSON.stringify(perMethod)).to.equal(
      true,
    );
  });

  /** Logs in, pings the component and returns which instance received it. */
  async function probe(username: string, resource: string, jid: string): Promise<number> {
    const u = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username,
      password: `pw-${username}`,
      resource,
    });
    try {
      const r = await u.iq(ej.componentDomain, 'get', xml('ping', { xmlns: NS.PING }));
      expect(r.attrs.type).to.equal('result');
    } finally {
      await u.logout();
    }
    const hits = [0, 1].filter((i) => seenBy[i].has(jid));
    if (hits.length !== 1) throw new Error(`${jid} reached instances ${JSON.stringify(hits)}`);
    return hits[0];
  }

  after(async function () {
    this.timeout(120000);
    await Promise.all(receivers.map((r) => r.proc.quit()));
    for (const c of comps) await c.stop();
    await ej?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('completes every transfer byte-exact on the instance that took the request, none handled twice', async () => {
    const intranet = await getIntranet();
    const jobs: Array<{ rx: Rx; project: string; body: Buffer; viaDomain: boolean }> = [];
    for (const rx of receivers) {
      for (let i = 0; i < REQUESTS_PER_USER; i++) {
        const size =
          rx.method === 's5b'
            ? 1000 + Math.floor(Math.random() * 2_000_000)
            : 1000 + Math.floor(Math.random() * 150_000);
        const body = randomBytes(size);
        const project = String(projectCounter++);
        intranet.projects.set(project, { kind: 'file', body });
        jobs.push({ rx, project, body, viaDomain: i === 0 });
      }
    }
    const before = intranet.requests.length;
    // all at once: requests to project JIDs, and one per user to the component domain
    for (const j of jobs) {
      if (j.viaDomain) j.rx.proc.send(ej.componentDomain, `report ${j.project}`);
      else j.rx.proc.send(`${j.project}@${ej.componentDomain}`, 'report');
    }
    const ends = await Promise.all(
      jobs.map((j) =>
        j.rx.proc.waitFor(
          (e: ReceiverEvent) =>
            (e.event === 'received' || e.event === 'failed') && e.name === `status-${j.project}.pdf`,
          400000,
        ),
      ),
    );
    ends.forEach((end, i) => {
      const j = jobs[i];
      expect(end, `${j.rx.jid} ${j.project}: ${JSON.stringify(end)}`).to.include({
        event: 'received',
        size: j.body.length,
        sha256: sha256(j.body),
      });
      expect(end.method, j.project).to.equal(j.rx.method);
    });
    await Promise.all(
      jobs.map((j) =>
        j.rx.proc.waitFor(
          (e) =>
            e.event === 'message' &&
            /^Delivered /.test(field(e, 'body')) &&
            field(e, 'body').includes(`status-${j.project}.pdf`),
          60000,
        ),
      ),
    );

    for (const j of jobs) {
      const handled = comps.map((c) => c.logged('report requested').filter((l) => l.project === j.project));
      const delivered = comps.map((c) => c.logged('delivered').filter((l) => l.project === j.project));
      // exactly one instance took it, the one this user's JID is balanced to, and it also delivered it
      expect(
        handled.map((h) => h.length),
        `requested ${j.project}`,
      ).to.deep.equal(j.rx.instance === 0 ? [1, 0] : [0, 1]);
      expect(
        delivered.map((d) => d.length),
        `delivered ${j.project}`,
      ).to.deep.equal(j.rx.instance === 0 ? [1, 0] : [0, 1]);
      expect(handled[j.rx.instance][0].jid).to.equal(j.rx.jid);
      // one offer per request, one download from the intranet
      expect(
        j.rx.proc.events.filter((e) => e.event === 'offer' && e.name === `status-${j.project}.pdf`),
        `offers of ${j.project}`,
      ).to.have.length(1);
      expect(
        intranet.requests.slice(before).filter((r) => r.url === `/projects/${j.project}/status.pdf`),
        `fetches of ${j.project}`,
      ).to.have.length(1);
    }
    // each instance offered its own streamhost
    for (const rx of receivers.filter((r) => r.method === 's5b')) {
      const ports = new Set(
        rx.proc.events
          .filter((e) => e.event === 'streamhosts')
          .map((e) => (e.hosts as Array<{ port: number }>)[0].port),
      );
      expect([...ports], rx.jid).to.deep.equal([comps[rx.instance].app.streamhost!.port]);
    }
    // both instances did real work, for both methods
    for (const i of [0, 1]) {
      for (const method of ['s5b', 'ibb']) {
        expect(
          comps[i].logged('delivered').filter((l) => l.method === method).length,
          `instance ${i} ${method}`,
        ).to.be.greaterThan(0);
      }
    }
    const total = comps.map((c) => c.logged('delivered').length);
    expect(total[0] + total[1]).to.equal(jobs.length);
  });
});
