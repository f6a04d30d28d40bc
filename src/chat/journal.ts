// The requests being fetched, offered or sent right now, noted in the spool
// folder: an entry is on disk before the offer and ends with its request. A
// component killed mid-transfer (kill -9, a crash, power) finds them at its
// next start and tells each user what happened instead of leaving them with
// "please accept the file" forever.
//
// One append-only file at a time per run (inflight-<run>-<n>.log): a request
// adds a line for its entry, one for its file name and one for its end, where a
// file per request cost nine file operations (open, write, close, the rename of
// a rewrite, stat and unlink), each a trip through libuv's threads, and the
// offer waited behind the first three (bench item 7, 100 KiB). Lines are JSON:
// {"b":id,"e":entry} begins, {"n":id,"file":name} names, {"x":id} ends. The
// file is removed whenever no request is left in it, so an idle component
// leaves nothing behind (a request alone then costs five operations: create
// with its entry, name, remove, close), and rewritten into a new one (live
// entries only) when it grows past ROTATE_BYTES.
import { close, open, write } from 'node:fs';
import { readFile, readdir, rm, unlink } from 'node:fs/promises';
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

const openFd = (path: string) =>
  new Promise<number>((res, rej) => open(path, 'w', 0o600, (err, fd) => (err ? rej(err) : res(fd))));
const writeAt = (fd: number, buf: Buffer, position: number) =>
  new Promise<void>((res, rej) =>
    write(fd, buf, 0, buf.length, position, (err, n) =>
      err ? rej(err) : n === buf.length ? res() : rej(new Error(`short write (${n} of ${buf.length} bytes)`)),
    ),
  );
const closeFd = (fd: number) => new Promise<void>((res) => close(fd, () => res()));

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
  // Lines waiting for the write under way; all of them go in the next one.
  private pending: string[] = [];
  private waiting: ((ok: boolean) => void)[] = [];
  private busy = false;

  constructor(private readonly dir: string) {}

  /**
   * Notes a request about to be offered, without waiting: `written` settles (true, or false when the
   * write failed) once the entry is in the file. name() adds the file's name once it is known;
   * forget() ends the entry, after what was written for it.
   */
  note(entry: InFlight): JournalNote {
    const id = ++this.seq;
    this.live.set(id, entry);
    const written = this.append({ b: id, e: entry });
    let named: Promise<void> = Promise.resolve();
    return {
      written,
      name: (file) => {
        const e = this.live.get(id);
        if (!e) return named;
        this.live.set(id, { ...e, file });
        named = this.append({ n: id, file }).then(() => {});
        return named;
      },
      forget: async () => {
        if (!this.live.delete(id)) return;
        await this.append({ x: id });
      },
    };
  }

  private append(record: object): Promise<boolean> {
    return new Promise((resolve) => {
      this.pending.push(`${JSON.stringify(record)}\n`);
      this.waiting.push(resolve);
      if (!this.busy) void this.pump();
    });
  }

  /** Writes what is pending, one write at a time, until nothing is. */
  private async pump(): Promise<void> {
    this.busy = true;
    while (this.pending.length > 0) {
      const lines = this.pending;
      const waiters = this.waiting;
      this.pending = [];
      this.waiting = [];
      let ok = true;
      try {
        await this.writeLines(lines);
      } catch {
        ok = false;
      }
      for (const w of waiters) w(ok);
    }
    this.busy = false;
  }

  private async writeLines(lines: readonly string[]): Promise<void> {
    if (this.live.size === 0) {
      // every entry in the file (and in these lines) has ended: nothing in it needs to survive, and
      // an idle component leaves no file behind; the next request starts a new one
      if (this.fd !== undefined) {
        const fd = this.fd;
        this.fd = undefined;
        this.size = 0;
        await unlink(this.path);
        void closeFd(fd);
      }
      return;
    }
    if (this.fd === undefined || this.size > ROTATE_BYTES) return this.rotate();
    const buf = Buffer.from(lines.join(''));
    await writeAt(this.fd, buf, this.size);
    this.size += buf.length;
  }

  /**
   * Starts a new file with the live entries (their latest names in): the first file, or one that has
   * grown past ROTATE_BYTES. The old one goes only once the new one is written, so a crash in between
   * leaves both, with the same ids, which leftOver() counts once.
   */
  private async rotate(): Promise<void> {
    const old = this.fd === undefined ? undefined : { fd: this.fd, path: this.path };
    const path = join(this.dir, `${PREFIX}${this.run}-${++this.generation}.log`);
    const buf = Buffer.from([...this.live].map(([id, e]) => `${JSON.stringify({ b: id, e })}\n`).join(''));
    const fd = await openFd(path);
    try {
      await writeAt(fd, buf, 0);
    } catch (err) {
      await closeFd(fd);
      await unlink(path).catch(() => {});
      throw err;
    }
    this.fd = fd;
    this.path = path;
    this.size = buf.length;
    if (old) {
      await closeFd(old.fd);
      await unlink(old.path).catch(() => {});
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
