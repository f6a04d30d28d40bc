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
  const rxs: Array<LabReceiver & { node: 0 | 1; slot: number; method: 's5b' | 'ibb' }> = [];

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
    ] as const;
    for (const p of plan) {
      const name = await userInSlot(p.prefix, domain, p.slot);
      const rx = await startClusterReceiver(
        w,
        p.kind,
        'office',
        p.node,
        name,
        p.method === 'ibb' ? { methods: ['ibb'] } : {},
      );
      rxs.push({ ...rx, node: p.node, slot: p.slot, method: p.method });
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
    for (const rx of rxs)
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
      const requested = comps.map((c) => logsOf(c, 'report requested', j.project).length);
      const delivered = comps.map((c) => logsOf(c, 'delivered', j.project).length);
      const want = j.rx.slot === 0 ? [1, 0] : [0, 1];
      expect(requested, `requested ${j.project} (${j.rx.jid}, slot ${j.rx.slot})`).to.deep.equal(want);
      expect(delivered, `delivered ${j.project}`).to.deep.equal(want);
    }
    // a user on one node served by the instance on the other node went through the cluster's distribution
    expect(rxs.some((r) => r.node !== r.slot)).to.equal(true);
  });
});
