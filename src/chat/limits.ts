// Limits on what requesters can make the component do: how often one may ask
// (RateLimiter), how many reports are fetched and sent at once (ConcurrencyGate,
// with a queue whose place is told to the user), and one intranet download
// shared by identical concurrent requests (SharedFetches). Pure: no I/O, no
// timers; the clock is injected so tests need not wait.

export type Take = { ok: true } | { ok: false; retryAfterMs: number };

export interface RateLimiterOptions {
  /** Requests allowed per key within any window. */
  limit: number;
  /** Window length; 60 000 ms makes `limit` "requests per minute". */
  windowMs?: number;
  /** Monotonic milliseconds; injectable for tests. performance.now by default, so a wall-clock jump neither blocks nor frees anyone. */
  now?: () => number;
  /**
   * Keys tracked at most. Idle keys are forgotten anyway; this bounds memory
   * when many distinct keys are active at once (evicting the one used longest
   * ago, which at worst lets that key start over).
   */
  maxKeys?: number;
}

function positiveInt(name: string, v: number, allowZero = false): number {
  if (!Number.isInteger(v) || v < (allowZero ? 0 : 1))
    throw new RangeError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
  return v;
}

/**
 * Sliding-window log per key: a request counts for exactly windowMs after it
 * was accepted, so there is no burst of 2×limit at a fixed window boundary.
 * Refused requests are not recorded: hammering does not extend the wait.
 */
export class RateLimiter {
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly maxKeys: number;
  // Accepted timestamps per key, oldest first, at most `limit` of them. The
  // Map is kept ordered by each key's latest accepted request (re-inserted on
  // every accept), so idle keys are always at the front.
  private readonly log = new Map<string, number[]>();

  constructor(opts: RateLimiterOptions) {
    this.limit = positiveInt('limit', opts.limit);
    this.windowMs = positiveInt('windowMs', opts.windowMs ?? 60_000);
    this.now = opts.now ?? (() => performance.now());
    this.maxKeys = positiveInt('maxKeys', opts.maxKeys ?? 10_000);
  }

  /** Keys currently tracked (for tests and metrics). */
  get size(): number {
    return this.log.size;
  }

  take(key: string): Take {
    const now = this.now();
    this.forgetIdle(now);
    const since = now - this.windowMs;
    const times = (this.log.get(key) ?? []).filter((t) => t > since);
    if (times.length >= this.limit) {
      this.log.set(key, times); // same position: its latest accepted request did not change
      return { ok: false, retryAfterMs: Math.max(1, Math.ceil(times[0] - since)) };
    }
    times.push(now);
    this.log.delete(key);
    if (this.log.size >= this.maxKeys) this.log.delete(this.log.keys().next().value!);
    this.log.set(key, times);
    return { ok: true };
  }

  /** Drops keys whose latest request left the window; stops at the first active one (see the ordering above). */
  private forgetIdle(now: number): void {
    const since = now - this.windowMs;
    for (const [key, times] of this.log) {
      if (times[times.length - 1] > since) break;
      this.log.delete(key);
    }
  }
}

export interface GateOptions {
  /** Jobs running at once, all keys together. */
  maxTotal: number;
  /** Jobs running at once for one key (one requester). */
  maxPerKey: number;
  /** Jobs waiting at most, all keys together; 0 = never wait. */
  maxQueue: number;
  /** Jobs waiting at most for one key, so one requester cannot fill the queue; default maxQueue. */
  maxQueuedPerKey?: number;
}

export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export class GateClosedError extends Error {
  override name = 'GateClosedError';
}

interface Job {
  key: string;
  /** now: fn is called at once rather than on a microtask (run()'s eager) */
  start: (now?: boolean) => void;
  reject: (err: Error) => void;
}

/**
 * Caps concurrent jobs overall and per key, queueing the rest in FIFO order.
 * A freed slot goes to the first waiting job whose key is below its own cap:
 * a key at its cap does not hold up the keys queued behind it, and it cannot
 * starve either, because its next job is ahead of later arrivals once one of
 * its own jobs ends.
 */
export class ConcurrencyGate {
  private readonly opts: Required<GateOptions>;
  private readonly queue: Job[] = [];
  private readonly perKey = new Map<string, number>();
  private total = 0;
  private closedWith: Error | undefined;

  constructor(opts: GateOptions) {
    this.opts = {
      maxTotal: positiveInt('maxTotal', opts.maxTotal),
      maxPerKey: positiveInt('maxPerKey', opts.maxPerKey),
      maxQueue: positiveInt('maxQueue', opts.maxQueue, true),
      maxQueuedPerKey: positiveInt('maxQueuedPerKey', opts.maxQueuedPerKey ?? opts.maxQueue, true),
    };
  }

  get running(): number {
    return this.total;
  }

  get queued(): number {
    return this.queue.length;
  }

  runningFor(key: string): number {
    return this.perKey.get(key) ?? 0;
  }

  queuedFor(key: string): number {
    return this.queue.filter((j) => j.key === key).length;
  }

