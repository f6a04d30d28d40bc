// HTTP link delivery (issue 4): a small built-in HTTP server that serves
// published report files at unguessable URLs, for clients without SI file
// transfer. The URL is sent in the chat body and in a jabber:x:oob element
// (XEP-0066 §3); anyone holding it may download until it expires or its
// download limit is reached.
//
// Decisions (documented for the operator and the lead):
// - URL = publicBaseUrl + token + '/' + encodeURIComponent(name); the token is
//   32 random bytes in base64url (256 bits). The token alone authorizes: the
//   name segment must be present and non-empty but may be anything (clients and
//   proxies re-encode names differently); Content-Disposition always carries the
//   published name.
// - Paths are accepted both as /<token>/<name> and as <path of publicBaseUrl>
//   <token>/<name>, so the reverse proxy may strip the prefix or pass it on.
//   Anything else is 404; methods other than GET and HEAD are 405.
// - Unknown, expired and exhausted links get the same 404 (status, headers, body).
// - The token is never stored nor logged: links are keyed by sha256(token); logs
//   carry its first 8 hex digits as `link`.
// - Downloads: a download counts when a response that carries the file's last
//   byte completes, i.e. a full GET (200) or a range reaching the last byte (206).
//   A cut download does not count, and resuming it (Range: bytes=N-) counts once
//   when it reaches the end, so cut + resume is one download. Ranges that stop
//   short of the end never count; HEAD never counts. The limit is checked when a
//   request starts: requests already running when it is reached may finish.
//   maxDownloads 0 means no limit.
// - Files live in <stateDir>/files/<sha256>: publishing the same content twice
//   shares one file, removed when the last link to it expires or is exhausted.
//   Publishing hard-links the caller's file (copying when that is impossible,
//   e.g. across file systems); the caller removes its own file afterwards.
// - State is <stateDir>/links.json, written atomically (tmp + fsync + rename) on
//   every change and reloaded on start; at start, dead links are dropped and
//   files under <stateDir>/files that no link references are removed. Nothing
//   else in stateDir is touched.
import { createHash, randomBytes } from 'node:crypto';
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
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';

export interface LinkServerOptions {
  bindHost: string;
  bindPort: number; // 0: any free port (see .port)
  /** Base of the URLs handed out, e.g. https://reports.example.com/files/ (may differ from the bind address). */
  publicBaseUrl: string;
  stateDir: string;
  defaultTtlMs: number;
  /** 0 = no limit. */
  defaultMaxDownloads: number;
  log: Logger;
  /** Clock in ms since the epoch (tests inject one). */
  now?: () => number;
  /** How often expired links are swept (default 60 s). */
  sweepIntervalMs?: number;
  /** A connection without any progress for this long is closed (default 60 s). */
  idleTimeoutMs?: number;
  /** Open connections at most (default 1000). */
  maxConnections?: number;
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

export interface PublishedLink {
  url: string;
  token: string;
  expiresAt: Date;
  /** Loggable id of the link: first 8 hex digits of sha256(token). */
  link: string;
}

export interface LinkServerStats {
  links: number; // live links
  files: number; // files held
  storedBytes: number;
  published: number; // since start
  downloads: number; // completed downloads since start
  requests: number;
  notFound: number;
  bytesSent: number;
  activeResponses: number;
}

/** One link as persisted in links.json. */
interface LinkRecord {
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
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/; // 32 bytes in base64url, no padding
const SHA256_RE = /^[0-9a-f]{64}$/;
const NOT_FOUND_BODY = 'Not Found\n';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The loggable id of a token: never the token itself. */
export function linkId(token: string): string {
  return hashToken(token).slice(0, 8);
}

// ---------------------------------------------------------------- pure helpers

export type RangeResult = { kind: 'none' } | { kind: 'range'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * Reads a Range header (RFC 9110 §14.1.2) against a file of `size` bytes:
 * bytes=a-b, a- and -n. Multiple ranges, other units and invalid specs are
 * ignored (the whole file is sent); ranges starting past the end are
 * unsatisfiable (416).
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const m = /^\s*bytes\s*=\s*(.*?)\s*$/i.exec(header);
  if (!m) return { kind: 'none' };
  const spec = m[1];
  if (spec.includes(',')) return { kind: 'none' };
  let r = /^(\d{1,20})\s*-\s*(\d{0,20})$/.exec(spec);
  if (r) {
    const start = Number(r[1]);
    const last = r[2] === '' ? Infinity : Number(r[2]);
    if (last < start) return { kind: 'none' }; // invalid range-spec: ignored (§14.1.1)
    if (start >= size) return { kind: 'unsatisfiable' };
    return { kind: 'range', start, end: Math.min(last, size - 1) };
  }
  r = /^-\s*(\d{1,20})$/.exec(spec);
  if (r) {
    const n = Number(r[1]);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - n), end: size - 1 };
  }
  return { kind: 'none' };
}

