// mod_xr_failover on the two-node cluster of the network lab: both ejabberd
// nodes load the module; instance 0 on `component` holds balancing slot 0 on
// ej1, instance 1 on `component2` slot 1 on ej2. Users on both nodes.
// - A request from a user on ej1 for slot 1, which ejabberd wrote to instance
//   1's socket on another host while that instance was stopped, is routed again
//   by ej2 (where the connection lived) when the instance is SIGKILLed, and
//   served once by instance 0 on the other node.
// - While slot 1 is dead, its users on either node are served by instance 0
//   (each node's hook hands the stanza across).
// - Restarted, instance 1 takes its slot back.
// - Each instance gets the answers to its own pings and proxy queries.
// Root only: when the lab cannot be built, the tests fail and say why.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { field } from '../support/receiver.js';
import { waitForUnread } from '../support/sockets.js';
import { expectOwnIqAnswers, newReplayLines, replayLines } from './failover-checks.js';
import type { ComponentProcess } from './harness.js';
import {
  startClusterComponent,
  startClusterReceiver,
  startClusterWorld,
  stopClusterWorld,
  userInSlot,
  viaNode,
  type ClusterWorld,
} from './cluster-lab.js';
import { requestReport, sha256, type LabReceiver } from './lab.js';

let projectCounter = 930000 + Math.floor(Math.random() * 30000);
const nextProject = () => String(projectCounter++);

describe('integration: mod_xr_failover on a two-node ejabberd cluster on the lab', function () {
  this.timeout(600000);
  let w: ClusterWorld | undefined;
  const comps: ComponentProcess[] = [];
  const all: ComponentProcess[] = [];
  const rx: Record<'a1' | 'b1' | 'c0', LabReceiver & { node: 0 | 1 }> = {} as never;

  // who took each request (logged as it arrives)
  const served = (project: string) =>
    all.map((c) => c.logs.filter((l) => l.msg === 'report requested' && l.project === project).length);
  const ejLog = (node: 0 | 1) => join(w!.runDir, `ejabberd${node + 1}`, 'logs', 'ejabberd.log');
  async function ask(who: keyof typeof rx, size: number) {
    const project = nextProject();
    const body = randomBytes(size);
    await w!.intranet.publish(project, body);
    const e = await requestReport(viaNode(w!, rx[who].node), rx[who], project, 120000);
    expect(e.event, JSON.stringify(e)).to.equal('received');
    expect(field(e, 'sha256')).to.equal(sha256(body));
    return project;
  }
  const start = async (i: 0 | 1) => {
    // pings and proxy discovery: answered by the server of the instance's own node, handed back to it
    const c = await startClusterComponent(w!, i, { XR_XMPP_KEEPALIVE_MS: '1000' });
    all.push(c);
    return c;
  };

  before(async function () {
    this.timeout(300000);
    w = await startClusterWorld({ failover: true });
    // instance 0 connects first: it holds slot 0
    comps.push(await start(0));
    comps.push(await start(1));
    const domain = w.nodes[0].domain;
    const plan = [
      { key: 'a1', prefix: 'fa', kind: 'purple', node: 0, slot: 1 }, // on ej1, slot on ej2
      { key: 'b1', prefix: 'fb', kind: 'slix', node: 1, slot: 1 }, // on ej2, slot on ej2
      { key: 'c0', prefix: 'fc', kind: 'purple', node: 1, slot: 0 }, // on ej2, slot on ej1
    ] as const;
    for (const p of plan) {
      const name = await userInSlot(p.prefix, domain, p.slot);
      const r = await startClusterReceiver(
        w,
        p.kind,
        'office',
        p.node,
        name,
        p.kind === 'slix' ? { methods: ['s5b'] } : {},
      );
      rx[p.key] = { ...r, node: p.node };
    }
  });
  after(async function () {
    this.timeout(180000);
    const rs = Object.values(rx);
    await Promise.all(rs.map((r) => r.proc.quit().catch(() => {})));
    for (const r of rs) await rm(r.outDir, { recursive: true, force: true });
    for (const c of all) await c.stop().catch(() => {});
    await stopClusterWorld(w);
  });

  it('with both instances up, each slot is served by its own instance across the nodes', async () => {
    expect(served(await ask('a1', 150_000))).to.deep.equal([0, 1]);
    expect(served(await ask('b1', 150_000))).to.deep.equal([0, 1]);
    expect(served(await ask('c0', 150_000))).to.deep.equal([1, 0]);
  });

  it("each instance gets its own node's answers to its pings and proxy queries", async () => {
    for (const c of comps) await expectOwnIqAnswers(c, `proxy.${w!.nodes[0].domain}`, 2);
  });

  it('a request from ej1 that ej2 wrote to a stopped instance on another host is served by the other instance when it dies', async () => {
    const before = [(await replayLines(ejLog(0))).length, (await replayLines(ejLog(1))).length];
    const victim = comps[1].proc;
    victim.kill('SIGSTOP');
    const project = nextProject();
    const body = randomBytes(200_000);
    await w!.intranet.publish(project, body);
    const asked = requestReport(viaNode(w!, 0), rx.a1, project, 120000);
    await waitForUnread(victim.pid!, w!.nodes[1].componentPort, { netns: `${w!.lab.prefix}-component2` });
    victim.kill('SIGKILL');
    await comps[1].exited;
    const e = await asked;
    expect(e.event, JSON.stringify(e)).to.equal('received');
    expect(field(e, 'sha256')).to.equal(sha256(body));
    expect(served(project), 'served once, by instance 0 on ej1').to.deep.equal([1, 0]);
    await comps[0].waitForLog((l) => l.msg === 'delivered' && l.project === project, 30000);
    // routed again by the node whose connection went down
    const lines = await newReplayLines(ejLog(1), before[1]);
    expect(lines, "ej2's log").to.have.length(1);
    expect(lines[0]).to.match(/ 1 unanswered request\(s\) held by a component connection that went down/);
    expect((await replayLines(ejLog(0))).slice(before[0]), "ej1's log").to.deep.equal([]);
  });

  it("while slot 1 is dead, its users on both nodes are served by the other instance, the live slot's user stays", async () => {
    expect(served(await ask('a1', 120_000))).to.deep.equal([1, 0]);
    expect(served(await ask('b1', 120_000))).to.deep.equal([1, 0]);
    expect(served(await ask('c0', 120_000))).to.deep.equal([1, 0]);
  });

  it('restarted, instance 1 takes slot 1 back', async () => {
    comps[1] = await start(1);
    expect(served(await ask('a1', 120_000))).to.deep.equal([0, 0, 1]);
    expect(served(await ask('b1', 120_000))).to.deep.equal([0, 0, 1]);
    expect(served(await ask('c0', 120_000))).to.deep.equal([1, 0, 0]);
  });
});
