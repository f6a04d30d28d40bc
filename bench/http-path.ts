// The HTTP source's data path in one process, without XMPP: the component's
// own HttpSource (http-get → spool) and S5bSender into a loopback sink, against
// the download alone. For finding where its CPU goes (bench item 1, HTTP rows):
// prints wall-clock MB/s and CPU seconds per GiB of this process, split into
// the main thread and the others (libuv's file writes, V8's GC helpers).
//
// Usage: node --max-semi-space-size=4 --expose-gc dist/bench/http-path.js [SIZE_MIB] [ROUNDS] [MODES]
//   MODES: comma-separated, run in turn every round (round 0 warms up, medians of the rest):
//   get (httpGet, body drained), spool (HttpSource.fetch until the spool has the last byte),
//   full (fetch + S5B send into a sink, every byte spooled, as Jingle reads), si (the same, read as SI
//   reads: once, so a lone reader's bytes are not written), and the floors: fwd (si's floor: a GET by hand, each
//   read written on to the sink at once, bench/forward.ts), tcp / tcpbig (a GET by hand on a bare
//   socket, 64 KiB / 1 MiB reads), send (1 MiB writes from memory into the sink), file (the
//   spool's writes alone). Under chrt -r 10 on a shared machine, and alternate A/B builds.
// Environment: XR_CHECK=1 (get: SHA-256 of the body checked), SINK_HASH=1 (the sink hashes
//   what it receives, as the bench receiver does, and full/si check its SHA-256), XR_BALLAST_MB=N (N MB of long-lived objects).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { forwardGet } from './forward.js';
import { httpGet } from '../src/reports/http-get.js';
import { HttpSource } from '../src/reports/http-source.js';
import { Spool } from '../src/reports/spool.js';
import { S5bSender } from '../src/transfer/s5b/send.js';

const MiB = 1 << 20;
const size = Number(process.argv[2] ?? 256) * MiB;
const rounds = Number(process.argv[3] ?? 5);
const modes = (process.argv[4] ?? 'get,spool,full').split(',');
const here = dirname(fileURLToPath(import.meta.url));
const CLK_TCK = 100;

function threadCpu(): { main: number; other: number; sys: number } {
  let main = 0;
  let other = 0;
  let sys = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // a thread that ended
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const s = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    sys += Number(f[12]) / CLK_TCK;
    if (Number(tid) === process.pid) main += s;
    else other += s;
  }
  return { main, other, sys };
}

async function listening(child: ChildProcess): Promise<number> {
  const rl = createInterface({ input: child.stdout! });
  for await (const line of rl) {
    const e = JSON.parse(line) as { event: string; port: number };
    if (e.event === 'listening') return e.port;
  }
  throw new Error('child ended before listening');
}

const dir = mkdtempSync(join(tmpdir(), 'xr-http-path-'));
const content = randomBytes(size);
writeFileSync(join(dir, 'p1'), content);
const sha = createHash('sha256').update(content).digest('hex');
const intranet = spawn(process.execPath, [join(here, 'intranet.js'), dir], { stdio: ['pipe', 'pipe', 'inherit'] });
const children: ChildProcess[] = [intranet];
// The sink: another process that reads and discards, as a receiver would.
const sinkProc = spawn(
  process.execPath,
  [
    '-e',
    `const s=require('net').createServer(c=>{let n=0;const h=process.env.SINK_HASH?require('crypto').createHash('sha256'):null;c.on('data',d=>{n+=d.length;if(h)h.update(d)});c.on('end',()=>{c.end(h?n+' '+h.digest('hex'):String(n))})});` +
      `s.listen(0,'127.0.0.1',()=>console.log(JSON.stringify({event:'listening',port:s.address().port})));process.stdin.on('end',()=>process.exit(0));process.stdin.resume()`,
  ],
  { stdio: ['pipe', 'pipe', 'inherit'] },
);
children.push(sinkProc);

const port = await listening(intranet);
const sinkPort = await listening(sinkProc);
const url = `http://127.0.0.1:${port}/projects/{project}/status.pdf`;
const spool = await Spool.open(join(dir, 'spool'));
const source = new HttpSource(spool, {
  urlTemplate: url,
  authHeader: '',
  basicUser: '',
  basicPassword: '',
  requesterHeader: '',
  timeoutMs: 30000,
  maxBytes: 4 * 1024 * MiB,
  fileName: 'status',
});
// XR_BALLAST_MB: long-lived objects, for a heap the size of the component's
const ballast: unknown[] = [];
for (let i = 0; i < Number(process.env.XR_BALLAST_MB ?? 0) * 1000; i++) ballast.push({ i, s: 'x'.repeat(900) + i });
// --expose-gc: collect now, as a long-running component has (its old-generation limit then follows its heap)
const gc = (globalThis as { gc?: () => void }).gc;
for (let i = 0; i < 3; i++) gc?.();
const sender = new S5bSender({ stallTimeoutMs: 30000 });

