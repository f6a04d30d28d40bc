// The persistent store behind the link server: the links, kept in
// <stateDir>/links.json, and the files they serve, under <stateDir>/files.
// Nothing else in stateDir is touched.
import { randomBytes } from 'node:crypto';
import {
  chmod,
  copyFile,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  type FileHandle,
} from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { hashToken, safeFileName, safeMime } from './http.js';

export interface LinkStoreOptions {
  stateDir: string;
  defaultTtlMs: number;
  /** 0 = no limit. */
  defaultMaxDownloads: number;
  log: Logger;
  /** Clock in ms since the epoch. */
  now: () => number;
}

export interface PublishFile {
  path: string;
  name: string;
  mime: string;
  size: number;
  sha256: string; // hex
}

export interface PublishOptions {
  ttlMs?: number;
  maxDownloads?: number; // 0 = no limit
}

export interface LinkStoreStats {
  links: number; // live links
  files: number; // files held
  storedBytes: number;
  published: number; // since start
  downloads: number; // completed downloads since start
}

/** One link as persisted in links.json. */
export interface LinkRecord {
  id: string; // sha256(token), hex
  sha256: string; // content hash = file name under files/
  name: string;
  mime: string;
  size: number;
  createdAt: number;
  expiresAt: number;
  downloads: number;
  maxDownloads: number;
}

interface StateFile {
  version: 1;
  links: LinkRecord[];
}

const STATE_FILE = 'links.json';
const FILES_DIR = 'files';
const SHA256_RE = /^[0-9a-f]{64}$/;

