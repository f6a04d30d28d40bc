// Streams a report to a temporary file, counting on the way, so a large report
// is never held whole in memory and its size limit holds even when the source
// lies about Content-Length. A spool file can be read while it is still being
// written (SpoolFile.open): a transfer then starts at the first byte from the
// intranet instead of after the last one. A small report of announced size
// stays in memory only, and gets a file only if something asks for a path.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ReportError,
  once,
  sha256File,
  type OpenOptions,
  type ReportMeta,
  type ReportReader,
  type Report,
} from './source.js';
import { giveBack } from './slabs.js';

export interface SpoolOptions {
  maxBytes: number;
  /** The size the source announced; a body of any other length fails the spool. */
  expectedSize?: number;
  signal?: AbortSignal;
  /** Turns a failure of the download into the error readers and the user see. */
  describe?: (err: Error) => Error;
  /** Called for every chunk taken from the input (an idle timer). */
  onChunk?: () => void;
}

const PREFIX = 'spool-';
/** Bytes per spool file write (also bounds the memory a download holds: two batches). */
export const WRITE_BATCH = 512 << 10;
const READ_BATCH = 256 << 10;
const FLUSH_MS = 2;
// A report no larger than this stays in memory whole until it is released, while all such
// reports together stay within KEEP_BUDGET: its reader usually comes after the last byte (the
// offer's round trips) and then reads without opening the file.
const KEEP_SMALL = 1 << 20;
const KEEP_BUDGET = 16 << 20;
// A lone reader that reads a report once (OpenOptions.once: SI's bytestream, which never starts
// over) takes the bytes it passed with it: from its open on, new bytes are not written to the file
// but held for it and dropped once it is past them, so the disk sees nothing of a transfer that
// keeps up. Writing every byte cost 0.4-0.65 s of CPU per GiB (libuv's threads, mostly kernel) on
// the bench's 2 cores. A download is paced by that reader, holding at most PASS_HOLD bytes ahead of
// it; held back for more than PASS_HOLD_MS in all (a slow receiver), it goes on into the file, so
// the intranet never waits long on us. Nothing is dropped before PASS_FROM bytes have arrived, so a
// second request that shares a download of that size still finds it whole (see SpoolFile.share).
const PASS_FROM = 4 << 20;
const PASS_HOLD = 8 << 20;
const PASS_HOLD_MS = 500;
/** Bytes held for lone readers by all of a spool's files (beyond it, downloads go to their files). */
const PASS_BUDGET = 64 << 20;
/** Bytes out of `mem` kept for readers that still hold views of them (see SpoolFile.retired). */
const RETIRED_MAX = 16 << 20;

/** Bytes of small reports held in memory, shared by one spool's files. */
interface KeepBudget {
  used: number;
  readonly limit: number;
  /** bytes held for lone readers (at most PASS_HOLD each), by all files: PASS_BUDGET in all */
  passing: number;
}

/** One open reader: where it reads now (it needs nothing below that) and how. */
interface ReaderAt {
  pos: number;
  readonly once: boolean;
  /** the end of the bytes chunks() gave it as views */
  viewed: number;
  /** it holds none of those views below this (ReportReader.release) */
  freed: number;
}

/** A chunk that left `mem`, at `start`, waiting for the readers that hold views of it. */
interface Retired {
  chunk: Buffer;
  start: number;
}

