// Bench item 9: requests per second with several component instances on the
// two-node ejabberd cluster of the network lab (test/integration/cluster-lab.ts).
//
// Users: real receivers (libpurple or slixmpp, whichever is faster per request
// in this run's calibration), one process per user, on the `office` host, half
// logged in to ej1 and half to ej2. Reports: 100 KiB each, a distinct project
// (and distinct random bytes) for every request, from the lab's HTTP intranet
// (the source both instances can reach from their own hosts; a report folder
// would have to be shared between the component hosts). Every file is checked
// by SHA-256 (the receiver hashes what it saved).
//
// Both instances stay connected throughout (instance #1 on `component` to ej1,
// #2 on `component2` to ej2; bare_source, component_number 2). What differs is
// who asks:
//   A: 50 users whose bare JIDs ejabberd balances to instance #1's slot, so one
//      instance serves every request (#2 gets none; checked);
//   B: 50 users, 25 in each slot (25 of them A's), so each instance serves half.
// In both, 25 users are on each node, so about half the stanzas cross the
// Erlang distribution in both. Each user asks R times with at most K requests
// outstanding; a round is timed from the first request to the last file saved.
// A and B alternate, round by round.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  NODE_NAMES,
  startClusterComponent,
  startClusterReceiver,
  startClusterWorld,
  stopClusterWorld,
  viaNode,
  type ClusterWorld,
} from '../test/integration/cluster-lab.js';
import { requestReport, sha256, type LabReceiver } from '../test/integration/lab.js';
import type { ComponentProcess } from '../test/integration/harness.js';
import type { EjabberdInstance } from '../test/support/ejabberd.js';
import { field } from '../test/support/receiver.js';
import { cpuSeconds, fmt, fmtSummary, sleep, summarize } from './lib.js';
import type { LabBenchOut } from './netlab.js';

const ITEM = '9';
// The node options `npm start` gives the component (package.json), through NODE_OPTIONS: the lab's
// ComponentProcess starts plain `node dist/src/main.js`.
const START_NODE_OPTIONS =
  (
    JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as { scripts: { start: string } }
  ).scripts.start.match(/^node (.*?) ?dist\/src\/main\.js/)?.[1] ?? '';
const SIZE = 100 * 1024;
const REQUEST_TIMEOUT_MS = 120_000;
const ROUND_TIMEOUT_MS = 600_000;

/** What item 9 measures, for the results file. */
export const CLUSTER_SETUP = [
  "- Item 9 (bench/cluster.ts, root): the lab's two-node ejabberd cluster (test/integration/cluster-lab.ts: ej1 on `xmpp`,",
  '  ej2 on `xmpp2`, joined; domain_balancing bare_source, component_number 2), component instance #1 on `component`',
  '  connected to ej1, #2 on `component2` connected to ej2, both connected throughout (XR_LOG_LEVEL=info,',
  '  XR_DISCOVER_PROXIES=false, limits lifted). Real receivers on `office`, one process per user, half logged in to each',
  '  node; each request a distinct project of 100 KiB random bytes from the lab intranet (LabIntranet), SHA-256 checked by',
  "  the receiver on the saved file. A: 50 users all balanced to #1's slot (one instance serves everything, #2 gets nothing:",
  "  checked per round from the instances' `delivered` lines); B: 50 users, 25 in each slot. Each user asks R times with",
  '  at most 2 outstanding; a round runs from the first request to the last file saved; A and B alternate. Every process',
  '  (both ejabberd nodes, both instances, all receivers, the intranet, this driver) shares the 2 cores: the B/A ratio',
  '  shows the overhead of a second instance and of the cluster, not scaling. (--quick: 10 users, 2 requests each, one round.)',
];

type Kind = 'purple' | 'slix';

interface User {
  name: string;
  slot: 0 | 1;
  node: 0 | 1;
  rx?: LabReceiver;
}

interface RoundResult {
  rps: number;
  latMs: number[];
  compCpuMsPerReq: number;
  ejCpuMsPerReq: number;
  rxCpuMsPerReq: number;
  intranetCpuMsPerReq: number;
  driverCpuMsPerReq: number;
}

