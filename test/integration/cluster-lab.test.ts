// The component in a real ejabberd cluster across hosts (issue 14), on the
// network lab: two nodes on `xmpp` and `xmpp2` joined with join_cluster, two
// component instances on `component` and `component2` (one connected to each
// node), users on both nodes. Root only: when the lab cannot be built, the
// tests fail and say why.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { field, type ReceiverEvent } from '../support/receiver.js';
import type { ComponentProcess } from './harness.js';
import {
  CLUSTER_ADDRESSES,
  NODE_NAMES,
  restartNode,
  startClusterComponent,
  startClusterReceiver,
  startClusterWorld,
  stopClusterWorld,
  userInSlot,
  viaNode,
  type ClusterWorld,
} from './cluster-lab.js';
import { requestReport, sha256, type LabReceiver } from './lab.js';

let projectCounter = 960000 + Math.floor(Math.random() * 30000);
const nextProject = () => String(projectCounter++);

const logsOf = (c: ComponentProcess, msg: string, project: string) =>
  c.logs.filter((l) => l.msg === msg && l.project === project);

describe('integration: a two-node ejabberd cluster on the lab, one component instance per node', function () {
  this.timeout(600000);
  let w: ClusterWorld | undefined;
  const comps: ComponentProcess[] = [];
  const rxs: Array<LabReceiver & { name: string; node: 0 | 1; slot: number; method: 's5b' | 'ibb' }> = [];

  before(async function () {
    this.timeout(300000);
    w = await startClusterWorld();
    // instance 0 connects first: it holds balancing slot 0 (ejabberd_router_mnesia fills slots in order)
    comps.push(await startClusterComponent(w, 0, { XR_IBB_BLOCK_SIZE: '4096' }));
    comps.push(await startClusterComponent(w, 1, { XR_IBB_BLOCK_SIZE: '4096' }));
    const domain = w.nodes[0].domain;
    // users on both nodes, by both methods, falling in both slots
    const plan = [
      { prefix: 'pa', kind: 'purple', node: 0, slot: 0, method: 's5b' },
      { prefix: 'pb', kind: 'purple', node: 1, slot: 1, method: 's5b' },
      { prefix: 'sa', kind: 'slix', node: 0, slot: 1, method: 'ibb' },
      { prefix: 'sb', kind: 'slix', node: 1, slot: 0, method: 'ibb' },
      // at home (a link limited below), for a long S5B transfer across a node's stop
      { prefix: 'hc', kind: 'slix', node: 0, slot: 1, method: 's5b', host: 'home' },
      { prefix: 'hi', kind: 'slix', node: 0, slot: 1, method: 'ibb', host: 'home' },
    ] as const;
    for (const p of plan) {
      const name = await userInSlot(p.prefix, domain, p.slot);
      const rx = await startClusterReceiver(
        w,
        p.kind,
        'host' in p ? p.host : 'office',
        p.node,
        name,
        p.method === 'ibb' ? { methods: ['ibb'] } : p.kind === 'slix' ? { methods: ['s5b'] } : {},
      );
      rxs.push({ ...rx, name, node: p.node, slot: p.slot, method: p.method });
    }
  });
  after(async function () {
    this.timeout(180000);
    await Promise.all(rxs.map((r) => r.proc.quit().catch(() => {})));
    for (const r of rxs) await rm(r.outDir, { recursive: true, force: true });
    for (const c of comps) await c.stop();
    await stopClusterWorld(w);
  });

  it('joins two nodes on two hosts into one cluster, with the users registered once', async () => {
    for (const ej of w!.nodes) {
      const nodes = (await ej.ctl('list_cluster'))
        .replace(/'/g, '')
        .split('\n')
        .filter((l) => l !== '');
      expect(nodes.sort()).to.deep.equal([...NODE_NAMES].sort());
    }
    // registered through ej1 only, known to ej2 (mnesia's passwd table is shared)
    const users = (await w!.nodes[1].ctl('registered_users', w!.nodes[1].domain)).split('\n');
    for (const r of rxs) expect(users).to.include(r.jid.split('@')[0]);
    // each instance connected to its own node (first in its xmpp.service)
    const [a, b] = comps.map((c) => c.logs.find((l) => l.msg === 'connected to the XMPP server'));
    expect(String(a?.server)).to.include(CLUSTER_ADDRESSES.xmpp.v4);
    expect(String(b?.server)).to.include(CLUSTER_ADDRESSES.xmpp2.v4);
  });

  it('serves users on both nodes, by S5B and by IBB: each request exactly once, byte-exact', async () => {
    const jobs: Array<{ rx: (typeof rxs)[number]; project: string; body: Buffer }> = [];
    for (const rx of rxs.filter((r) => !r.name.startsWith('h')))
      for (let i = 0; i < 3; i++) {
        const body = randomBytes(rx.method === 's5b' ? 300_000 + i * 77_777 : 40_000 + i * 11_111);
        const project = nextProject();
        await w!.intranet.publish(project, body);
        jobs.push({ rx, project, body });
      }
    const ends = await Promise.all(jobs.map((j) => requestReport(viaNode(w!, j.rx.node), j.rx, j.project, 300000)));
    ends.forEach((end: ReceiverEvent, i) => {
      const j = jobs[i];
      expect(end, `${j.rx.jid} ${j.project}: ${JSON.stringify(end)}`).to.include({ event: 'received' });
      expect(field(end, 'sha256'), j.project).to.equal(sha256(j.body));
      expect(end.method, j.project).to.equal(j.rx.method);
    });
    // The "Delivered" message follows the bytes: wait for it before counting log lines.
    await Promise.all(
      jobs.map((j) =>
        j.rx.proc.waitFor(
          (e) => e.event === 'message' && /^Delivered /.test(field(e, 'body')) && field(e, 'body').includes(j.project),
          60000,
        ),
      ),
    );
    for (const j of jobs) {
      // (log lines come through a pipe: the user may see "Delivered" before we read the line)
      await comps[j.rx.slot].waitForLog((l) => l.msg === 'delivered' && l.project === j.project, 30000);
      const requested = comps.map((c) => logsOf(c, 'report requested', j.project).length);
      const delivered = comps.map((c) => logsOf(c, 'delivered', j.project).length);
      const want = j.rx.slot === 0 ? [1, 0] : [0, 1];
      expect(requested, `requested ${j.project} (${j.rx.jid}, slot ${j.rx.slot})`).to.deep.equal(want);
      expect(delivered, `delivered ${j.project}`).to.deep.equal(want);
    }
    // a user on one node served by the instance on the other node went through the cluster's distribution
    expect(rxs.some((r) => r.node !== r.slot)).to.equal(true);
  });

  const rxNamed = (prefix: string) => rxs.find((r) => r.name.startsWith(prefix))!;
  const sinceOf = (rx: LabReceiver, n: number, project: string) =>
    rx.proc.events.slice(n).filter((e) => JSON.stringify(e).includes(project));

  it('SIGKILL of an instance: its balancing slot drops stanzas silently until it is back; the other slot is served throughout', async () => {
    const pa = rxNamed('pa'); // slot 0: instance 0
    const sa = rxNamed('sa'); // slot 1: instance 1 (on ej2), this user on ej1
    const killedAt = Date.now();
    comps[1].proc.kill('SIGKILL');
    await comps[1].exited;
    // the other slot's users are served at once
    const p0 = nextProject();
    const b0 = randomBytes(100_000);
    await w!.intranet.publish(p0, b0);
    const e0 = await requestReport(viaNode(w!, 0), pa, p0, 60000);
    expect(e0.event, JSON.stringify(e0)).to.equal('received');
    expect(field(e0, 'sha256')).to.equal(sha256(b0));
    // A request to the dead slot: ejabberd_router (23.01, do_route/2 on a route whose pid is
    // undefined) drops it: no offer, no reply, no error stanza, for as long as we look.
    const lost = nextProject();
    await w!.intranet.publish(lost, randomBytes(1000));
    const n = sa.proc.events.length;
    sa.proc.send(`${lost}@${w!.nodes[0].componentDomain}`, 'report');
    await new Promise((r) => setTimeout(r, 5000));
    expect(sinceOf(sa, n, lost), 'what the user of the dead slot got').to.deep.equal([]);
    expect(sa.proc.events.slice(n).filter((e) => e.event === 'error' || e.event === 'message')).to.deep.equal([]);
    // As systemd's Restart=on-failure (RestartSec=2, scripts/xmpp-reports.service) would: the instance
    // comes back, takes the vacant slot, and the user's next request is served.
    await new Promise((r) => setTimeout(r, Math.max(0, 2000 - (Date.now() - killedAt))));
    const restartedAt = Date.now();
    comps[1] = await startClusterComponent(w!, 1, { XR_IBB_BLOCK_SIZE: '4096' });
    const upMs = Date.now() - restartedAt;
    const p1 = nextProject();
    const b1 = randomBytes(100_000);
    await w!.intranet.publish(p1, b1);
    const e1 = await requestReport(viaNode(w!, 0), sa, p1, 60000);
    const servedMs = Date.now() - restartedAt;
    expect(e1.event, JSON.stringify(e1)).to.equal('received');
    expect(field(e1, 'sha256')).to.equal(sha256(b1));
    await sa.proc.waitFor(
      (e) => e.event === 'message' && /^Delivered /.test(field(e, 'body')) && field(e, 'body').includes(p1),
      60000,
    );
    await comps[1].waitForLog((l) => l.msg === 'delivered' && l.project === p1, 30000);
    expect(
      comps.map((c) => logsOf(c, 'delivered', p1).length),
      'delivered by the restarted instance',
    ).to.deep.equal([0, 1]);
    // the dropped request never reached anyone, not even the restarted instance
    expect(comps.flatMap((c) => logsOf(c, 'report requested', lost))).to.deep.equal([]);
    process.stderr.write(
      `      (the killed slot, from the restart: connected after ${upMs} ms, first request served after ${servedMs} ms)\n`,
    );
  });

  it('stop of a node: its instance moves to the other node, its users ask again there; S5B running finishes, IBB cut fails and is offered again', async () => {
    await w!.lab.limitHome(16);
    const hc = rxNamed('hc'); // on ej1, slot 1: served by instance 1, connected to ej2
    const sa = rxNamed('hi'); // the same for IBB, also at home
    const s5b = nextProject();
    const s5bBody = randomBytes(6 * 1024 * 1024); // some 3 s at 16 Mbit/s
    const ibb = nextProject();
    const ibbBody = randomBytes(4 * 1024 * 1024); // 1024 blocks of 4 KiB, each an iq through ej2
    await w!.intranet.publish(s5b, s5bBody);
    await w!.intranet.publish(ibb, ibbBody);
    const s5bEnd = requestReport(viaNode(w!, 0), hc, s5b, 180000);
    const ibbEnd = requestReport(viaNode(w!, 0), sa, ibb, 180000);
    await comps[1].waitForLog((l) => l.msg === 'bytestream connected' && l.project === s5b, 60000);
    await comps[1].waitForLog((l) => l.msg === 'offer accepted' && l.project === ibb, 60000);
    await new Promise((r) => setTimeout(r, 500));
    const connectedBefore = comps[1].logs.filter((l) => l.msg === 'connected to the XMPP server').length;
    await w!.nodes[1].stop();

    const [se, ie] = await Promise.all([s5bEnd, ibbEnd]);
    expect(se.event, JSON.stringify(se)).to.equal('received');
    expect(field(se, 'sha256')).to.equal(sha256(s5bBody));
    // The IBB transfer running through ej2 ended with the link: reported failed (never delivered),
    // and the instance offered the report again once it was back on ej1 (a new stream, new sid).
    const cut = comps[1].logs.find((l) => l.msg === 'transfer failed' && l.project === ibb);
    expect(cut, 'the interrupted IBB transfer').to.not.equal(undefined);
    expect(cut!.method).to.equal('ibb');
    expect(Number(cut!.bytes)).to.be.lessThan(ibbBody.length);
    expect(comps[1].logs.filter((l) => l.msg === 'delivered' && l.sid === cut!.sid)).to.deep.equal([]);
    expect(sa.proc.events.filter((e) => e.event === 'received' && e.sid === cut!.sid)).to.deep.equal([]);
    expect(ie.event, JSON.stringify(ie)).to.equal('received');
    expect(ie.sid).to.not.equal(cut!.sid);
    expect(field(ie, 'sha256')).to.equal(sha256(ibbBody));
    // the instance is back, on ej1 (the second in its xmpp.service)
    await comps[1].waitForLog(
      (l) => l.msg === 'connected to the XMPP server' && String(l.server).includes(CLUSTER_ADDRESSES.xmpp.v4),
      60000,
    );
    expect(comps[1].logs.filter((l) => l.msg === 'connected to the XMPP server').length).to.be.greaterThan(
      connectedBefore,
    );
    // what each user is told: delivered for S5B, a failure for IBB, and never "Delivered" for IBB
    await hc.proc.waitFor(
      (e) => e.event === 'message' && /^Delivered /.test(field(e, 'body')) && field(e, 'body').includes(s5b),
      60000,
    );
    await sa.proc.waitFor(
      (e) => e.event === 'message' && /^Delivered /.test(field(e, 'body')) && field(e, 'body').includes(ibb),
      60000,
    );
    const told = sa.proc.events
      .filter((e) => e.event === 'message' && field(e, 'body').includes(ibb))
      .map((e) => field(e, 'body'));
    expect(
      told.filter((t) => /^The connection to the chat server dropped while sending .*offering it again/.test(t)),
      JSON.stringify(told),
    ).to.have.length(1);
    expect(
      told.filter((t) => /^Delivered /.test(t)),
      JSON.stringify(told),
    ).to.have.length(1);
    await comps[1].waitForLog((l) => l.msg === 'delivered' && l.project === ibb, 30000);
    expect(logsOf(comps[1], 'delivered', ibb), 'one delivery, of the second offer').to.have.length(1);

    // the users of ej2 log in at ej1 (as a client with both nodes in its SRV records would) and ask again
    for (const prefix of ['pb', 'sb']) {
      const old = rxNamed(prefix);
      await old.proc.quit().catch(() => {});
      const rx = await startClusterReceiver(
        w!,
        old.jid.endsWith('/purple') ? 'purple' : 'slix',
        'office',
        0,
        old.name,
        old.method === 'ibb' ? { methods: ['ibb'] } : {},
      );
      rxs.push({ ...rx, name: old.name, node: 0, slot: old.slot, method: old.method });
      const project = nextProject();
      const body = randomBytes(150_000);
      await w!.intranet.publish(project, body);
      const end = await requestReport(viaNode(w!, 0), rx, project, 120000);
      expect(end.event, `${old.name}: ${JSON.stringify(end)}`).to.equal('received');
      expect(field(end, 'sha256')).to.equal(sha256(body));
      await comps[old.slot].waitForLog((l) => l.msg === 'delivered' && l.project === project, 30000);
      expect(logsOf(comps[old.slot], 'delivered', project), old.name).to.have.length(1);
    }
  });
  it('with xmpp.balancing.slots: SIGKILL of the instance on ej2, the survivor on ej1 takes its slot over for a user on ej2; restarted, it gets the slot back', async () => {
    // ej2 back; both instances again with balancing on, each on its own node (each takes the one free slot)
    w!.nodes[1] = await restartNode(w!, 1);
    const balancing = { XR_IBB_BLOCK_SIZE: '4096', XR_XMPP_BALANCING_SLOTS: '2' };
    for (const i of [0, 1] as const) {
      await comps[i].stop();
      comps[i] = await startClusterComponent(w!, i, balancing);
    }
    expect(String(comps[1].logs.find((l) => l.msg === 'connected to the XMPP server')?.server)).to.include(
      CLUSTER_ADDRESSES.xmpp2.v4,
    );
    for (const c of comps)
      await c.waitForLog((l) => l.msg === 'balancing probe round' && (l.peers as string[]).length === 1, 30000);
    // a user logged in on ej2 whose slot is instance 1's
    const name = await userInSlot('pk', w!.nodes[0].domain, 1);
    const rx = await startClusterReceiver(w!, 'purple', 'office', 1, name);
    rxs.push({ ...rx, name, node: 1, slot: 1, method: 's5b' });
    const ask = async () => {
      const project = nextProject();
      const body = randomBytes(200_000);
      await w!.intranet.publish(project, body);
      const end = await requestReport(viaNode(w!, 1), rx, project, 60000);
      expect(end.event, JSON.stringify(end)).to.equal('received');
      expect(field(end, 'sha256')).to.equal(sha256(body));
      return project;
    };
    const p0 = await ask();
    await comps[1].waitForLog((l) => l.msg === 'delivered' && l.project === p0, 30000);

    const killedAt = Date.now();
    const killed = comps[1];
    killed.proc.kill('SIGKILL');
    await killed.exited;
    const taken = await comps[0].waitForLog(
      (l) => Number(l.time) >= killedAt && l.msg === 'balancing slot taken over',
      30000,
    );
    const p1 = await ask();
    const servedMs = Date.now() - killedAt;
    await comps[0].waitForLog((l) => l.msg === 'delivered' && l.project === p1, 30000);
    expect(logsOf(comps[0], 'report requested', p1), 'served by the survivor, through ej1').to.have.length(1);

    const restartedAt = Date.now();
    comps[1] = await startClusterComponent(w!, 1, balancing);
    const given = await comps[0].waitForLog(
      (l) => Number(l.time) >= restartedAt && l.msg === 'balancing slot given back',
      60000,
    );
    const back = await comps[1].waitForLog((l) => l.msg === 'balancing slot taken over', 60000);
    const p2 = await ask();
    await comps[1].waitForLog((l) => l.msg === 'delivered' && l.project === p2, 30000);
    for (const [p, who] of [
      [p0, [killed, comps[0], comps[1]].map((c) => (c === killed ? 1 : 0))],
      [p1, [0, 1, 0]],
      [p2, [0, 0, 1]],
    ] as const)
      expect(
        [killed, comps[0], comps[1]].map((c) => logsOf(c, 'report requested', p).length),
        `who served ${p}`,
      ).to.deep.equal(who);
    const closing = comps[0].logs.find(
      (l) =>
        Number(l.time) >= restartedAt &&
        l.msg === 'closing a spare connection' &&
        l.why === 'a peer asked for its slot',
    );
    const online = comps[1].logs.find((l) => l.msg === 'spare connection online' && l.conn === back.conn);
    process.stderr.write(
      `      (lab: SIGKILL → taken over ${Number(taken.time) - killedAt} ms → report on ej2 delivered ${servedMs} ms; restart → given back ${Number(given.time) - restartedAt} ms; handover window ${Number(online?.time) - Number(closing?.time)} ms)\n`,
    );
  });
});
