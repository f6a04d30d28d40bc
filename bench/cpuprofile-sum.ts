// Sums V8 CPU profiles (XR_BENCH_PROFILE=DIR writes them) by function: self time, and time
// with callees (each function counted once per sample). Usage after `npm run build`:
//   node dist/bench/cpuprofile-sum.js [--top=N] FILE.cpuprofile...
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const top = Number(args.find((a) => a.startsWith('--top='))?.slice(6) ?? 30);
const files = args.filter((a) => !a.startsWith('--'));
if (files.length === 0) {
  process.stderr.write('usage: node dist/bench/cpuprofile-sum.js [--top=N] FILE.cpuprofile...\n');
  process.exit(2);
}
const key = (n: Node) =>
  `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
const self = new Map<string, number>();
const total = new Map<string, number>();
let busy = 0;
let idle = 0;
for (const f of files) {
  const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const time = new Map<number, number>();
  p.samples.forEach((id, i) => time.set(id, (time.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  for (const [id, us] of time) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    self.set(key(n), (self.get(key(n)) ?? 0) + us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const k = key(byId.get(at)!);
      if (seen.has(k)) continue; // recursion: once per sample
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + us);
    }
  }
}
const ms = (us: number) => (us / 1000).toFixed(1).padStart(9);
const pct = (us: number) => ((100 * us) / busy).toFixed(1).padStart(5);
const show = (title: string, m: Map<string, number>) => {
  process.stdout.write(`${title}\n`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top))
    process.stdout.write(`${ms(us)} ms ${pct(us)}%  ${k}\n`);
};
process.stdout.write(`busy ${ms(busy).trim()} ms, idle ${ms(idle).trim()} ms (${files.length} profile(s))\n`);
show('self time', self);
show('with callees', total);
