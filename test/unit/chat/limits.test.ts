import { expect } from 'chai';
import {
  ConcurrencyGate,
  GateClosedError,
  QueueFullError,
  RateLimiter,
  SharedFetches,
  type Lease,
} from '../../../src/chat/limits.js';

/** A promise with its settle functions outside, to drive jobs by hand. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise reaction run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('chat/limits', () => {
  describe('RateLimiter', () => {
    function limiter(limit: number, extra: { maxKeys?: number } = {}) {
      let t = 1_000_000;
      const rl = new RateLimiter({ limit, windowMs: 60_000, now: () => t, ...extra });
      return { rl, advance: (ms: number) => (t += ms) };
    }

    it('allows N requests per window, then refuses with the time until the oldest leaves', () => {
      const { rl, advance } = limiter(3);
      expect(rl.take('a')).to.deep.equal({ ok: true });
      advance(10_000);
      expect(rl.take('a')).to.deep.equal({ ok: true });
      advance(10_000);
      expect(rl.take('a')).to.deep.equal({ ok: true });
      advance(5_000);
      // the first was 25 s ago: it leaves the window in 35 s
      expect(rl.take('a')).to.deep.equal({ ok: false, retryAfterMs: 35_000 });
    });

    it('slides: a request counts for exactly one window, no double burst at a boundary', () => {
      const { rl, advance } = limiter(2);
      rl.take('a');
      advance(59_999);
      rl.take('a');
      expect(rl.take('a').ok).to.equal(false);
      advance(1); // the first is now exactly 60 s old: gone
      expect(rl.take('a')).to.deep.equal({ ok: true });
      expect(rl.take('a')).to.deep.equal({ ok: false, retryAfterMs: 59_999 });
    });

    it('waiting retryAfterMs is always enough', () => {
      const { rl, advance } = limiter(4);
      for (let i = 0; i < 50; i++) {
        const r = rl.take('a');
        if (!r.ok) {
          expect(r.retryAfterMs).to.be.greaterThan(0);
          advance(r.retryAfterMs);
          expect(rl.take('a').ok).to.equal(true);
        }
        advance(3_000);
      }
    });

    it('refused requests do not extend the wait', () => {
      const { rl, advance } = limiter(1);
      rl.take('a');
      for (let i = 0; i < 10; i++) {
        advance(5_000);
        expect(rl.take('a').ok).to.equal(false);
      }
      advance(10_000);
      expect(rl.take('a').ok).to.equal(true);
    });

    it('keeps keys apart', () => {
      const { rl } = limiter(1);
      expect(rl.take('alice@example.com').ok).to.equal(true);
      expect(rl.take('alice@example.com').ok).to.equal(false);
      expect(rl.take('bob@example.com').ok).to.equal(true);
    });

    it('forgets idle keys', () => {
      const { rl, advance } = limiter(5);
      for (let i = 0; i < 100; i++) rl.take(`user${i}`);
      expect(rl.size).to.equal(100);
      advance(30_000);
      rl.take('user7'); // still active
      advance(30_000);
      rl.take('new');
      expect(rl.size).to.equal(2);
      advance(60_000);
      rl.take('other');
      expect(rl.size).to.equal(1);
    });

    it('never tracks more than maxKeys, evicting the longest idle', () => {
      const { rl, advance } = limiter(1, { maxKeys: 3 });
      rl.take('a');
      advance(1);
      rl.take('b');
      advance(1);
      rl.take('c');
      advance(1);
      rl.take('d');
      expect(rl.size).to.equal(3);
      expect(rl.take('a').ok).to.equal(true); // 'a' was evicted, so it starts over
      expect(rl.take('c').ok).to.equal(false);
    });

    it('refuses nonsense options', () => {
      expect(() => new RateLimiter({ limit: 0 })).to.throw(RangeError);
      expect(() => new RateLimiter({ limit: 1.5 })).to.throw(RangeError);
      expect(() => new RateLimiter({ limit: 1, windowMs: 0 })).to.throw(RangeError);
    });

    it('uses a real clock by default', () => {
      const rl = new RateLimiter({ limit: 1 });
      expect(rl.take('a').ok).to.equal(true);
      const r = rl.take('a');
      expect(r.ok).to.equal(false);
      if (!r.ok) expect(r.retryAfterMs).to.be.within(59_000, 60_000);
    });
  });

  describe('ConcurrencyGate', () => {
    /** A gate and jobs that run until finished by hand. */
    function harness(opts: { maxTotal: number; maxPerKey: number; maxQueue: number; maxQueuedPerKey?: number }) {
      const gate = new ConcurrencyGate(opts);
      const started: string[] = [];
      const finishers = new Map<string, ReturnType<typeof deferred<string>>>();
      const positions = new Map<string, number>();
      const submit = (key: string, name: string) => {
        const d = deferred<string>();
        finishers.set(name, d);
        const result = gate.run(
          key,
          () => {
            started.push(name);
            return d.promise;
          },
          (pos) => positions.set(name, pos),
        );
        result.catch(() => {});
        return result;
      };
      const finish = async (name: string) => {
        finishers.get(name)!.resolve(name);
        await settle();
      };
      return { gate, started, positions, submit, finish, finishers };
    }

    it('runs at once while below the caps, without calling onQueued', async () => {
      const h = harness({ maxTotal: 2, maxPerKey: 2, maxQueue: 10 });
      const a = h.submit('alice', 'a1');
      expect(h.gate.running).to.equal(1); // the slot is taken synchronously
      await settle();
      expect(h.started).to.deep.equal(['a1']);
      expect(h.positions.size).to.equal(0);
      await h.finish('a1');
      expect(await a).to.equal('a1');
      expect(h.gate.running).to.equal(0);
    });

    it('never calls a job inside run() (a job that calls run() itself cannot jump the queue)', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      let insideRun = true;
      let calledInsideRun: boolean | undefined;
      const p = gate.run('a', async () => {
        calledInsideRun = insideRun;
      });
      insideRun = false;
      await p;
      expect(calledInsideRun).to.equal(false);
    });

    it('eager: calls a job inside run() when a slot is free, and settles as usual', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      let insideRun = true;
      let calledInsideRun: boolean | undefined;
      const d = deferred<string>();
      const p = gate.run(
        'a',
        () => {
          calledInsideRun = insideRun;
          return d.promise;
        },
        undefined,
        true,
      );
      insideRun = false;
      expect(calledInsideRun).to.equal(true);
      expect(gate.running).to.equal(1);
      d.resolve('done');
      expect(await p).to.equal('done');
      expect(gate.running).to.equal(0);
    });

    it('eager: a job that had to wait is called on a microtask, after the one before it ends', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      const first = deferred<string>();
      const calls: string[] = [];
      const a = gate.run('a', () => (calls.push('a'), first.promise), undefined, true);
      let position: number | undefined;
      const b = gate.run(
        'b',
        async () => (calls.push('b'), 'b'),
        (pos) => (position = pos),
        true,
      );
      expect(calls).to.deep.equal(['a']);
      expect(position).to.equal(1);
      first.resolve('a');
      expect(await a).to.equal('a');
      expect(await b).to.equal('b');
      expect(calls).to.deep.equal(['a', 'b']);
      expect(gate.running).to.equal(0);
    });

    it('eager: a job that throws at once rejects and frees its slot', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      const p = gate.run(
        'a',
        () => {
          throw new Error('boom');
        },
        undefined,
        true,
      );
      const err = await p.then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.equal('boom');
      expect(gate.running).to.equal(0);
      expect(await gate.run('a', async () => 'next', undefined, true)).to.equal('next');
    });

    it('queues beyond the overall cap, tells 1-based positions, and starts in FIFO order', async () => {
      const h = harness({ maxTotal: 2, maxPerKey: 5, maxQueue: 10 });
      void h.submit('a', 'j1');
      void h.submit('b', 'j2');
      void h.submit('c', 'j3');
      void h.submit('d', 'j4');
      void h.submit('e', 'j5');
      await settle();
      expect(h.started).to.deep.equal(['j1', 'j2']);
      expect([...h.positions]).to.deep.equal([
        ['j3', 1],
        ['j4', 2],
        ['j5', 3],
      ]);
      expect(h.gate.queued).to.equal(3);
      await h.finish('j2');
      expect(h.started).to.deep.equal(['j1', 'j2', 'j3']);
      await h.finish('j1');
      expect(h.started).to.deep.equal(['j1', 'j2', 'j3', 'j4']);
      await h.finish('j3');
      await h.finish('j4');
      await h.finish('j5');
      expect(h.started).to.deep.equal(['j1', 'j2', 'j3', 'j4', 'j5']);
      expect(h.gate.running).to.equal(0);
      expect(h.gate.queued).to.equal(0);
    });

    it('the slot is free (and the next job started) before the caller hears the outcome', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      let secondStarted = false;
      const first = gate.run('a', async () => 1);
      void gate.run('b', async () => {
        secondStarted = true;
        return 2;
      });
      await first;
      expect(secondStarted).to.equal(true);
    });

    it('caps per key, and a key at its cap does not hold up keys queued behind it', async () => {
      const h = harness({ maxTotal: 3, maxPerKey: 1, maxQueue: 10 });
      void h.submit('alice', 'a1');
      void h.submit('alice', 'a2'); // alice at her cap: waits although slots are free
      void h.submit('bob', 'b1'); // starts at once: the free slot is one alice cannot take
      await settle();
      expect(h.started).to.deep.equal(['a1', 'b1']);
      expect(h.positions.get('a2')).to.equal(1);
      expect(h.gate.runningFor('alice')).to.equal(1);
      expect(h.gate.queuedFor('alice')).to.equal(1);
      await h.finish('a1');
      expect(h.started).to.deep.equal(['a1', 'b1', 'a2']);
      expect(h.gate.runningFor('alice')).to.equal(1);
    });

    it('a freed slot goes to the first waiting job that may run, skipping keys at their cap', async () => {
      const h = harness({ maxTotal: 2, maxPerKey: 1, maxQueue: 10 });
      void h.submit('alice', 'a1');
      void h.submit('bob', 'b1');
      void h.submit('alice', 'a2'); // 1
      void h.submit('bob', 'b2'); // 2
      void h.submit('carol', 'c1'); // 3
      expect([...h.positions.values()]).to.deep.equal([1, 2, 3]);
      await h.finish('b1'); // alice is still at her cap: bob's next goes first
      expect(h.started).to.deep.equal(['a1', 'b1', 'b2']);
      await h.finish('a1'); // now alice's waiting job is first in line, ahead of carol
      expect(h.started).to.deep.equal(['a1', 'b1', 'b2', 'a2']);
      await h.finish('b2');
      expect(h.started.at(-1)).to.equal('c1');
    });

    it('never starves a key: a busy key cannot keep another waiting forever', async () => {
      const h = harness({ maxTotal: 1, maxPerKey: 1, maxQueue: 100 });
      void h.submit('busy', 'busy0');
      void h.submit('quiet', 'quiet');
      // the busy key keeps asking; each of its jobs queues behind the quiet one
      for (let i = 1; i <= 5; i++) void h.submit('busy', `busy${i}`);
      await h.finish('busy0');
      expect(h.started).to.deep.equal(['busy0', 'quiet']);
    });

    it('refuses with QueueFullError once the queue is full, overall and per key', async () => {
      const h = harness({ maxTotal: 1, maxPerKey: 1, maxQueue: 2, maxQueuedPerKey: 1 });
      void h.submit('a', 'a1');
      void h.submit('a', 'a2');
      const perKey = await rejection(h.submit('a', 'a3'));
      expect(perKey).to.be.instanceOf(QueueFullError);
      expect(perKey.message).to.match(/already have 1 request/);
      void h.submit('b', 'b1');
      const full = await rejection(h.submit('c', 'c1'));
      expect(full).to.be.instanceOf(QueueFullError);
      expect(full.message).to.match(/too many requests waiting/);
      expect(h.started).to.deep.equal(['a1']);
      expect(h.gate.queued).to.equal(2);
    });

    it('maxQueue 0 never lets anyone wait', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 0 });
      const hold = deferred();
      void gate.run('a', () => hold.promise);
      expect(await rejection(gate.run('b', async () => 1))).to.be.instanceOf(QueueFullError);
      hold.resolve();
    });

    it('a job that throws or rejects frees its slot and rejects its caller only', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      const sync = gate.run('a', () => {
        throw new Error('sync boom');
      });
      expect((await rejection(sync)).message).to.equal('sync boom');
      const asyncFail = gate.run('a', async () => {
        throw new Error('async boom');
      });
      const next = gate.run('a', async () => 'fine');
      expect((await rejection(asyncFail)).message).to.equal('async boom');
      expect(await next).to.equal('fine');
      expect(gate.running).to.equal(0);
      expect(gate.runningFor('a')).to.equal(0);
    });

    it('a throwing onQueued does not leave a ghost job behind', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      const hold = deferred();
      void gate.run('a', () => hold.promise);
      const queued = gate.run(
        'b',
        async () => 'ran',
        () => {
          throw new Error('notice failed');
        },
      );
      hold.resolve();
      expect(await queued).to.equal('ran');
    });

    it('close() rejects waiting jobs and later runs; running jobs finish', async () => {
      const h = harness({ maxTotal: 1, maxPerKey: 1, maxQueue: 5 });
      const running = h.submit('a', 'a1');
      const waiting = h.submit('b', 'b1');
      h.gate.close('component stopping');
      const err = await rejection(waiting);
      expect(err).to.be.instanceOf(GateClosedError);
      expect(err.message).to.equal('component stopping');
      expect(await rejection(h.gate.run('c', async () => 1))).to.be.instanceOf(GateClosedError);
      expect(h.gate.queued).to.equal(0);
      await h.finish('a1');
      expect(await running).to.equal('a1');
      expect(h.started).to.deep.equal(['a1']);
    });

    it('keeps no state for idle keys', async () => {
      const gate = new ConcurrencyGate({ maxTotal: 10, maxPerKey: 2, maxQueue: 5 });
      await Promise.all(Array.from({ length: 14 }, (_, i) => gate.run(`k${i % 7}`, async () => i)));
      expect(gate.running).to.equal(0);
      for (let i = 0; i < 7; i++) expect(gate.runningFor(`k${i}`)).to.equal(0);
    });

    it('holds every cap under a random load, and runs every job exactly once', async () => {
      // A deterministic pseudo-random schedule of arrivals and finishes.
      let seed = 12345;
      const rand = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const gate = new ConcurrencyGate({ maxTotal: 4, maxPerKey: 2, maxQueue: 1000 });
      const live = new Map<string, number>();
      const ends: Array<() => void> = [];
      const ran: number[] = [];
      const results: Array<Promise<number>> = [];
      let maxTotalSeen = 0;
      for (let i = 0; i < 300; i++) {
        const key = `k${rand(6)}`;
        results.push(
          gate.run(key, () => {
            live.set(key, (live.get(key) ?? 0) + 1);
            const total = [...live.values()].reduce((a, b) => a + b, 0);
            maxTotalSeen = Math.max(maxTotalSeen, total);
            expect(live.get(key)).to.be.at.most(2);
            ran.push(i);
            return new Promise<number>((resolve) =>
              ends.push(() => {
                live.set(key, live.get(key)! - 1);
                resolve(i);
              }),
            );
          }),
        );
        await settle(); // started jobs run their fn
        if (rand(3) === 0 && ends.length > 0) {
          ends.splice(rand(ends.length), 1)[0]();
          await settle();
        }
      }
      while (ends.length > 0) {
        ends.splice(rand(ends.length), 1)[0]();
        await settle();
      }
      expect(await Promise.all(results)).to.deep.equal(Array.from({ length: 300 }, (_, i) => i));
      expect([...ran].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 300 }, (_, i) => i));
      expect(maxTotalSeen).to.equal(4);
      expect(gate.running).to.equal(0);
    });

    it('refuses nonsense options', () => {
      expect(() => new ConcurrencyGate({ maxTotal: 0, maxPerKey: 1, maxQueue: 1 })).to.throw(RangeError);
      expect(() => new ConcurrencyGate({ maxTotal: 1, maxPerKey: 1, maxQueue: -1 })).to.throw(RangeError);
    });
  });

  describe('SharedFetches', () => {
    function harness() {
      const disposed: string[] = [];
      const shared = new SharedFetches<string>(async (v) => {
        disposed.push(v);
      });
      let fetches = 0;
      const pending: Array<ReturnType<typeof deferred<string>>> = [];
      const fetch = () => {
        fetches++;
        const d = deferred<string>();
        pending.push(d);
        return d.promise;
      };
      return { shared, disposed, fetch, pending, fetches: () => fetches };
    }

    it('a value join() refuses (its bytes are gone) gives the joiner a fetch of its own, disposed on its own', async () => {
      const disposed: string[] = [];
      const arrived = deferred<void>();
      const asked: string[] = [];
      let keeps = true;
      const shared = new SharedFetches<string>(
        async (v) => void disposed.push(v),
        async () => arrived.promise,
        (v) => {
          asked.push(v);
          return keeps;
        },
      );
      let fetches = 0;
      const fetch = async () => `file-${++fetches}`;
      const a = await shared.acquire('p', fetch);
      const b = await shared.acquire('p', fetch); // still whole: b shares it
      keeps = false;
      const c = await shared.acquire('p', fetch); // bytes let go behind a's reader: c fetches its own
      expect([a.value, b.value, c.value, fetches]).to.deep.equal(['file-1', 'file-1', 'file-2', 2]);
      expect(asked).to.deep.equal(['file-1', 'file-1']); // asked for joiners only, never for the first
      await c.release();
      expect(disposed).to.deep.equal(['file-2']);
      await a.release();
      await b.release();
      expect(disposed).to.deep.equal(['file-2', 'file-1']);
      arrived.resolve();
    });

    it('a refused joiner whose first lease went meanwhile still disposes the shared value', async () => {
      const disposed: string[] = [];
      const first = deferred<string>();
      const shared = new SharedFetches<string>(
        async (v) => void disposed.push(v),
        async () => new Promise<void>(() => {}),
        () => false,
      );
      const a = shared.acquire('p', () => first.promise);
      const b = shared.acquire('p', async () => 'own'); // joins while the first is fetching
      first.resolve('file-1');
      await (await a).release(); // nothing disposed yet: b still counts as a user until join() refuses
      const lb = await b;
      expect(lb.value).to.equal('own');
      expect(disposed).to.deep.equal(['file-1']);
      await lb.release();
      expect(disposed).to.deep.equal(['file-1', 'own']);
    });

    it('with until(), a fetch stays joinable after it resolved, until until() settles or the last lease goes', async () => {
      const disposed: string[] = [];
      const arrived = deferred<void>();
      const shared = new SharedFetches<string>(
        async (v) => void disposed.push(v),
        async () => arrived.promise,
      );
      let fetches = 0;
      const fetch = async () => `file-${++fetches}`;
      const a = await shared.acquire('p', fetch);
      const b = await shared.acquire('p', fetch); // the report is handed on, still downloading: b joins it
      expect([a.value, b.value, fetches]).to.deep.equal(['file-1', 'file-1', 1]);
      arrived.resolve();
      await new Promise((r) => setImmediate(r));
      const c = await shared.acquire('p', fetch); // downloaded: a fresh fetch
      expect([c.value, fetches]).to.deep.equal(['file-2', 2]);
      await a.release();
      await b.release();
      await c.release();
      expect(disposed).to.deep.equal(['file-1', 'file-2']);
      // the last lease going ends the sharing even while until() is pending
      const never = new SharedFetches<string>(
        async (v) => void disposed.push(v),
        () => new Promise(() => {}),
      );
      const d = await never.acquire('q', fetch);
      await d.release();
      expect(never.inFlight).to.equal(0);
      const e = await never.acquire('q', fetch);
      expect(e.value).to.equal('file-4');
      await e.release();
    });

    it('identical concurrent requests share one fetch and get the same value', async () => {
      const h = harness();
      const a = h.shared.acquire('p1', h.fetch);
      const b = h.shared.acquire('p1', h.fetch);
      const c = h.shared.acquire('p1', h.fetch);
      expect(h.fetches()).to.equal(1);
      expect(h.shared.inFlight).to.equal(1);
      h.pending[0].resolve('file-1');
      const leases = await Promise.all([a, b, c]);
      expect(leases.map((l) => l.value)).to.deep.equal(['file-1', 'file-1', 'file-1']);
      expect(h.shared.inFlight).to.equal(0);
    });

    it('different keys fetch separately', async () => {
      const h = harness();
      void h.shared.acquire('p1', h.fetch);
      void h.shared.acquire('p2', h.fetch);
      expect(h.fetches()).to.equal(2);
      expect(h.shared.inFlight).to.equal(2);
      h.pending[0].resolve('x');
      h.pending[1].resolve('y');
      await settle();
    });

    it('disposes once, after the last user releases, whatever the order', async () => {
      const h = harness();
      const p = [h.shared.acquire('p1', h.fetch), h.shared.acquire('p1', h.fetch), h.shared.acquire('p1', h.fetch)];
      h.pending[0].resolve('file-1');
      const [l1, l2, l3] = (await Promise.all(p)) as [Lease<string>, Lease<string>, Lease<string>];
      await l2.release();
      await l2.release(); // idempotent: does not count twice
      expect(h.disposed).to.deep.equal([]);
      await l3.release();
      expect(h.disposed).to.deep.equal([]);
      await l1.release();
      expect(h.disposed).to.deep.equal(['file-1']);
      await l1.release();
      expect(h.disposed).to.deep.equal(['file-1']);
    });

    it('a single user disposes on its release', async () => {
      const h = harness();
      const p = h.shared.acquire('p1', h.fetch);
      h.pending[0].resolve('solo');
      const lease = await p;
      await lease.release();
      expect(h.disposed).to.deep.equal(['solo']);
    });

    it('after a fetch settled, the next request fetches anew (no stale report), even while the old value is held', async () => {
      const h = harness();
      const first = h.shared.acquire('p1', h.fetch);
      h.pending[0].resolve('old');
      const l1 = await first;
      const second = h.shared.acquire('p1', h.fetch);
      expect(h.fetches()).to.equal(2);
      h.pending[1].resolve('new');
      const l2 = await second;
      expect(l2.value).to.equal('new');
      await l1.release();
      expect(h.disposed).to.deep.equal(['old']);
      await l2.release();
      expect(h.disposed).to.deep.equal(['old', 'new']);
    });

    it('a failed fetch rejects every waiter with the same error, disposes nothing, and is not cached', async () => {
      const h = harness();
      const a = h.shared.acquire('p1', h.fetch);
      const b = h.shared.acquire('p1', h.fetch);
      const boom = new Error('intranet unreachable');
      h.pending[0].reject(boom);
      expect(await rejection(a)).to.equal(boom);
      expect(await rejection(b)).to.equal(boom);
      expect(h.shared.inFlight).to.equal(0);
      expect(h.disposed).to.deep.equal([]);
      const retry = h.shared.acquire('p1', h.fetch);
      expect(h.fetches()).to.equal(2);
      h.pending[1].resolve('ok');
      expect((await retry).value).to.equal('ok');
    });

    it('a fetch that throws synchronously rejects like a failed one', async () => {
      const shared = new SharedFetches<string>(async () => {});
      const err = await rejection(
        shared.acquire('p', () => {
          throw new Error('bad id');
        }),
      );
      expect(err.message).to.equal('bad id');
      expect(shared.inFlight).to.equal(0);
    });

    it('a request joining in the same tick as the fetch settles still shares and is counted', async () => {
      const h = harness();
      const a = h.shared.acquire('p1', h.fetch);
      h.pending[0].resolve('v');
      const b = h.shared.acquire('p1', h.fetch); // the flight has not been forgotten yet
      expect(h.fetches()).to.equal(1);
      const [la, lb] = await Promise.all([a, b]);
      await la.release();
      expect(h.disposed).to.deep.equal([]);
      await lb.release();
      expect(h.disposed).to.deep.equal(['v']);
    });

    it("the last release reports the dispose error; the others don't", async () => {
      const shared = new SharedFetches<string>(async () => {
        throw new Error('cannot remove spool file');
      });
      const d = deferred<string>();
      const a = shared.acquire('p', () => d.promise);
      const b = shared.acquire('p', () => d.promise);
      d.resolve('f');
      const [la, lb] = await Promise.all([a, b]);
      await la.release();
      expect((await rejection(lb.release())).message).to.equal('cannot remove spool file');
    });
  });
});
