// The requests being offered or sent right now, one small file each in the
// spool folder: written before the offer, removed when the request ends. A
// component killed mid-transfer (kill -9, a crash, power) finds them at its
// next start and tells each user what happened instead of leaving them with
// "please accept the file" forever.
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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

export class RequestJournal {
  private seq = 0;
  // Names this process's entries apart from those an earlier run left.
  private readonly run = newSid('', 6);

  constructor(private readonly dir: string) {}

  /** Notes a request about to be offered; the returned function forgets it. */
  async begin(entry: InFlight): Promise<() => Promise<void>> {
    const path = join(this.dir, `${PREFIX}${this.run}-${++this.seq}.json`);
    await writeFile(path, JSON.stringify(entry));
    return () => rm(path, { force: true });
  }

  /** What an earlier run left behind (it did not end its requests), removed as it is read. Unreadable entries are dropped. */
  async leftOver(): Promise<{ entries: InFlight[]; unreadable: number }> {
    const entries: InFlight[] = [];
    let unreadable = 0;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
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
