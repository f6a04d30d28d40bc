// HTTP link delivery: a small built-in HTTP server that serves published report
// files at unguessable URLs, for clients without SI file transfer. The URL is
// sent in the chat body and in a jabber:x:oob element (XEP-0066 §3); anyone
// holding it may download until it expires or its download limit is reached.
// Links and their files are kept by the LinkStore.
import type { FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { contentDisposition, hashToken, normalizeBaseUrl, parseRange } from './http.js';
import { LinkStore, type LinkStoreStats, type PublishFile, type PublishOptions } from './store.js';

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

export interface PublishedLink {
  url: string;
  token: string;
  expiresAt: Date;
  /** Loggable id of the link: first 8 hex digits of sha256(token). */
  link: string;
}

export interface LinkServerStats extends LinkStoreStats {
  requests: number;
  notFound: number;
  bytesSent: number;
  activeResponses: number;
}

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/; // 32 bytes in base64url, no padding
const NOT_FOUND_BODY = 'Not Found\n';

export class LinkServer {
  private readonly store: LinkStore;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly base: string;
  private readonly basePath: string;
  private readonly log: Logger;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private active = 0;
  private readonly idle = new Set<() => void>(); // woken when `active` drops to 0
  // Responses that have handed their link's last byte to the socket but are not counted yet, by link id:
  // a request for the same link waits for them, so a client that asks again at once sees the count.
  private readonly settling = new Map<string, Set<Promise<void>>>();
  private counters = { requests: 0, notFound: 0, bytesSent: 0 };

  private constructor(opts: LinkServerOptions) {
    const now = opts.now ?? Date.now;
    ({ base: this.base, path: this.basePath } = normalizeBaseUrl(opts.publicBaseUrl));
    this.log = opts.log.child({ component: 'link-server' });
    this.store = new LinkStore({
      stateDir: opts.stateDir,
      defaultTtlMs: opts.defaultTtlMs,
      defaultMaxDownloads: opts.defaultMaxDownloads,
      log: this.log,
      now,
    });
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
    await s.store.load();
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
      { host: opts.bindHost, port: s.port, publicBaseUrl: s.base, links: s.store.size },
      'link server listening',
    );
    return s;
  }

  /** The bound port (useful with bindPort 0). */
  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /**
   * Publishes a file: the store takes its own copy, so the caller may remove
   * its file at once.
   */
  async publish(file: PublishFile, o: PublishOptions = {}): Promise<PublishedLink> {
    if (this.closing) throw new Error('link server is closed');
    const { token, record } = await this.store.publish(file, o);
    // URL = publicBaseUrl + token + '/' + encodeURIComponent(name).
    const url = this.base + token + '/' + encodeURIComponent(record.name);
    return { url, token, expiresAt: new Date(record.expiresAt), link: record.id.slice(0, 8) };
  }

  /** Removes dead links and the files no live link references; returns how many links went. */
  sweep(): Promise<number> {
    return this.store.sweep();
  }

  /**
   * The link id for a request path, when the path has the form of a link.
   * Paths are accepted both as /<token>/<name> and as <path of publicBaseUrl>
   * <token>/<name>, so the reverse proxy may strip the prefix or pass it on.
   * The token alone authorizes: the name segment must be present and non-empty
   * but may be anything (clients and proxies re-encode names differently).
   */
  private idFromPath(rawUrl: string | undefined): string | undefined {
    if (!rawUrl || !rawUrl.startsWith('/')) return undefined;
    const path = rawUrl.split('?', 1)[0];
    const rest =
      this.basePath !== '/' && path.startsWith(this.basePath) ? path.slice(this.basePath.length) : path.slice(1);
    const parts = rest.split('/');
    if (parts.length !== 2 || !TOKEN_RE.test(parts[0]) || parts[1] === '') return undefined;
    return hashToken(parts[0]);
  }

  /** Unknown, expired, exhausted and malformed links all get this same 404 (status, headers, body). */
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
    // The download limit is checked here, when a request starts: requests already
    // running when it is reached may finish.
    const r = id === undefined ? undefined : this.store.live(id);
    if (!r || this.closing) {
      this.notFound(res);
      return;
    }
    const etag = `"${r.sha256}"`;
    const lastModified = new Date(Math.floor(r.createdAt / 1000) * 1000).toUTCString();
    const headers: Record<string, string | number> = {
      'Content-Type': r.mime,
      'Content-Disposition': contentDisposition(r.name), // always the published name, whatever the path says
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
      res.writeHead(status, headers); // HEAD never counts as a download
      res.end();
      return;
    }
    if (length === 0) {
      // An empty file: nothing to read, and the (empty) download is complete.
      this.active++;
      try {
        res.writeHead(status, headers);
        res.end();
        await this.store.countDownload(r.id);
      } finally {
        this.active--;
        if (this.active === 0) for (const wake of this.idle) wake();
      }
      return;
    }
    let fh: FileHandle;
    try {
      fh = await this.store.openFile(r);
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
      // A download counts when a response that carries the file's last byte
      // completes: a full GET (200) or a range reaching the last byte (206). A cut
      // download does not count, and resuming it (Range: bytes=N-) counts once
      // when it reaches the end, so cut + resume is one download. Ranges that stop
      // short of the end never count.
      if (complete && carriesEnd) await this.store.countDownload(r.id);
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
    return { ...this.store.stats(), ...this.counters, activeResponses: this.active };
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
    await this.store.written(); // pending state writes
    this.log.info('link server stopped');
  }
}