/** One file being (or done being) written into the spool. */
export class SpoolFile {
  /** Bytes on disk so far. */
  written = 0;
  /** Bytes received so far (counted, within the limits): readers may read below this offset. */
  received = 0;
  // The bytes received but not yet on disk, in order, from offset `written`: live readers
  // take them from here as they arrive, and the file is only the backing for readers
  // that fall behind (or join late). Bounded by the write back-pressure (about two batches).
  private mem: Buffer[] = [];
  /** The offset of mem[0]: `written`, or 0 for a small report kept whole (KEEP_SMALL). */
  private memBase = 0;
  /** Bytes of the keep budget this file holds. */
  private kept = 0;
  /** Bytes in `mem` not yet on disk. */
  private memBytes = 0;
  /** Bytes have waited FLUSH_MS since they came (a source that trickles): readers take what there is. */
  private stale = false;
  /** The announced size (Infinity when unknown). */
  private readonly expected: number;
  /** Resolves with the final size; rejects (ReportError or the stream's error) when the download failed. */
  readonly done: Promise<number>;
  private failure: Error | undefined;
  private finished = false;
  private waiters: (() => void)[] = [];
  private readonly abortCtl = new AbortController();
  /**
   * The spool file, opened for writing; its creation is not waited for before the first bytes are taken.
   * Undefined for a report kept in memory only (see memoryOnly).
   */
  private readonly file: Promise<FileHandle> | undefined;
  /**
   * A report whose announced size fits KEEP_SMALL and the keep budget (taken at the start) is held in
   * memory whole and written to no file: its readers never need one, and the open, write, close and
   * unlink cost more CPU than the report (bench item 7: a 100 KiB report). onDisk() writes it for
   * those that need a path (links, Jingle's hash).
   */
  private readonly memoryOnly: boolean;
  private materialized: Promise<void> | undefined;
  private readonly readers = new Set<ReaderAt>();
  /**
   * Passing a lone reader (PASS_FROM): bytes from `passFrom` on are not written but held in `mem`
   * for it. `passFrom` is where the file's bytes end (those before it are, or are being, written).
   */
  private passing = false;
  private passFrom = 0;
  /** Bytes [passFrom, gapEnd) were dropped unwritten behind a lone reader: no other reader can have them. */
  private gapEnd = 0;
  /** Bytes this file counts in keep.passing. */
  private passBytes = 0;
  /** The download held back while PASS_HOLD bytes wait for the reader; and since when, and for how long in all. */
  private held: (() => void) | undefined;
  private heldSince = 0;
  private heldMs = 0;
  private heldTimer: NodeJS.Timeout | undefined;
  /** Someone else needs every byte (share, onDisk): no reader passes from now on. */
  private forAll = false;
  /** Set by run(): goes back to writing every byte from memBase on (passing ends). */
  private toFile: (() => void) | undefined;
  /**
   * Chunks out of `mem` that a reader may still hold views of: each is given back to its source
   * (slabs.ts) once no reader does. False after a reader closed holding views it never released
   * (a transfer that broke with writes under way): nothing of this file is given back then.
   */
  private retired: Retired[] = [];
  private retiredBytes = 0;
  private recycle = true;

  constructor(
    readonly path: string,
    input: Readable,
    o: SpoolOptions,
    private readonly keep: KeepBudget = { used: 0, limit: KEEP_BUDGET, passing: 0 },
  ) {
    this.expected = o.expectedSize ?? Infinity;
    this.memoryOnly = this.expected <= KEEP_SMALL && this.keepWhole();
    if (!this.memoryOnly) {
      this.file = open(path, 'w', 0o600);
      this.file.catch(() => {}); // awaited by run()
    }
    const signals = o.signal ? [o.signal, this.abortCtl.signal] : [this.abortCtl.signal];
    this.done = (
      this.memoryOnly
        ? this.runInMemory(input, o, signals)
        : this.run(input, o, signals.length > 1 ? AbortSignal.any(signals) : signals[0])
    ).then(
      (size) => {
        this.finished = true;
        this.wake();
        return size;
      },
      async (raw: Error) => {
        const err = o.describe ? o.describe(raw) : raw;
        this.failure = err;
        this.mem = [];
        this.unkeep();
        this.unpass();
        this.wake();
        if (!this.memoryOnly) await removeFile(path);
        throw err;
      },
    );
    this.done.catch(() => {}); // seen by readers and by whoever awaits done
  }

