// The requests being fetched, offered or sent right now, noted in the spool
// folder: an entry is on disk before the offer and ends with its request. A
// component killed mid-transfer (kill -9, a crash, power) finds them at its
// next start and tells each user what happened instead of leaving them with
// "please accept the file" forever.
//
// One append-only file at a time per run (inflight-<run>-<n>.log): a request
// adds a line for its entry, one for its file name and one for its end. Lines
// are JSON: {"b":id,"e":entry} begins, {"n":id,"file":name} names, {"x":id}
// ends. The file is emptied whenever no request is left in it and written into
// again by the next one (creating and removing a file for every lone request
// was 0.2-0.3 ms of its CPU on the bench's 2 cores, the create in the middle of
// its download), rewritten into a new one (live entries only) when it grows past
// ROTATE_BYTES, and removed by close() when nothing is left in it, so a stopped
// component leaves nothing behind.
//
// The writes are synchronous (made right after the event loop's current turn): a line of ~300 bytes into the page cache (no
// fsync; a killed process loses nothing written) costs a system call, where
// the same write through libuv's threads costs a thread hand-off each way and
// a promise. A lone request's five operations (create with its entry, name,
// end, remove, close) were 1.2 ms of its 6.5 ms of component CPU that way
// (bench item 7, 100 KiB, journal stubbed out against kept), and the offer
// waited for the first of them.
import { closeSync, fstatSync, ftruncateSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { newSid } from '../xmpp/ids.js';

const PREFIX = 'inflight-';
const ROTATE_BYTES = 1 << 20;

export interface InFlight {
  /** the requester's full JID */
  to: string;
  /** the project's full JID, which spoke to the user */
  from: string;
  project: string;
  file: string;
  startedAt: string;
}

function isInFlight(v: unknown): v is InFlight {
  const o = v as Record<string, unknown> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    ['to', 'from', 'project', 'file', 'startedAt'].every((k) => typeof o[k] === 'string')
  );
}

/** One request's entry, written in the background (RequestJournal.note). */
export interface JournalNote {
  readonly written: Promise<boolean>;
  /** Resolves when the name is written or given up (the first entry then stands); never rejects. */
  name(file: string): Promise<void>;
  forget(): Promise<void>;
}

/** Writes all of buf at position, or throws. */
function writeAt(fd: number, buf: Buffer, position: number): void {
  const n = writeSync(fd, buf, 0, buf.length, position);
  if (n !== buf.length) throw new Error(`short write (${n} of ${buf.length} bytes)`);
}

export class RequestJournal {
  private seq = 0;
  // Names this process's files apart from those an earlier run left.
  private readonly run = newSid('', 6);
  private generation = 0;
  private path = '';
  private fd: number | undefined;
  /** bytes in the current file */
  private size = 0;
  /** the entries not ended, with their latest file name: what a rotation writes again */
  private readonly live = new Map<number, InFlight>();
  /** lines to write at the next setImmediate, in order */
  private queue: (() => void)[] = [];

  constructor(private readonly dir: string) {}

  /**
   * Notes a request about to be offered: `written` settles (true, or false when the write failed) once
   * the entry is in the file. name() adds the file's name once it is known; forget() ends the entry.
   */
  note(entry: InFlight): JournalNote {
    const id = ++this.seq;
    this.live.set(id, entry);
    return {
      written: this.later({ b: id, e: entry }),
      name: async (file) => {
        const e = this.live.get(id);
        if (!e) return;
        this.live.set(id, { ...e, file });
        await this.later({ n: id, file });
      },
      forget: async () => {
        if (this.live.delete(id)) await this.later({ x: id });
      },
    };
  }

