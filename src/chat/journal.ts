// The requests being fetched, offered or sent right now, one small file each in
// the spool folder: written before the offer, removed when the request ends. A
// component killed mid-transfer (kill -9, a crash, power) finds them at its
// next start and tells each user what happened instead of leaving them with
// "please accept the file" forever.
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { newSid } from '../xmpp/ids.js';

const PREFIX = 'inflight-';

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
  /** Resolves when the rewrite is done or given up (the first entry then stands); never rejects. */
  name(file: string): Promise<void>;
  forget(): Promise<void>;
}

export class RequestJournal {
  private seq = 0;
  // Names this process's entries apart from those an earlier run left.
  private readonly run = newSid('', 6);

  constructor(private readonly dir: string) {}

  /**
   * Notes a request about to be offered, without waiting: `written` settles (true, or false when the
   * write failed) once the entry is on disk. name() puts the file's name in once it is known, by
   * an atomic rewrite in the background; forget() waits for the writes, then removes the entry.
   */
  note(entry: InFlight): JournalNote {
    const path = join(this.dir, `${PREFIX}${this.run}-${++this.seq}.json`);
    const first = writeFile(path, JSON.stringify(entry));
    const written = first.then(
      () => true,
      () => false,
    );
    let chain: Promise<void> = written.then(() => {});
    return {
      written,
      name: (file) => {
        const tmp = join(this.dir, `.${basename(path)}`);
        chain = chain.then(async () => {
          if (!(await written)) return; // no entry to correct
          try {
            await writeFile(tmp, JSON.stringify({ ...entry, file }));
            await rename(tmp, path);
          } catch {
            await rm(tmp, { force: true }).catch(() => {}); // the first entry stands
          }
        });
        return chain;
      },
      forget: async () => {
        await chain.catch(() => {});
        await rm(path, { force: true });
      },
    };
  }

  /** What an earlier run left behind (it did not end its requests), removed as it is read. Unreadable entries are dropped. */
  async leftOver(): Promise<{ entries: InFlight[]; unreadable: number }> {
    const entries: InFlight[] = [];
    let unreadable = 0;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      // a rewrite (note().name) that a crash cut short; the entry it was to replace is still there
      if (name.startsWith(`.${PREFIX}`) && !name.startsWith(`.${PREFIX}${this.run}-`)) {
        await rm(join(this.dir, name), { force: true });
        continue;
      }
      if (!name.startsWith(PREFIX) || name.startsWith(`${PREFIX}${this.run}-`)) continue;
      const path = join(this.dir, name);
      try {
        const v: unknown = JSON.parse(await readFile(path, 'utf8'));
        if (isInFlight(v)) entries.push(v);
        else unreadable++;
      } catch {
        unreadable++;
      }
      await rm(path, { force: true });
    }
    return { entries, unreadable };
  }
}