let projectCounter = 700000 + Math.floor(Math.random() * 200000);

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 30000, encoding: 'utf8' }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd}: ${stderr.trim() || err.message}`)) : resolve(stdout),
    ),
  );
}

/**
 * The balancing slot of each name, as ejabberd_router (23.01, balancing_route/4)
 * computes it: erlang:phash2 of the bare JID {User, Server, <<>>} modulo
 * component_number (see balancingSlot in cluster-lab.ts), all in one erl run.
 */
async function slotsOf(names: string[], domain: string): Promise<Array<0 | 1>> {
  const terms = names.map((n) => `erlang:phash2({<<"${n}">>, <<"${domain}">>, <<>>}, 2)`).join(', ');
  const out = await run('erl', ['-noshell', '-eval', `io:format("~w", [[${terms}]]), halt().`]);
  const slots = out
    .trim()
    .replace(/^\[|\]$/g, '')
    .split(',')
    .map(Number);
  if (slots.length !== names.length || slots.some((s) => s !== 0 && s !== 1))
    throw new Error(`erl gave ${JSON.stringify(out.slice(0, 200))} for ${names.length} names`);
  return slots as Array<0 | 1>;
}

/** A's users (all in slot 0) and B's (half in each slot), each set half on each node. */
async function pickUsers(w: ClusterWorld, n: number): Promise<{ a: User[]; b: User[] }> {
  const names = Array.from({ length: 8 * n }, (_, i) => `cb${i + 1}`); // bounded: ~n/2 of 8n fall in each slot
  const slots = await slotsOf(names, w.nodes[0].domain);
  const s0 = names.filter((_, i) => slots[i] === 0).slice(0, n);
  const s1 = names.filter((_, i) => slots[i] === 1).slice(0, Math.ceil(n / 2));
  if (s0.length < n || s1.length < Math.ceil(n / 2)) throw new Error(`too few names per slot among ${names.length}`);
  // slot 0 alternates ej1, ej2 …; slot 1 ej2, ej1 …: B's first n/2 + n/2 are then half on each node too
  const u0 = s0.map((name, i): User => ({ name, slot: 0, node: (i % 2) as 0 | 1 }));
  const u1 = s1.map((name, i): User => ({ name, slot: 1, node: ((i + 1) % 2) as 0 | 1 }));
  return { a: u0, b: [...u0.slice(0, Math.floor(n / 2)), ...u1.slice(0, n - Math.floor(n / 2))] };
}

const beamPid = (e: EjabberdInstance) => Number(readFileSync(join(e.runDir, 'ejabberd.pid'), 'utf8').trim());

async function startReceiver(w: ClusterWorld, kind: Kind, u: User): Promise<LabReceiver> {
  // slixmpp: S5B only (no IBB fallback hides a failed bytestream); libpurple tries S5B first by itself
  return startClusterReceiver(w, kind, 'office', u.node, u.name, kind === 'slix' ? { methods: ['s5b'] } : {});
}

/** One request and its end, checked: S5B, byte-exact. Resolves with request → saved in ms. */
async function ask(w: ClusterWorld, u: User, project: string, body: Buffer): Promise<number> {
  const t0 = performance.now();
  const end = await requestReport(viaNode(w, u.node), u.rx!, project, REQUEST_TIMEOUT_MS);
  const ms = performance.now() - t0;
  if (end.event !== 'received' || end.method !== 's5b' || field(end, 'sha256') !== sha256(body))
    throw new Error(`${u.rx!.jid}, project ${project}: expected S5B byte-exact, got ${JSON.stringify(end)}`);
  return ms;
}

export async function benchCluster(o: LabBenchOut): Promise<void> {
  const nUsers = o.quick ? 10 : 50;
  const perUser = o.quick ? 2 : 8; // R
  const outstanding = 2; // K
  const rounds = o.quick ? 1 : 6;
  const warmup = !o.quick;
  const calN = o.quick ? 6 : 20;
  let w: ClusterWorld | undefined;
  const comps: ComponentProcess[] = [];
  const rxs: LabReceiver[] = [];
  const stopRx = async (list: LabReceiver[]) => {
    await Promise.all(list.map((r) => r.proc.quit().catch(() => null)));
    for (const r of list) await rm(r.outDir, { recursive: true, force: true });
  };
  // On an interrupt the lab's own exit hook ends every process in its namespaces (by pid); this removes
  // the directories they leave (the nodes' run dir, the receivers' files, the spools, the intranet's reports).
  const leftovers = () => {
    const dirs = [w?.runDir, w?.intranet.dir, ...rxs.map((r) => r.outDir), ...comps.map((c) => c.spoolDir)];
    for (const d of dirs) if (d) rmSync(d, { recursive: true, force: true });
  };
  process.on('exit', leftovers);
  try {
    w = await startClusterWorld();
    const world = w;
    o.log(`item 9: lab ${w.lab.prefix} up, ${NODE_NAMES.join(' and ')} joined in one cluster`);
    const env = {
      NODE_OPTIONS: START_NODE_OPTIONS,
      XR_LOG_LEVEL: 'info', // as shipped: the debug lines of every stanza would be the bench's own load
      XR_DISCOVER_PROXIES: 'false', // several instances: each its own streamhost (README, Several instances)
      XR_PROXY_MAX_PER_ADDRESS: '10000', // every user connects from the office host's one address
      XR_LIMITS_REQUESTS_PER_MINUTE: '100000',
      XR_LIMITS_MAX_CONCURRENT: '1000',
      XR_LIMITS_MAX_CONCURRENT_PER_USER: '1000',
    };
    // instance #1 first: it takes balancing slot 0 (ejabberd_router_mnesia fills slots in order)
    comps.push(await startClusterComponent(w, 0, env));
    comps.push(await startClusterComponent(w, 1, env));
    const { a, b } = await pickUsers(w, nUsers);

    // ---- which receiver is faster per request here: one user of each, on ej1, alternated
    const cal: Record<Kind, { rx: LabReceiver; ms: number[]; cpuS: number }> = {
      purple: { rx: await startReceiver(w, 'purple', { name: 'calpurple', slot: 0, node: 0 }), ms: [], cpuS: 0 },
      slix: { rx: await startReceiver(w, 'slix', { name: 'calslix', slot: 0, node: 0 }), ms: [], cpuS: 0 },
    };
    rxs.push(cal.purple.rx, cal.slix.rx);
    for (let i = 0; i < calN + 1; i++)
      for (const kind of ['purple', 'slix'] as const) {
        const c = cal[kind];
        const project = String(projectCounter++);
        const body = randomBytes(SIZE);
        await w.intranet.publish(project, body);
        const cpu0 = cpuSeconds(c.rx.proc.pid!);
        const ms = await ask(w, { name: kind, slot: 0, node: 0, rx: c.rx }, project, body);
        if (i === 0) continue; // the first of each warms up
        c.ms.push(ms);
        c.cpuS += cpuSeconds(c.rx.proc.pid!) - cpu0; // summed: one request is about one clock tick (10 ms)
        await sleep(50);
      }
    await stopRx(rxs.splice(0));
    const calS = { purple: summarize(cal.purple.ms), slix: summarize(cal.slix.ms) };
    const cpuMs = { purple: (cal.purple.cpuS * 1000) / calN, slix: (cal.slix.cpuS * 1000) / calN };
    // The faster per request; when the medians are within 10 % (noise here), the one that costs less CPU
    // per request, since 50 of them share the 2 cores with everything else in the rounds.
    const close =
      Math.abs(calS.purple.median - calS.slix.median) < 0.1 * Math.min(calS.purple.median, calS.slix.median);
    const forced = process.env.XR_BENCH_CLUSTER_RECEIVER;
    const kind: Kind =
      forced === 'purple' || forced === 'slix'
        ? forced
        : close
          ? cpuMs.purple <= cpuMs.slix
            ? 'purple'
            : 'slix'
          : calS.purple.median < calS.slix.median
            ? 'purple'
            : 'slix';
    const why = forced
      ? 'XR_BENCH_CLUSTER_RECEIVER'
      : close
        ? 'latency within 10 %: less CPU per request'
        : 'lower median latency';
    o.row({
      item: ITEM,
      figure: `receiver choice: one user, ${SIZE / 1024} KiB by S5B, request → saved (${calN} each, alternated); receiver CPU per request`,
      value: `libpurple ${fmtSummary(calS.purple)} ms, CPU ${fmt(cpuMs.purple, 2)} ms`,
      baseline: `slixmpp ${fmtSummary(calS.slix)} ms, CPU ${fmt(cpuMs.slix, 2)} ms`,
      ratio: `chosen: ${kind === 'purple' ? 'libpurple' : 'slixmpp'} (${why})`,
    });
    o.log(`item 9: receiver for the rounds: ${kind} (${why})`);

    // ---- the users (B's first half are A's users), registered once through ej1, each its own process
    const all = new Map<string, User>();
    for (const u of [...a, ...b]) all.set(u.name, u);
    const users = [...all.values()];
    for (let i = 0; i < users.length; i += 5)
      await Promise.all(
        users.slice(i, i + 5).map(async (u) => {
          u.rx = await startReceiver(world, kind, u);
          rxs.push(u.rx);
        }),
      );
    const setA = a.map((u) => all.get(u.name)!);
    const setB = b.map((u) => all.get(u.name)!);
    o.log(`item 9: ${users.length} ${kind} receivers online (A ${setA.length}, B ${setB.length} users)`);

    const round = async (set: User[], label: string): Promise<RoundResult> => {
      const jobs = set.map((u) => ({ u, items: [] as Array<{ project: string; body: Buffer }> }));
      for (const j of jobs)
        for (let r = 0; r < perUser; r++) {
          const project = String(projectCounter++);
          const body = randomBytes(SIZE);
          await world.intranet.publish(project, body);
          j.items.push({ project, body });
        }
      const compCpu0 = comps.map((c) => cpuSeconds(c.proc.pid!));
      const ejCpu0 = world.nodes.map((n) => cpuSeconds(beamPid(n)));
      const rxCpu0 = set.map((u) => cpuSeconds(u.rx!.proc.pid!));
      const inCpu0 = cpuSeconds(world.intranet.proc.pid!);
      const driver0 = process.cpuUsage();
      const lat: number[] = [];
      let last = 0;
      const t0 = performance.now();
      const lane = async (j: (typeof jobs)[number]) => {
        for (let it = j.items.shift(); it; it = j.items.shift()) {
          lat.push(await ask(world, j.u, it.project, it.body));
          last = performance.now();
        }
      };
      const projects = jobs.flatMap((j) => j.items.map((it) => ({ project: it.project, slot: j.u.slot })));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(jobs.flatMap((j) => Array.from({ length: outstanding }, () => lane(j)))),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`round ${label} exceeded ${ROUND_TIMEOUT_MS} ms`)),
            ROUND_TIMEOUT_MS,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      const n = projects.length;
      const compCpu = comps.reduce((s, c, i) => s + cpuSeconds(c.proc.pid!) - compCpu0[i], 0);
      const ejCpu = world.nodes.reduce((s, e, i) => s + cpuSeconds(beamPid(e)) - ejCpu0[i], 0);
      const rxCpu = set.reduce((s, u, i) => s + cpuSeconds(u.rx!.proc.pid!) - rxCpu0[i], 0);
      const inCpu = cpuSeconds(world.intranet.proc.pid!) - inCpu0;
      const driver = process.cpuUsage(driver0);
      // each request handled exactly once, by the instance of its user's slot ("delivered" follows the
      // bytes: its log line may come a little after the file is saved; bounded wait)
      const want = new Set(projects.map((p) => p.project));
      const count = () =>
        comps.map((c) => c.logs.filter((l) => l.msg === 'delivered' && want.has(String(l.project))).length);
      let byInstance = count();
      for (let tries = 0; tries < 150 && byInstance[0] + byInstance[1] < n; tries++) {
        await sleep(200);
        byInstance = count();
      }
      const expected = [0, 1].map((s) => projects.filter((p) => p.slot === s).length);
      if (byInstance[0] !== expected[0] || byInstance[1] !== expected[1])
        throw new Error(
          `round ${label}: delivered per instance ${byInstance.join('/')}, expected ${expected.join('/')}`,
        );
      const rps = n / ((last - t0) / 1000);
      o.log(
        `item 9: ${label}: ${n} requests in ${fmt(last - t0)} ms = ${fmt(rps)} req/s; per instance ${byInstance.join('/')}`,
      );
      const perReq = (cpu: number) => (cpu * 1000) / n;
      return {
        rps,
        latMs: lat,
        compCpuMsPerReq: perReq(compCpu),
        ejCpuMsPerReq: perReq(ejCpu),
        rxCpuMsPerReq: perReq(rxCpu),
        intranetCpuMsPerReq: perReq(inCpu),
        driverCpuMsPerReq: perReq((driver.user + driver.system) / 1e6),
      };
    };

    const res: Record<'A' | 'B', RoundResult[]> = { A: [], B: [] };
    for (let i = 0; i < rounds + (warmup ? 1 : 0); i++)
      for (const [name, set] of [
        ['A', setA],
        ['B', setB],
      ] as const) {
        const r = await round(set, `${name} round ${i + 1}${warmup && i === 0 ? ' (warm-up)' : ''}`);
        if (!(warmup && i === 0)) res[name].push(r);
        await sleep(1000);
      }

    const sA = summarize(res.A.map((r) => r.rps));
    const sB = summarize(res.B.map((r) => r.rps));
    const what = `${nUsers} users (${nUsers / 2} per node) × ${perUser} requests of ${SIZE / 1024} KiB, ≤ ${outstanding} outstanding each, ${kind} receivers`;
    o.row({
      item: ITEM,
      figure: `requests/s, first request → last file saved, ${what}: B two instances (one per node) against A one instance`,
      value: `B ${fmtSummary(sB)} req/s`,
      baseline: `A ${fmtSummary(sA)} req/s`,
      ratio: `${fmt(sB.median / sA.median, 2)}× (2 cores: overhead, not scaling)`,
    });
    for (const [name, rs] of [
      ['A', res.A],
      ['B', res.B],
    ] as const) {
      const lat = summarize(rs.flatMap((r) => r.latMs));
      const med = (f: (r: RoundResult) => number) => fmt(summarize(rs.map(f)).median, 2);
      const comp = summarize(rs.map((r) => r.compCpuMsPerReq));
      const total = summarize(
        rs.map(
          (r) => r.compCpuMsPerReq + r.ejCpuMsPerReq + r.rxCpuMsPerReq + r.intranetCpuMsPerReq + r.driverCpuMsPerReq,
        ),
      ).median;
      const others = [
        `ejabberd (both nodes) ${med((r) => r.ejCpuMsPerReq)}`,
        `receivers ${med((r) => r.rxCpuMsPerReq)}`,
        `intranet ${med((r) => r.intranetCpuMsPerReq)}`,
        `bench driver ${med((r) => r.driverCpuMsPerReq)} ms`,
      ].join(', ');
      o.row({
        item: ITEM,
        figure: `${name === 'A' ? 'A, one instance' : 'B, two instances'}: request → saved per request (all rounds, at ${nUsers * outstanding} outstanding); CPU per request`,
        value: `median ${fmt(lat.median)} ms, p99 ${fmt(lat.p99)} ms (${lat.n} requests)`,
        baseline:
          `component ${fmtSummary(comp, 2)} ms CPU${name === 'B' ? ' (both instances)' : ''}; ${others}; ` +
          `together ${fmt(total, 1)} ms: at most ${fmt(2000 / total)} req/s on 2 cores`,
      });
    }
  } finally {
    await stopRx(rxs.splice(0)).catch(() => {});
    for (const c of comps) {
      await c.stop(10000).catch(() => null);
      await rm(c.spoolDir, { recursive: true, force: true }).catch(() => {});
    }
    await stopClusterWorld(w);
    process.off('exit', leftovers);
  }
}