  /** The limits of a chunk taken from the input: the error it fails with, if any. */
  private static refuse(received: number, o: SpoolOptions): ReportError | undefined {
    if (received > o.maxBytes)
      return new ReportError('too-large', `report is larger than the limit of ${o.maxBytes} bytes`, {
        maxBytes: o.maxBytes,
      });
    if (o.expectedSize !== undefined && received > o.expectedSize)
      return new ReportError('unavailable', `the intranet sent more than the ${o.expectedSize} bytes it announced`, {
        size: o.expectedSize,
      });
    return undefined;
  }

  private static short(received: number, expected: number): ReportError {
    return new ReportError('unavailable', `the intranet sent ${received} of the ${expected} bytes it announced`, {
      size: expected,
      received,
    });
  }

  /**
   * A report kept in memory only: the chunks are counted and kept, and no file is written. Plain
   * listeners instead of a pipeline (no back-pressure to keep for at most KEEP_SMALL bytes): a
   * pipeline and AbortSignal.any cost more than the rest of a small report's spooling.
   */
  private runInMemory(input: Readable, o: SpoolOptions, signals: readonly AbortSignal[]): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      // as run(): bytes that have waited FLUSH_MS go to readers waiting for more (a source that trickles)
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        input.off('data', onData);
        input.off('end', onEnd);
        input.off('error', onError);
        input.off('close', onClose);
        for (const s of signals) s.removeEventListener('abort', onAbort);
        if (!err) return resolve(this.received);
        input.destroy();
        reject(err);
      };
      const onData = (chunk: Buffer) => {
        o.onChunk?.();
        const refused = SpoolFile.refuse(this.received + chunk.length, o);
        if (refused) return settle(refused);
        this.mem.push(chunk);
        this.memBytes += chunk.length;
        this.received += chunk.length;
        this.stale = false;
        this.wake();
        timer ??= setTimeout(() => {
          timer = undefined;
          this.stale = true;
          this.wake();
        }, FLUSH_MS);
      };
      const onEnd = () =>
        settle(this.received === this.expected ? undefined : SpoolFile.short(this.received, this.expected));
      const onError = (err: Error) => settle(err);
      const onClose = () => settle(new Error('premature close'));
      // as a pipeline given the signal rejects
      const onAbort = function (this: AbortSignal) {
        settle(
          Object.assign(new Error('The operation was aborted', { cause: this.reason as unknown }), {
            name: 'AbortError',
          }),
        );
      };
      const aborted = signals.find((s) => s.aborted);
      if (aborted) return onAbort.call(aborted);
      for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
      input.on('data', onData);
      input.once('end', onEnd);
      input.once('error', onError);
      input.once('close', onClose);
    });
  }

  /**
   * Resolves once the whole report is in its file (for whoever needs a path); rejects when the
   * download failed. A report kept in memory only is written out on the first call.
   */
  onDisk(): Promise<void> {
    if (!this.memoryOnly) {
      if (!this.share()) return Promise.reject(this.gapError());
      return this.done.then(() => {
        if (this.gap) throw this.gapError();
      });
    }
    return (this.materialized ??= this.done.then(async () => {
      const fh = await open(this.path, 'w', 0o600);
      try {
        const { bytesWritten } = await fh.writev(this.mem, 0);
        if (bytesWritten !== this.received)
          throw new Error(`short write to the spool (${bytesWritten} of ${this.received} bytes)`);
      } finally {
        await fh.close();
      }
      this.written = this.received;
    }));
  }

  private async run(input: Readable, o: SpoolOptions, signal: AbortSignal): Promise<number> {
    try {
      // Chunks are gathered into writes of WRITE_BATCH bytes: one file write
      // (and one read by each follower) per 64 KiB HTTP chunk cost more CPU
      // than the bytes themselves (bench item 1, HTTP source); 512 KiB cost
      // less than 256 KiB, on a libuv thread that competes with the download
      // for the cores. A source that trickles is flushed after FLUSH_MS.
      // Readers do not wait for the disk: bytes not yet written are taken
      // from `mem` (issue 15: the write and read back were on the critical
      // path of every transfer).
      let received = 0;
      let pending: Buffer[] = [];
      let pendingLen = 0;
      /** the file offset of pending[0] */
      let pendingAt = 0;
      let timer: NodeJS.Timeout | undefined;
      let chain: Promise<void> = Promise.resolve();
      const flush = (): Promise<void> => {
        clearTimeout(timer);
        timer = undefined;
        if (pendingLen === 0) return chain;
        const bufs = pending;
        const len = pendingLen;
        const at = pendingAt;
        pending = [];
        pendingLen = 0;
        pendingAt = at + len;
        chain = chain.then(async () => {
          const { bytesWritten } = await (await this.file!).writev(bufs, at);
          if (bytesWritten !== len) throw new Error(`short write to the spool (${bytesWritten} of ${len} bytes)`);
          this.memBytes -= len;
          this.written = at + len;
          // the batch is on disk: from now on its bytes are read from the file, unless the report is small
          if (this.keepWhole()) return;
          while (this.mem.length > 0 && this.memBase + this.mem[0].length <= this.written) this.shiftMem();
        });
        return chain;
      };
      // Passing ends: the bytes held for the reader go to the file after all, at their offsets, and so
      // does the rest. The file then lacks [passFrom, gapEnd) if anything was dropped.
      this.toFile = () => {
        if (!this.passing) return;
        this.passing = false;
        this.unpass();
        void flush().catch(() => {}); // what was pending when passing began (below passFrom)
        let at = this.memBase;
        for (const chunk of this.mem) {
          if (at >= this.passFrom) {
            pending.push(chunk);
            pendingLen += chunk.length;
          }
          at += chunk.length;
        }
        pendingAt = received - pendingLen;
        const held = this.released();
        const before = chain;
        if (pendingLen > 0) void flush().catch(() => {}); // a failure shows in the next write or in final
        if (held) void before.then(() => held(), held);
      };
      const sink = new Writable({
        write: (chunk: Buffer, _e, cb) => {
          o.onChunk?.();
          // counted before anything is kept: an oversized or endless source stops at the limit
          received += chunk.length;
          const refused = SpoolFile.refuse(received, o);
          if (refused) return cb(refused);
          this.mem.push(chunk);
          this.memBytes += chunk.length;
          this.received = received;
          if (this.passing) {
            this.passBytes += chunk.length;
            this.keep.passing += chunk.length;
            this.stale = false;
            this.wake();
            if (this.keep.passing > PASS_BUDGET || this.heldMs > PASS_HOLD_MS) {
              this.toFile!();
              return cb();
            }
            timer ??= setTimeout(() => {
              timer = undefined;
              this.stale = true;
              this.wake();
            }, FLUSH_MS);
            if (this.memBytes < PASS_HOLD) return cb();
            // the reader is PASS_HOLD behind: the download waits for it (dropBehind), or for the file
            this.held = cb;
            this.heldSince = performance.now();
            const hold = setTimeout(() => this.toFile?.(), PASS_HOLD_MS - this.heldMs);
            this.heldTimer = hold;
            return;
          }
          pending.push(chunk);
          pendingLen += chunk.length;
          this.wake();
          if (pendingLen >= WRITE_BATCH) {
            // Back-pressure: the next chunk waits for the batch before this one to be on disk, not
            // for this one: the download goes on while a batch is written (at most two in memory).
            const before = chain;
            void flush().catch(() => {}); // a failure shows in the next write or in final
            return void before.then(() => cb(), cb);
          }
          this.stale = false;
          // a failure shows in the next write or in final
          timer ??= setTimeout(() => {
            timer = undefined;
            this.stale = true;
            this.wake();
            void flush().catch(() => {});
          }, FLUSH_MS);
          cb();
        },
        // A report passed whole (nothing dropped) still ends up in its file, for whoever needs it later.
        final: (cb) => {
          if (this.passing && this.gapEnd <= this.passFrom) this.toFile!();
          void flush().then(() => cb(), cb);
        },
        destroy: (err, cb) => {
          clearTimeout(timer);
          clearTimeout(this.heldTimer);
          this.released();
          // a write under way must end before the file is closed
          void chain.then(
            () => cb(err),
            () => cb(err),
          );
        },
      });
      await pipeline(input, sink, { signal });
      if (o.expectedSize !== undefined && received !== o.expectedSize) throw SpoolFile.short(received, o.expectedSize);
      return received;
    } finally {
      this.toFile = undefined;
      // a file that could not be created fails the spool here, if no write failed first
      await (await this.file!).close();
    }
  }

  /** Whether the report is (so far) small enough to stay in memory whole, taking budget for it if so. */
  private keepWhole(): boolean {
    const size = this.expected === Infinity ? this.received : this.expected;
    const more = size - this.kept;
    if (size <= KEEP_SMALL && (more <= 0 || this.keep.used + more <= this.keep.limit)) {
      this.keep.used += Math.max(0, more);
      this.kept += Math.max(0, more);
      return true;
    }
    this.unkeep();
    return false;
  }

  private unkeep(): void {
    this.keep.used -= this.kept;
    this.kept = 0;
  }

  private unpass(): void {
    this.keep.passing -= this.passBytes;
    this.passBytes = 0;
  }

  /** Lets a held download go on; returns its callback (called by the caller), if it was held. */
  private released(): (() => void) | undefined {
    const held = this.held;
    if (!held) return undefined;
    this.held = undefined;
    clearTimeout(this.heldTimer);
    this.heldMs += performance.now() - this.heldSince;
    return held;
  }

  /** A lone reader that reads once is at its `pos`: the bytes behind it go (see PASS_FROM). */
  private dropBehind(): void {
    if (!this.passing || this.received <= PASS_FROM || this.readers.size !== 1) return;
    const [r] = this.readers;
    if (!r.once) return;
    while (this.mem.length > 0 && this.memBase + this.mem[0].length <= r.pos && this.memBase >= this.passFrom) {
      const n = this.shiftMem();
      this.memBytes -= n;
      this.passBytes -= n;
      this.keep.passing -= n;
      this.gapEnd = this.memBase;
    }
    if (this.memBytes < PASS_HOLD) this.released()?.();
  }

  /** Takes mem[0] out of memory (its bytes are on disk, or no reader needs them): its length. */
  private shiftMem(): number {
    const chunk = this.mem.shift()!;
    this.retire(chunk, this.memBase);
    this.memBase += chunk.length;
    return chunk.length;
  }

  /** `chunk` (at `start`) left `mem` and no write of ours holds it: it goes back once no reader does. */
  private retire(chunk: Buffer, start: number): void {
    if (!this.recycle) return;
    if (this.unheld(start, start + chunk.length)) return giveBack(chunk);
    this.retired.push({ chunk, start });
    this.retiredBytes += chunk.length;
    // a reader that takes views and never releases them must not make us keep the whole report
    if (this.retiredBytes > RETIRED_MAX) this.stopRecycling();
  }

  private stopRecycling(): void {
    this.recycle = false;
    this.retired = [];
    this.retiredBytes = 0;
  }

  /** No open reader holds a view of bytes [start, end). */
  private unheld(start: number, end: number): boolean {
    for (const r of this.readers) if (r.viewed > start && r.freed < end) return false;
    return true;
  }

  /** Gives back the retired chunks no reader holds any more. */
  private sweep(): void {
    if (this.retired.length === 0) return;
    const still: Retired[] = [];
    for (const r of this.retired) {
      if (!this.unheld(r.start, r.start + r.chunk.length)) still.push(r);
      else {
        giveBack(r.chunk);
        this.retiredBytes -= r.chunk.length;
      }
    }
    this.retired = still;
  }

  /** Bytes no reader can have any more (dropped behind a lone reader), if any. */
  private get gap(): boolean {
    return this.gapEnd > this.passFrom;
  }

  private gapError(): ReportError {
    return new ReportError(
      'unavailable',
      'the report was streamed on to its first reader and is no longer held here; it must be fetched again',
    );
  }

  /**
   * Another request takes this report too: every byte from now on is kept for it (written to the
   * file). False when bytes are gone already (dropped behind a lone reader): that request fetches its own.
   */
  share(): boolean {
    if (this.gap) return false;
    this.forAll = true;
    this.toFile?.();
    return true;
  }

  /** Bytes received and not yet on disk, held in memory (bounded by the write back-pressure). */
  get inMemory(): number {
    return this.memBytes;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * Resolves once `want` bytes from `position` have arrived (or all the rest of an announced
   * size), or the file is complete; rejects when it failed. Waiting for a batch rather than
   * for every HTTP chunk keeps a fast transfer's reads (and socket writes) large.
   */
  private async reach(position: number, want: number): Promise<void> {
    const need = Math.min(want, this.expected - position);
    while (!this.finished && !(this.received > position && (this.received - position >= need || this.stale))) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /**
   * The bytes at `position` (at or past `memBase`), at most `max`, as views of the chunks held in
   * memory: no copy. The chunks are the source's own buffers, which nobody writes to again (the
   * disk write takes the same ones), so a caller may hold them past the disk write.
   */
  private viewMemory(position: number, max: number): Buffer[] {
    const out: Buffer[] = [];
    let at = this.memBase;
    let n = 0;
    for (const chunk of this.mem) {
      if (n >= max) break;
      const end = at + chunk.length;
      if (end > position + n) {
        const from = position + n - at;
        const view = chunk.subarray(from, Math.min(chunk.length, from + max - n));
        out.push(view);
        n += view.length;
      }
      at = end;
    }
    return out;
  }

  /** Copies bytes at `position` (at or past `memBase`) from the chunks held in memory. */
  private fromMemory(buf: Buffer, offset: number, length: number, position: number): number {
    let n = 0;
    for (const view of this.viewMemory(position, length)) n += view.copy(buf, offset + n);
    return n;
  }

  /**
   * A reader of its own; reads wait for bytes still on their way. It opens the
   * file only when it needs bytes already on disk (a reader that keeps up never does).
   * The first reader that reads once (o.once), alone, has the bytes it passed dropped (PASS_FROM);
   * any other reader keeps every byte for all.
   */
  open(o: OpenOptions = {}): Promise<ReportReader> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.gap) return Promise.reject(this.gapError());
    const at: ReaderAt = { pos: 0, once: o.once === true, viewed: 0, freed: 0 };
    const alone = this.readers.size === 0 && !this.forAll;
    if (at.once && alone && !this.memoryOnly && !this.finished && this.toFile && !this.passing) {
      // from here on nothing more is written; the file has what was taken so far
      this.passing = true;
      this.passFrom = this.gapEnd = this.received;
    } else if (this.passing) this.toFile?.();
    this.readers.add(at);
    let fh: Promise<FileHandle> | undefined;
    let closed = false;
    const behind = (position: number) => position >= this.passFrom && position < this.gapEnd;
    return Promise.resolve({
      read: async (buf, offset, length, position) => {
        if (closed) throw new Error('reader closed');
        at.pos = position;
        this.dropBehind();
        await this.reach(position, Math.min(length, READ_BATCH));
        if (position >= this.memBase) return this.fromMemory(buf, offset, length, position);
        if (behind(position)) throw this.gapError();
        // bytes below memBase are on disk, but for the gap
        const n = Math.min(
          length,
          (position < this.passFrom ? Math.min(this.passFrom, this.memBase) : this.memBase) - position,
        );
        if (n <= 0) return 0;
        // the write handle settles before the first batch is on disk, so the file exists by now
        fh ??= open(this.path, 'r');
        const { bytesRead } = await (await fh).read(buf, offset, n, position);
        return bytesRead;
      },
      chunks: async (position, max) => {
        if (closed) throw new Error('reader closed');
        at.pos = position;
        this.dropBehind();
        await this.reach(position, Math.min(max, READ_BATCH));
        // behind the disk write: those bytes are only in the file now
        if (position < this.memBase) return undefined;
        const views = this.viewMemory(position, max);
        let end = position;
        for (const v of views) end += v.length;
        at.viewed = Math.max(at.viewed, end);
        return views;
      },
      release: (upTo) => {
        if (upTo <= at.freed) return;
        at.freed = upTo;
        this.sweep();
      },
      close: async () => {
        if (closed) return;
        closed = true;
        // views it took and never released may still be in a write: their memory is never reused
        if (at.freed < at.viewed) this.stopRecycling();
        this.readers.delete(at);
        this.sweep();
        if (fh) await (await fh.catch(() => undefined))?.close();
      },
    });
  }

  /** Stops an unfinished download and removes the file. */
  async remove(): Promise<void> {
    if (!this.finished) this.abortCtl.abort(new ReportError('unavailable', 'download abandoned'));
    await this.done.catch(() => {});
    await this.materialized?.catch(() => {});
    // no write holds them now (the download and onDisk are over); readers still open may
    let at = this.memBase;
    for (const chunk of this.failure ? [] : this.mem) {
      this.retire(chunk, at);
      at += chunk.length;
    }
    this.mem = [];
    this.unkeep();
    this.unpass();
    if (!this.memoryOnly || this.materialized) await removeFile(this.path);
  }
}