  /**
   * Runs fn when a slot is free (its slot is taken at once, fn itself is
   * called on the next microtask) and settles like it. When it has to wait,
   * onQueued is called once, synchronously, with its 1-based place in the
   * queue (so the user can be told). Rejects with QueueFullError when the
   * queue is full, GateClosedError after close().
   *
   * `eager`: when a slot is free at once, fn is called inside run() instead,
   * so what it starts synchronously (a request written to its socket) does not
   * wait for the rest of the current task. A job that waited in the queue is
   * still called on a microtask.
   */
  run<T>(key: string, fn: () => Promise<T>, onQueued?: (position: number) => void, eager = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith);
      const job: Job = {
        key,
        reject,
        start: (now = false) => {
          this.total++;
          this.perKey.set(key, this.runningFor(key) + 1);
          // Unless `now`, fn runs on the next microtask; never inside pump(), so
          // a job that calls run() itself cannot jump the queue. A synchronous
          // throw becomes a rejection either way (when called at once, inside
          // the executor). The slot is freed before the caller hears the
          // outcome, so the next job has its slot when it does.
          (now ? new Promise<T>((started) => started(fn())) : Promise.resolve().then(fn)).then(
            (v) => {
              this.done(key);
              resolve(v);
            },
            (e: unknown) => {
              this.done(key);
              // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what fn rejected with
              reject(e);
            },
          );
        },
      };
      // After every pump no waiting job can start, so a free slot here is one
      // nobody ahead of us could take: starting at once keeps FIFO fairness.
      // (Inside run() a job calling run() cannot jump the queue either: the slot it finds free is one
      // no queued job can use.)
      if (this.canStart(key)) return job.start(eager);
      if (this.queue.length >= this.opts.maxQueue) {
        return reject(new QueueFullError(`too many requests waiting (${this.queue.length}); try again later`));
      }
      if (this.queuedFor(key) >= this.opts.maxQueuedPerKey) {
        return reject(new QueueFullError(`you already have ${this.opts.maxQueuedPerKey} requests waiting`));
      }
      this.queue.push(job);
      try {
        onQueued?.(this.queue.length);
      } catch {
        // A failed notice must not leave a job queued whose caller saw an error.
      }
    });
  }

  /** Rejects every waiting job (running ones go on) and every later run(). */
  close(reason = 'shutting down'): void {
    this.closedWith ??= new GateClosedError(reason);
    for (const job of this.queue.splice(0)) job.reject(this.closedWith);
  }

  private canStart(key: string): boolean {
    return this.total < this.opts.maxTotal && this.runningFor(key) < this.opts.maxPerKey;
  }

  private done(key: string): void {
    this.total--;
    const n = this.runningFor(key) - 1;
    if (n > 0) this.perKey.set(key, n);
    else this.perKey.delete(key); // no entry for idle keys: memory stays bounded
    this.pump();
  }

  private pump(): void {
    for (let i = 0; i < this.queue.length && this.total < this.opts.maxTotal;) {
      const job = this.queue[i];
      if (this.canStart(job.key)) {
        this.queue.splice(i, 1);
        job.start();
      } else i++;
    }
  }
}

export interface Lease<T> {
  readonly value: T;
  /** Idempotent. The last user's release runs dispose(value) and settles with it. */
  release(): Promise<void>;
}

interface Flight<T> {
  promise: Promise<T>;
  users: number;
  forget: () => void;
}

/**
 * One fetch per key while it is in flight: identical concurrent requests
 * (e.g. the same project's report asked by two users) share one download.
 * Each acquirer gets its own lease; the value (a spooled file) is disposed
 * once, after the last lease is released. A fetch stays joinable until
 * `until(value)` settles (a report handed on at its headers: until its last
 * byte has arrived) and while someone holds it; after that the next acquire
 * starts a fresh one, so nobody gets a stale report.
 */
export class SharedFetches<T> {
  private readonly flights = new Map<string, Flight<T>>();

  /**
   * `join` is asked before a second (third, ...) request takes a value in flight; false (what it
   * needs is gone) gives that request a fetch of its own.
   */
  constructor(
    private readonly dispose: (value: T) => Promise<void>,
    private readonly until: (value: T) => Promise<unknown> = async () => {},
    private readonly join: (value: T) => boolean = () => true,
  ) {}

  /** Keys being fetched now. */
  get inFlight(): number {
    return this.flights.size;
  }

  /**
   * Joins the fetch in flight for key, or starts fetch(). A failed fetch
   * rejects every joiner with the same error (and there is nothing to dispose).
   * Every lease must be released, success or not, or the value leaks.
   */
  async acquire(key: string, fetch: () => Promise<T>): Promise<Lease<T>> {
    let flight = this.flights.get(key);
    const joining = flight !== undefined;
    if (!flight) {
      let adopt!: (p: Promise<T>) => void;
      // Leaves the map when `until` settles, or at once when the last lease
      // goes: nobody joins a value that is being disposed.
      const f: Flight<T> = {
        promise: new Promise<T>((resolve) => (adopt = resolve)),
        users: 0,
        forget: () => {
          if (this.flights.get(key) === f) this.flights.delete(key);
        },
      };
      f.promise.then((v) => this.until(v).then(f.forget, f.forget), f.forget);
      // In the map before fetch is called: a fetch that asks for its own key
      // joins itself instead of recursing. A synchronous throw becomes a rejection.
      this.flights.set(key, f);
      try {
        adopt(fetch());
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what fetch threw
        adopt(Promise.reject(err));
      }
      flight = f;
    }
    const shared = flight;
    shared.users++;
    const value = await shared.promise;
    const leave = async () => {
      if (--shared.users === 0) {
        shared.forget();
        await this.dispose(value);
      }
    };
    if (joining && !this.join(value)) {
      // a fetch of its own, shared with nobody
      await leave();
      const own = await fetch();
      return leaseOf(own, () => this.dispose(own));
    }
    return leaseOf(value, leave);
  }
}

/** A lease whose release() does its work once, however often it is called. */
function leaseOf<T>(value: T, release: () => Promise<void>): Lease<T> {
  let released = false;
  return {
    value,
    release: async () => {
      if (released) return;
      released = true;
      await release();
    },
  };
}
