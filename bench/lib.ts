// Helpers for the benchmark driver: child processes speaking JSON lines,
// /proc readings, statistics, test files.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, createWriteStream, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';

export type Event = { [k: string]: unknown };

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Waiter {
  pred: (e: Event) => boolean;
  resolve: (e: Event) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A child process we started, with its pid recorded; JSON lines on its stdout
 * are events. Every child is stopped by pid at the end (see stopAll).
 */
export class Child {
  static readonly live = new Set<Child>();
  readonly events: Event[] = [];
  private readonly waiters = new Set<Waiter>();
  private stderrTail = '';
  private exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcess;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    opts: { env?: NodeJS.ProcessEnv; cwd?: string; keep?: (e: Event) => boolean; logFile?: string } = {},
  ) {
    this.proc = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    Child.live.add(this);
    this.proc.stdin!.on('error', () => {});
    const keep = opts.keep ?? (() => true);
    const tee = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    if (tee) this.proc.once('close', () => tee.end());
    createInterface({ input: this.proc.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      tee?.write(line + '\n');
      let e: Event;
      try {
        e = JSON.parse(line) as Event;
      } catch {
        this.tail(`[stdout] ${line}\n`);
        return;
      }
      if (typeof e !== 'object' || e === null) return;
      for (const w of [...this.waiters]) {
        if (w.pred(e)) {
          this.waiters.delete(w);
          clearTimeout(w.timer);
          w.resolve(e);
        }
      }
      if (keep(e)) this.events.push(e);
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (c: string) => this.tail(c));
    this.exited = new Promise((resolve) => {
      this.proc.once('error', (err) => {
        this.tail(`spawn error: ${err.message}\n`);
        this.exitCode = null;
        Child.live.delete(this);
        this.failWaiters();
        resolve(null);
      });
      this.proc.once('close', (code) => {
        this.exitCode = code;
        Child.live.delete(this);
        this.failWaiters();
        resolve(code);
      });
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  private tail(s: string): void {
    this.stderrTail = (this.stderrTail + s).slice(-8000);
  }

  private failWaiters(): void {
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      clearTimeout(w.timer);
      w.reject(
        new Error(
          `${this.name} (pid ${this.pid}) exited (${String(this.exitCode)}); stderr:\n${this.stderrTail.slice(-2000)}`,
        ),
      );
    }
  }

  /** The first event (past or future) matching pred; rejects on timeout or exit. */
  waitFor(pred: (e: Event) => boolean, timeoutMs: number, what = 'event'): Promise<Event> {
    const past = this.events.find(pred);
    if (past) return Promise.resolve(past);
    if (!this.running)
      return Promise.reject(new Error(`${this.name} is not running; stderr:\n${this.stderrTail.slice(-2000)}`));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(
            new Error(
              `${this.name}: timed out after ${timeoutMs} ms waiting for ${what}; stderr:\n${this.stderrTail.slice(-2000)}`,
            ),
          );
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  send(cmd: Event): void {
    if (this.running && !this.proc.stdin!.destroyed) this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
  }

  /** EOF on stdin, then SIGTERM, then SIGKILL, each by our recorded pid and bounded in time. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.proc.stdin!.end();
    if (await this.exitsWithin(Math.min(graceMs, 2000))) return;
    this.signal('SIGTERM');
    if (await this.exitsWithin(graceMs)) return;
    this.signal('SIGKILL');
    await this.exitsWithin(5000);
  }

  private signal(sig: NodeJS.Signals): void {
    if (!this.running || this.pid <= 0) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // gone already
    }
  }

  private async exitsWithin(ms: number): Promise<boolean> {
    if (!this.running) return true;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms))),
    ]);
    clearTimeout(timer);
    return r;
  }

  static async stopAll(): Promise<void> {
    await Promise.all([...Child.live].map((c) => c.stop(3000)));
  }
}

// ------------------------------------------------------------------ /proc

const CLK_TCK = 100; // Linux USER_HZ; `getconf CLK_TCK` is 100 on every Linux we know

/** utime+stime of a process in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is state (field 3); utime and stime are fields 14 and 15
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * CPU seconds of a process's live threads in nanoseconds' resolution (/proc/<pid>/task/<tid>/schedstat,
 * first field), for figures of a few ms per request where utime+stime's 10 ms ticks say 0 or 10;
 * cpuSeconds() when the kernel has no schedstat.
 */
export function cpuSecondsPrecise(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // the thread ended between the listing and the read
      }
    }
    return ns / 1e9;
  } catch {
    return cpuSeconds(pid);
  }
}

/** A VmXXX line of /proc/<pid>/status in bytes. */
export function procStatusBytes(pid: number, key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

// ------------------------------------------------------------------ statistics

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  p99: number;
}

export function summarize(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { n, median: NaN, min: NaN, max: NaN, p99: NaN };
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  // nearest-rank percentile
  const p99 = s[Math.min(n - 1, Math.ceil(0.99 * n) - 1)];
  return { n, median, min: s[0], max: s[n - 1], p99 };
}

// ------------------------------------------------------------------ files

/** Writes `size` random bytes to path (16 MiB at a time) and returns their SHA-256. */
export function writeRandomFile(path: string, size: number): string {
  const chunk = Buffer.allocUnsafe(Math.min(size, 16 << 20));
  const hash = createHash('sha256');
  const fd = openSync(path, 'w', 0o644);
  try {
    let left = size;
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      const part = chunk.subarray(0, n);
      randomFillSync(part);
      hash.update(part);
      let off = 0;
      while (off < n) off += writeSync(fd, part, off, n - off);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

// ------------------------------------------------------------------ formatting

export const MB = 1e6;
export const MiB = 1 << 20;

export function fmt(x: number, digits?: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 3);
  return x.toFixed(d);
}

/** "median (min–max)" */
export function fmtSummary(s: Summary, digits?: number): string {
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}