/** Replaces lone surrogates, which encodeURIComponent refuses. */
function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** A file name safe to put in a URL and a header: no controls, no path separators. */
export function safeFileName(name: string): string {
  const clean = wellFormed(name)
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '')
    .replace(/[/\\]/g, '_')
    .trim();
  return clean === '' || clean === '.' || clean === '..' ? 'report' : clean;
}

/** RFC 6266 Content-Disposition with an ASCII fallback and the RFC 8187 UTF-8 form. */
export function contentDisposition(name: string): string {
  const n = wellFormed(name);
  // Fallback: printable ASCII without the characters that need quoting or that some agents decode.
  const ascii = Array.from(n, (ch) =>
    /^[\x20-\x7e]$/.test(ch) && ch !== '"' && ch !== '\\' && ch !== '%' ? ch : '_',
  ).join('');
  const ext = encodeURIComponent(n).replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return `attachment; filename="${ascii}"; filename*=UTF-8''${ext}`;
}

function safeMime(mime: string): string {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[\x20-\x7e]*)?$/.test(mime)
    ? mime
    : 'application/octet-stream';
}

function normalizeBaseUrl(raw: string): { base: string; path: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`publicBaseUrl is not a valid URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error('publicBaseUrl must be an http: or https: URL');
  if (url.username || url.password || url.search || url.hash)
    throw new Error('publicBaseUrl must not carry credentials, a query or a fragment');
  const base = url.href.endsWith('/') ? url.href : url.href + '/';
  return { base, path: new URL(base).pathname };
}

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

// ---------------------------------------------------------------- server

export class LinkServer {
  private readonly links = new Map<string, LinkRecord>(); // by id = sha256(token)
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly now: () => number;
  private readonly base: string;
  private readonly basePath: string;
  private readonly filesDir: string;
  private readonly statePath: string;
  private readonly log: Logger;
  private sweepTimer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private closing = false;
  private active = 0;
  private readonly idle = new Set<() => void>(); // woken when `active` drops to 0
  // Responses that have handed their link's last byte to the socket but are not counted yet, by link id:
  // a request for the same link waits for them, so a client that asks again at once sees the count.
  private readonly settling = new Map<string, Set<Promise<void>>>();
  private counters = { published: 0, downloads: 0, requests: 0, notFound: 0, bytesSent: 0 };

  private constructor(private readonly opts: LinkServerOptions) {
    this.now = opts.now ?? Date.now;
    ({ base: this.base, path: this.basePath } = normalizeBaseUrl(opts.publicBaseUrl));
    this.filesDir = join(opts.stateDir, FILES_DIR);
    this.statePath = join(opts.stateDir, STATE_FILE);
    this.log = opts.log.child({ component: 'link-server' });
    if (!(opts.defaultTtlMs > 0 && Number.isFinite(opts.defaultTtlMs)))
      throw new Error('defaultTtlMs must be a positive number');
    if (!Number.isSafeInteger(opts.defaultMaxDownloads) || opts.defaultMaxDownloads < 0)
      throw new Error('defaultMaxDownloads must be a whole number >= 0');
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, 'request failed');
        if (!res.headersSent) this.notFound(res);
        else res.destroy();
      });
    });
    this.server.setTimeout(opts.idleTimeoutMs ?? 60_000); // no 'timeout' listener: idle sockets are destroyed
    this.server.maxConnections = opts.maxConnections ?? 1000;
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    this.server.on('clientError', (_err, socket: Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Loads the saved links (dropping dead ones and unreferenced files), then listens. */
  static async start(opts: LinkServerOptions): Promise<LinkServer> {
    const s = new LinkServer(opts);
    await s.load();
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new Error(`link server cannot listen on ${opts.bindHost}:${opts.bindPort}: ${err.message}`));
      s.server.once('error', onError);
      s.server.listen(opts.bindPort, opts.bindHost, () => {
        s.server.off('error', onError);
        resolve();
      });
    });
    s.server.on('error', (err) => s.log.error({ err: err.message }, 'link server error'));
    s.sweepTimer = setInterval(() => {
      s.sweep().catch((err: unknown) => s.log.error({ err: (err as Error).message }, 'sweeping expired links failed'));
    }, opts.sweepIntervalMs ?? 60_000);
    s.sweepTimer.unref();
    s.log.info(
      { host: opts.bindHost, port: s.port, publicBaseUrl: s.base, links: s.links.size },
      'link server listening',
    );
    return s;
  }

  /** The bound port (useful with bindPort 0). */
  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Runs fn alone: every change to links, files and the state file goes through here. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private filePath(sha256: string): string {
    return join(this.filesDir, sha256);
  }

  private isDead(r: LinkRecord, now: number): 'expired' | 'exhausted' | undefined {
    if (now >= r.expiresAt) return 'expired';
    if (r.maxDownloads > 0 && r.downloads >= r.maxDownloads) return 'exhausted';
    return undefined;
  }

  private referenced(sha256: string): boolean {
    for (const r of this.links.values()) if (r.sha256 === sha256) return true;
    return false;
  }

  /**
   * Publishes a file: takes its own copy (hard link, or a copy across file
   * systems) into the state dir, so the caller may remove its file at once.
   */
  async publish(file: PublishFile, o: PublishOptions = {}): Promise<PublishedLink> {
    if (this.closing) throw new Error('link server is closed');
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
    const url = this.base + token + '/' + encodeURIComponent(name);
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
    return { url, token, expiresAt: new Date(record.expiresAt), link: id.slice(0, 8) };
  }

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

  /** Writes links.json atomically: a reader sees the old or the new state, never half of one. */
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

  private async load(): Promise<void> {
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

  private async countDownload(id: string): Promise<void> {
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

  // ------------------------------------------------------------ HTTP

  /** The link id for a request path, when the path has the form of a link. */
  private idFromPath(rawUrl: string | undefined): string | undefined {
    if (!rawUrl || !rawUrl.startsWith('/')) return undefined;
    const path = rawUrl.split('?', 1)[0];
    const rest =
      this.basePath !== '/' && path.startsWith(this.basePath) ? path.slice(this.basePath.length) : path.slice(1);
    const parts = rest.split('/');
    if (parts.length !== 2 || !TOKEN_RE.test(parts[0]) || parts[1] === '') return undefined;
    return hashToken(parts[0]);
  }

  private notFound(res: ServerResponse): void {
    this.counters.notFound++;
    res.writeHead(404, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(NOT_FOUND_BODY),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(NOT_FOUND_BODY);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counters.requests++;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const body = 'Method Not Allowed\n';
      res.writeHead(405, {
        Allow: 'GET, HEAD',
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        'Cache-Control': 'no-store',
      });
      res.end(body);
      return;
    }
    const id = this.idFromPath(req.url);
    const pending = id === undefined ? undefined : this.settling.get(id);
    if (pending) await Promise.all(pending);
    const r = id === undefined ? undefined : this.links.get(id);
    if (!r || this.isDead(r, this.now()) || this.closing) {
      this.notFound(res);
      return;
    }
    const etag = `"${r.sha256}"`;
    const lastModified = new Date(Math.floor(r.createdAt / 1000) * 1000).toUTCString();
    const headers: Record<string, string | number> = {
      'Content-Type': r.mime,
      'Content-Disposition': contentDisposition(r.name),
      ETag: etag,
      'Last-Modified': lastModified,
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'private, no-store',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    };
    // If-Range (RFC 9110 §13.1.5): a range applies only to the same content.
    const ifRange = req.headers['if-range'];
    const rangeHeader =
      ifRange === undefined || ifRange === etag || ifRange === lastModified ? req.headers.range : undefined;
    const range = parseRange(rangeHeader, r.size);
    if (range.kind === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${r.size}`, 'Content-Length': 0 });
      res.end();
      return;
    }
    const start = range.kind === 'range' ? range.start : 0;
    const end = range.kind === 'range' ? range.end : r.size - 1; // -1 for an empty file
    const length = end - start + 1;
    const status = range.kind === 'range' ? 206 : 200;
    headers['Content-Length'] = length;
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${r.size}`;
    if (req.method === 'HEAD') {
      res.writeHead(status, headers);
      res.end();
      return;
    }
    if (length === 0) {
      // An empty file: nothing to read, and the (empty) download is complete.
      this.active++;
      try {
        res.writeHead(status, headers);
        res.end();
        await this.countDownload(r.id);
      } finally {
        this.active--;
        if (this.active === 0) for (const wake of this.idle) wake();
      }
      return;
    }
    let fh: FileHandle;
    try {
      fh = await open(this.filePath(r.sha256), 'r');
    } catch {
      this.notFound(res); // removed between the check and here
      return;
    }
    // The read stream owns the descriptor from here on (autoClose, also on errors).
    const body = fh.createReadStream({ start, end, highWaterMark: 1 << 16 });
    const log = this.log.child({ link: r.id.slice(0, 8) });
    let sent = 0;
    const counters = this.counters;
    let counted!: () => void;
    const settled = new Promise<void>((resolve) => (counted = resolve));
    const carriesEnd = end === r.size - 1;
    const settling = this.settling;
    const meter = new Transform({
      transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback) {
        sent += chunk.length;
        counters.bytesSent += chunk.length;
        // the last byte leaves us now: from here until it is counted, requests for this link wait
        if (carriesEnd && sent === length) settling.set(r.id, (settling.get(r.id) ?? new Set()).add(settled));
        cb(null, chunk);
      },
    });
    this.active++; // until the download is counted, so close() waits for the count
    try {
      let complete = false;
      try {
        res.writeHead(status, headers);
        await pipeline(body, meter, res);
        if (sent !== length) throw new Error(`sent ${sent} of ${length} bytes`);
        complete = true;
        log.debug({ status, start, end, bytes: sent }, 'response sent');
      } catch (err) {
        log.debug({ status, start, end, bytes: sent, err: (err as Error).message }, 'download interrupted');
        body.destroy();
        res.destroy();
      }
      // Only a response carrying the last byte counts: see the header comment.
      if (complete && carriesEnd) await this.countDownload(r.id);
    } finally {
      counted();
      const set = this.settling.get(r.id);
      if (set?.delete(settled) && set.size === 0) this.settling.delete(r.id);
      this.active--;
      if (this.active === 0) for (const wake of this.idle) wake();
    }
  }

  /** Resolves when no response is running, or after ms. */
  private untilIdle(ms: number): Promise<void> {
    if (this.active === 0 || ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.idle.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.idle.add(done);
    });
  }

  stats(): LinkServerStats {
    const files = new Map<string, number>();
    for (const r of this.links.values()) files.set(r.sha256, r.size);
    let storedBytes = 0;
    for (const size of files.values()) storedBytes += size;
    return { links: this.links.size, files: files.size, storedBytes, ...this.counters, activeResponses: this.active };
  }

  /**
   * Stops listening and the sweep timer. Downloads in progress get graceMs to
   * finish, then their connections are closed. Links and files stay for the
   * next start.
   */
  async close(graceMs = 0): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.sweepTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await this.untilIdle(graceMs);
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
    // Cut responses fail at once; completed ones may still be counting.
    await this.untilIdle(2000);
    await this.chain; // pending state writes
    this.log.info('link server stopped');
  }
}