  /**
   * Writes a line once this turn of the event loop is over, in the order asked: a request notes its
   * entry just after starting its download, whose GET Node writes on the next tick, and the line's
   * system calls go after it instead of before.
   */
  private later(record: object): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.queue.length === 0) setImmediate(() => this.drain());
      this.queue.push(() => resolve(this.append(record)));
    });
  }

  private drain(): void {
    const q = this.queue;
    this.queue = [];
    for (const write of q) write();
  }

  /** Writes one line (or empties or rewrites the file); false when that failed. */
  private append(record: object): boolean {
    try {
      if (this.live.size === 0) {
        // every entry in the file (and this line) has ended: nothing in it needs to survive
        if (this.fd !== undefined && this.size > 0) {
          ftruncateSync(this.fd, 0);
          this.size = 0;
        }
        return true;
      }
      // an emptied file that was removed under us (the spool folder cleaned away): a new one, so an
      // entry is never written where no later run would find it
      if (this.fd !== undefined && this.size === 0 && fstatSync(this.fd).nlink === 0) this.drop();
      if (this.fd === undefined || this.size > ROTATE_BYTES) this.rotate();
      else {
        const buf = Buffer.from(`${JSON.stringify(record)}\n`);
        writeAt(this.fd, buf, this.size);
        this.size += buf.length;
      }
      return true;
    } catch {
      return false;
    }
  }

  /** Lets go of the current file (closed, left where it is). */
  private drop(): void {
    const fd = this.fd;
    this.fd = undefined;
    this.size = 0;
    if (fd !== undefined) closeSync(fd);
  }

  /**
   * At shutdown, after the last request: the file goes when no entry is left in it. Entries a shutdown
   * cut short stay for the next run to tell their users, and the file stays open, so a request that
   * still ends after this writes its end (or empties the file) as before.
   */
  close(): void {
    if (this.live.size > 0) return;
    const path = this.path;
    try {
      this.drop();
      if (path) unlinkSync(path);
    } catch {
      // gone already, or a folder taken away: nothing left to remove
    }
  }

  /**
   * Starts a new file with the live entries (their latest names in): the first file, or one that has
   * grown past ROTATE_BYTES. The old one goes only once the new one is written, so a crash in between
   * leaves both, with the same ids, which leftOver() counts once.
   */
  private rotate(): void {
    const old = this.fd === undefined ? undefined : { fd: this.fd, path: this.path };
    const path = join(this.dir, `${PREFIX}${this.run}-${++this.generation}.log`);
    const buf = Buffer.from([...this.live].map(([id, e]) => `${JSON.stringify({ b: id, e })}\n`).join(''));
    const fd = openSync(path, 'w', 0o600);
    try {
      writeAt(fd, buf, 0);
    } catch (err) {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // the write's error is the one to report
      }
      throw err;
    }
    this.fd = fd;
    this.path = path;
    this.size = buf.length;
    if (old) {
      closeSync(old.fd);
      try {
        unlinkSync(old.path);
      } catch {
        // gone already: leftOver() of a later run would have nothing more to read in it
      }
    }
  }

  /** What an earlier run left behind (it did not end its requests), removed as it is read. Unreadable entries are dropped. */
  async leftOver(): Promise<{ entries: InFlight[]; unreadable: number }> {
    const entries: InFlight[] = [];
    let unreadable = 0;
    const ours = `${PREFIX}${this.run}-`;
    // a run's entries by id, over all its files (a rotation cut short leaves two)
    const runs = new Map<string, Map<number, InFlight>>();
    for (const name of (await readdir(this.dir).catch(() => [] as string[])).sort()) {
      // an earlier version's rewrite (.inflight-*.json) that a crash cut short; the entry it was to replace is still there
      if (name.startsWith(`.${PREFIX}`) && !name.startsWith(`.${ours}`)) {
        await rm(join(this.dir, name), { force: true });
        continue;
      }
      if (!name.startsWith(PREFIX) || name.startsWith(ours)) continue;
      const path = join(this.dir, name);
      let text: string | undefined;
      try {
        text = await readFile(path, 'utf8');
      } catch {
        unreadable++;
      }
      if (text !== undefined && name.endsWith('.log')) {
        const run = basename(name, '.log').replace(/-\d+$/, '');
        const byId = runs.get(run) ?? new Map<number, InFlight>();
        runs.set(run, byId);
        unreadable += readLog(text, byId);
      } else if (text !== undefined) {
        // a file per request (inflight-<run>-<n>.json), as an earlier version wrote them
        try {
          const v: unknown = JSON.parse(text);
          if (isInFlight(v)) entries.push(v);
          else unreadable++;
        } catch {
          unreadable++;
        }
      }
      await rm(path, { force: true });
    }
    for (const byId of runs.values()) entries.push(...byId.values());
    return { entries, unreadable };
  }
}

/** Applies one log's lines to a run's entries; returns how many lines could not be read. */
function readLog(text: string, byId: Map<number, InFlight>): number {
  let unreadable = 0;
  const ended = new Set<number>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let r: { b?: unknown; e?: unknown; n?: unknown; file?: unknown; x?: unknown };
    try {
      r = JSON.parse(line) as typeof r;
    } catch {
      unreadable++; // a line a power cut tore
      continue;
    }
    if (typeof r.b === 'number' && isInFlight(r.e)) {
      if (!ended.has(r.b)) byId.set(r.b, { ...r.e, file: byId.get(r.b)?.file ?? r.e.file });
    } else if (typeof r.n === 'number' && typeof r.file === 'string') {
      const e = byId.get(r.n);
      if (e) byId.set(r.n, { ...e, file: r.file });
    } else if (typeof r.x === 'number') {
      byId.delete(r.x);
      ended.add(r.x);
    } else unreadable++;
  }
  return unreadable;
}