function isRecord(v: unknown): v is LinkRecord {
  if (v === null || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  const int = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  return (
    typeof r.id === 'string' &&
    SHA256_RE.test(r.id) &&
    typeof r.sha256 === 'string' &&
    SHA256_RE.test(r.sha256) &&
    typeof r.name === 'string' &&
    r.name !== '' &&
    typeof r.mime === 'string' &&
    int(r.size) &&
    int(r.createdAt) &&
    int(r.expiresAt) &&
    int(r.downloads) &&
    int(r.maxDownloads)
  );
}

export class LinkStore {
  // The token is never stored nor logged: links are keyed by sha256(token), and
  // logs carry its first 8 hex digits as `link`.
  private readonly links = new Map<string, LinkRecord>(); // by id = sha256(token)
  private readonly now: () => number;
  private readonly filesDir: string;
  private readonly statePath: string;
  private readonly log: Logger;
  private chain: Promise<unknown> = Promise.resolve();
  private counters = { published: 0, downloads: 0 };

  constructor(private readonly opts: LinkStoreOptions) {
    this.now = opts.now;
    this.filesDir = join(opts.stateDir, FILES_DIR);
    this.statePath = join(opts.stateDir, STATE_FILE);
    this.log = opts.log;
    if (!(opts.defaultTtlMs > 0 && Number.isFinite(opts.defaultTtlMs)))
      throw new Error('defaultTtlMs must be a positive number');
    if (!Number.isSafeInteger(opts.defaultMaxDownloads) || opts.defaultMaxDownloads < 0)
      throw new Error('defaultMaxDownloads must be a whole number >= 0');
  }

  /** Live links. */
  get size(): number {
    return this.links.size;
  }

  /** Runs fn alone: every change to links, files and the state file goes through here. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves when the changes queued so far are written. */
  written(): Promise<unknown> {
    return this.chain;
  }

  private filePath(sha256: string): string {
    return join(this.filesDir, sha256);
  }

  /** maxDownloads 0 means no limit. */
  private isDead(r: LinkRecord, now: number): 'expired' | 'exhausted' | undefined {
    if (now >= r.expiresAt) return 'expired';
    if (r.maxDownloads > 0 && r.downloads >= r.maxDownloads) return 'exhausted';
    return undefined;
  }

  private referenced(sha256: string): boolean {
    for (const r of this.links.values()) if (r.sha256 === sha256) return true;
    return false;
  }

  /** The link with this id, unless it is unknown, expired or exhausted. */
  live(id: string): LinkRecord | undefined {
    const r = this.links.get(id);
    return r && !this.isDead(r, this.now()) ? r : undefined;
  }

  /** Opens the file a link serves, for reading. */
  openFile(r: LinkRecord): Promise<FileHandle> {
    return open(this.filePath(r.sha256), 'r');
  }

  /**
   * Adds a link to a file: takes its own copy (hard link, or a copy across file
   * systems) into the state dir, so the caller may remove its file at once.
   * Returns the link's token, 32 random bytes in base64url (256 bits), which
   * only the caller gets.
   */
  async publish(file: PublishFile, o: PublishOptions = {}): Promise<{ token: string; record: LinkRecord }> {
    const ttlMs = o.ttlMs ?? this.opts.defaultTtlMs;
    const maxDownloads = o.maxDownloads ?? this.opts.defaultMaxDownloads;
    if (!(ttlMs > 0 && Number.isFinite(ttlMs))) throw new Error('ttlMs must be a positive number');
    if (!Number.isSafeInteger(maxDownloads) || maxDownloads < 0)
      throw new Error('maxDownloads must be a whole number >= 0');
    const sha256 = file.sha256.toLowerCase();
    if (!SHA256_RE.test(sha256)) throw new Error('sha256 must be 64 hex digits');
    const st = await stat(file.path);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size !== file.size) throw new Error(`file has ${st.size} bytes, expected ${file.size}`);

    const token = randomBytes(32).toString('base64url');
    const id = hashToken(token);
    const name = safeFileName(file.name);
    const createdAt = Math.floor(this.now());
    const record: LinkRecord = {
      id,
      sha256,
      name,
      mime: safeMime(file.mime),
      size: file.size,
      createdAt,
      expiresAt: createdAt + Math.ceil(ttlMs),
      downloads: 0,
      maxDownloads,
    };
    await this.exclusive(async () => {
      // Files are named by content: publishing the same content twice shares one
      // file, removed when the last link to it expires or is exhausted.
      const held = [...this.links.values()].find((r) => r.sha256 === sha256);
      if (held && held.size !== file.size)
        throw new Error(`sha256 ${sha256} is held with ${held.size} bytes, not ${file.size}`);
      if (!held) await this.storeFile(file.path, sha256, file.size);
      this.links.set(id, record);
      try {
        await this.save();
      } catch (err) {
        this.links.delete(id);
        if (!this.referenced(sha256)) await rm(this.filePath(sha256), { force: true });
        throw err;
      }
    });
    this.counters.published++;
    this.log.info(
      {
        link: id.slice(0, 8),
        name,
        bytes: file.size,
        expiresAt: new Date(record.expiresAt).toISOString(),
        maxDownloads,
      },
      'link published',
    );
    return { token, record };
  }

  /** Hard-links the caller's file into files/, copying when that is impossible (e.g. across file systems). */
  private async storeFile(src: string, sha256: string, size: number): Promise<void> {
    const tmp = join(this.filesDir, `.tmp-${randomBytes(8).toString('hex')}`);
    try {
      try {
        await link(src, tmp);
      } catch {
        // EXDEV (another file system), EPERM (no hard links there): copy instead.
        await copyFile(src, tmp);
        await chmod(tmp, 0o600);
        const st = await stat(tmp);
        if (st.size !== size) throw new Error(`copy has ${st.size} bytes, expected ${size}`);
      }
      await rename(tmp, this.filePath(sha256));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Writes links.json atomically (tmp + fsync + rename), on every change: a
   * reader sees the old or the new state, never half of one.
   */
  private async save(): Promise<void> {
    const state: StateFile = { version: 1, links: [...this.links.values()] };
    const tmp = `${this.statePath}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(JSON.stringify(state, null, 1) + '\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.statePath);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Reloads the saved links: dead links are dropped, and so are files under
   * files/ that no link references and leftover temporary state files.
   */
  async load(): Promise<void> {
    await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    await mkdir(this.filesDir, { recursive: true, mode: 0o700 });
    let changed = false;
    let raw: string | undefined;
    try {
      raw = await readFile(this.statePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (raw !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = undefined;
      }
      const list = (parsed as Partial<StateFile> | undefined)?.links;
      if (!Array.isArray(list)) {
        const aside = `${this.statePath}.corrupt-${this.now()}`;
        await rename(this.statePath, aside);
        this.log.error({ file: aside }, 'link state unreadable; set aside, starting without links');
      } else {
        const now = this.now();
        for (const r of list) {
          if (!isRecord(r)) {
            changed = true;
            this.log.warn('dropped an invalid link record');
            continue;
          }
          const dead = this.isDead(r, now);
          if (dead) {
            changed = true;
            this.log.info({ link: r.id.slice(0, 8), reason: dead }, 'link removed');
            continue;
          }
          try {
            const st = await stat(this.filePath(r.sha256));
            if (st.size !== r.size) throw new Error('size differs');
          } catch {
            changed = true;
            this.log.warn({ link: r.id.slice(0, 8) }, 'link dropped: its file is missing');
            continue;
          }
          this.links.set(r.id, r);
        }
      }
    }
    // Files no live link references (expired while we were down, or left by a crash).
    for (const entry of await readdir(this.filesDir)) {
      if (SHA256_RE.test(entry) && this.referenced(entry)) continue;
      await rm(join(this.filesDir, entry), { force: true, recursive: true });
      this.log.info({ file: entry.startsWith('.tmp-') ? 'temporary' : entry }, 'unreferenced file removed');
    }
    for (const entry of await readdir(this.opts.stateDir)) {
      if (entry.startsWith(`${STATE_FILE}.tmp-`)) await rm(join(this.opts.stateDir, entry), { force: true });
    }
    if (changed) await this.save();
  }

  /** Removes dead links and the files no live link references; returns how many links went. */
  sweep(): Promise<number> {
    return this.exclusive(async () => {
      const now = this.now();
      const gone: LinkRecord[] = [];
      for (const r of this.links.values()) {
        const dead = this.isDead(r, now);
        if (dead) {
          gone.push(r);
          this.log.info({ link: r.id.slice(0, 8), reason: dead, downloads: r.downloads }, 'link removed');
        }
      }
      if (gone.length === 0) return 0;
      for (const r of gone) this.links.delete(r.id);
      await this.save();
      await this.removeUnreferenced(gone);
      return gone.length;
    });
  }

  private async removeUnreferenced(gone: LinkRecord[]): Promise<void> {
    for (const sha of new Set(gone.map((r) => r.sha256))) {
      if (this.referenced(sha)) continue;
      // Open downloads keep reading: an unlinked file lives until its last descriptor closes.
      await rm(this.filePath(sha), { force: true });
      this.log.debug({ sha256: sha }, 'file removed');
    }
  }

  /** Counts a completed download; the link goes, with its file if no other link needs it, once exhausted. */
  async countDownload(id: string): Promise<void> {
    // Counted at once, before any await: the very next request must already
    // see it (a client that just got its last byte may ask again right away).
    const r = this.links.get(id);
    if (!r) return;
    r.downloads++;
    this.counters.downloads++;
    this.log.info({ link: id.slice(0, 8), downloads: r.downloads, maxDownloads: r.maxDownloads }, 'link downloaded');
    await this.exclusive(async () => {
      if (this.links.get(id) !== r) return; // swept meanwhile
      if (this.isDead(r, this.now()) === 'exhausted') {
        this.links.delete(id);
        this.log.info({ link: id.slice(0, 8), reason: 'exhausted', downloads: r.downloads }, 'link removed');
        await this.save();
        await this.removeUnreferenced([r]);
      } else {
        await this.save();
      }
    });
  }

  stats(): LinkStoreStats {
    const files = new Map<string, number>();
    for (const r of this.links.values()) files.set(r.sha256, r.size);
    let storedBytes = 0;
    for (const size of files.values()) storedBytes += size;
    return { links: this.links.size, files: files.size, storedBytes, ...this.counters };
  }
}