/** A GET by hand on a bare socket: what receiving the bytes costs without Node's HTTP client. */
function tcpGet(big: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let n = -1;
    let total = 0;
    const count = (buf: Buffer, len: number) => {
      if (n < 0) {
        const head = buf.subarray(0, len).indexOf('\r\n\r\n');
        if (head < 0) return; // assume the headers come in one read
        n = len - head - 4;
      } else n += len;
      total = n;
      if (n >= size) s.end();
    };
    const opts = big
      ? {
          onread: {
            buffer: Buffer.allocUnsafe(MiB),
            callback: (len: number, buf: Uint8Array) => {
              count(buf as Buffer, len);
              return true;
            },
          },
        }
      : {};
    const s = connect({ port, host: '127.0.0.1', ...opts }, () => {
      s.write('GET /projects/p1/status.pdf HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    });
    if (!big) s.on('data', (d: Buffer) => count(d, d.length));
    s.on('error', reject);
    s.on('close', () => (total >= size ? resolve() : reject(new Error(`got ${total}`))));
  });
}

const memory = content;

/** The GET by hand, each read written on to the sink at once (bench/forward.ts): the floor of si. */
function forwardToSink(): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = connect(sinkPort, '127.0.0.1');
    out.setEncoding('utf8');
    let answer = '';
    out.on('data', (d: string) => (answer += d));
    out.on('close', () =>
      Number(answer.split(' ')[0]) === size ? resolve() : reject(new Error(`sink got ${answer}`)),
    );
    out.on('error', reject);
    forwardGet(new URL(url.replace('{project}', 'p1')), out);
  });
}

async function runOnce(mode: string): Promise<void> {
  if (mode === 'tcp' || mode === 'tcpbig') return tcpGet(mode === 'tcpbig');
  if (mode === 'fwd') return forwardToSink();
  if (mode === 'send') {
    // what the raw sender does: 1 MiB writes from memory into the sink
    const s: Socket = await new Promise((resolve, reject) => {
      const c = connect(sinkPort, '127.0.0.1', () => resolve(c));
      c.once('error', reject);
    });
    for (let off = 0; off < size; off += MiB)
      if (!s.write(memory.subarray(off, Math.min(size, off + MiB)))) await new Promise((r) => s.once('drain', r));
    s.end();
    s.resume();
    await new Promise((r) => s.once('close', r));
    return;
  }
  if (mode === 'file') {
    // the spool's writes alone: 64 KiB chunks, 512 KiB writev batches, into a new file, then removed
    const fh = await open(join(dir, 'spool', 'f'), 'w');
    const chunks: Buffer[] = [];
    for (let off = 0; off < size; off += 64 << 10) chunks.push(memory.subarray(off, off + (64 << 10)));
    for (let i = 0; i < chunks.length; i += 8) await fh.writev(chunks.slice(i, i + 8), i * (64 << 10));
    await fh.close();
    await rm(join(dir, 'spool', 'f'));
    return;
  }
  if (mode === 'get') {
    const res = await httpGet(url.replace('{project}', 'p1'), {
      headers: {},
      signal: new AbortController().signal,
      maxRedirects: 0,
    });
    let n = 0;
    const h = createHash('sha256');
    for await (const c of res.body as AsyncIterable<Buffer>) {
      n += c.length;
      if (process.env.XR_CHECK) h.update(c);
    }
    if (n !== size) throw new Error(`got ${n}`);
    if (process.env.XR_CHECK && h.digest('hex') !== sha) throw new Error('SHA-256 mismatch');
    return;
  }
  const report = await source.fetch('p1', { requester: 'bench@example.com' });
  try {
    if (mode === 'spool') {
      await report.arrived;
      return;
    }
    const sock: Socket = await new Promise((resolve, reject) => {
      const s = connect(sinkPort, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
    let answer = '';
    sock.setEncoding('utf8');
    const counted = new Promise<void>((resolve) => {
      sock.on('data', (d: string) => (answer += d));
      sock.once('close', () => resolve());
    });
    // si: read as SI's bytestream reads (once: what the sender passed is let go, not written)
    await sender.send(
      sock,
      report,
      async (closed) => {
        await closed;
      },
      { once: mode === 'si' },
    );
    await counted;
    const [got, digest] = answer.split(' ');
    if (Number(got) !== size) throw new Error(`the sink got ${got} of ${size} bytes`);
    if (digest !== undefined && digest !== sha) throw new Error('SHA-256 mismatch at the sink');
  } finally {
    await report.release();
  }
}

const res = new Map<string, { mbps: number; main: number; other: number; sys: number }[]>(modes.map((m) => [m, []]));
for (let r = 0; r <= rounds; r++) {
  for (const m of modes) {
    const c0 = threadCpu();
    const t0 = performance.now();
    await runOnce(m);
    const ms = performance.now() - t0;
    const c1 = threadCpu();
    const gib = size / 2 ** 30;
    // round 0 warms up
    if (r > 0)
      res.get(m)!.push({
        mbps: size / 1e6 / (ms / 1000),
        main: (c1.main - c0.main) / gib,
        other: (c1.other - c0.other) / gib,
        sys: (c1.sys - c0.sys) / gib,
      });
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [m, xs] of res) {
  const main = med(xs.map((x) => x.main));
  const other = med(xs.map((x) => x.other));
  const all = med(xs.map((x) => x.main + x.other));
  process.stdout.write(
    `${m.padEnd(6)} ${med(xs.map((x) => x.mbps))
      .toFixed(0)
      .padStart(
        5,
      )} MB/s  CPU s/GiB: ${all.toFixed(2)} (main ${main.toFixed(2)}, other threads ${other.toFixed(2)}; kernel ${med(xs.map((x) => x.sys)).toFixed(2)})  runs ${xs.map((x) => (x.main + x.other).toFixed(2)).join(' ')}\n`,
  );
}
for (const c of children) c.stdin?.end();
rmSync(dir, { recursive: true, force: true });