export class Spool {
  private readonly keep: KeepBudget = { used: 0, limit: KEEP_BUDGET, passing: 0 };
  // File names: this process's own random part and a counter (randomBytes per report cost more than the name is worth).
  private readonly run = randomBytes(8).toString('hex');
  private seq = 0;
  private constructor(readonly dir: string) {}

  /** Bytes of small reports held in memory now (see KEEP_SMALL). */
  get keptBytes(): number {
    return this.keep.used;
  }

  /** Opens the spool dir and removes what a crashed run left behind. */
  static async open(dir: string): Promise<Spool> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const entry of await readdir(dir)) {
      if (entry.startsWith(PREFIX)) await rm(join(dir, entry), { force: true, recursive: true });
    }
    return new Spool(dir);
  }

  static defaultDir(domain: string): string {
    return join(tmpdir(), `xmpp-reports-${domain}`);
  }

  /** Starts spooling input; returns at once. */
  begin(input: Readable, o: SpoolOptions): SpoolFile {
    return new SpoolFile(join(this.dir, `${PREFIX}${this.run}-${++this.seq}`), input, o, this.keep);
  }

  /** Removes every spooled file (at shutdown: nothing of ours outlives the process). */
  async clear(): Promise<void> {
    for (const entry of await readdir(this.dir).catch(() => [] as string[])) {
      if (entry.startsWith(PREFIX)) await rm(join(this.dir, entry), { force: true, recursive: true });
    }
  }
}

/** A report being written into the spool (see SpoolFile); release() stops the download if it still runs and removes the file. */
export function spooledReport(meta: ReportMeta, file: SpoolFile): Report {
  const arrived = file.done.then(() => {});
  arrived.catch(() => {}); // seen by readers; nobody need wait for it
  return {
    ...meta,
    arrived,
    open: (o) => file.open(o),
    share: () => file.share(),
    complete: once(async () => {
      await file.onDisk();
      const fh = await open(file.path, 'r');
      try {
        return { path: file.path, sha256: await sha256File(fh, meta.size) };
      } finally {
        await fh.close();
      }
    }),
    release: () => file.remove(),
  };
}

/** unlink, and a file already gone is fine (one call; rm({ force }) stats it first). */
async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
