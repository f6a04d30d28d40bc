// HTTP/1.1 GETs to a plain-http intranet (RFC 9112) on kept-alive sockets of
// our own, for the one request a report needs. Node's http client costs a small
// report 0.4–0.55 ms of JavaScript between the chat message and the GET on the
// wire (ClientRequest, agent, outgoing-message machinery: bench item 7 profile,
// where a slixmpp bot wrote its GET 0.6 ms sooner), and its parser copies every
// body chunk (0.80 s of CPU per GiB against 0.48 for a bare socket,
// bench/http-path.ts). Here the request is one write, and the body chunks are
// views of the buffers the socket read into: each read lands in the unused
// tail of a 1 MiB slab that is not written again until every chunk cut from
// it has been given back (slabs.ts), so nothing is copied and the chunks may be
// held downstream (the spool keeps them, see viewMemory).
//
// ResponseParser is pure (bytes in, events out); Http1Pool does the I/O.
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { SlabPool } from './slabs.js';

/** A response's status line and header fields (names lower-cased, repeated fields joined by ", "). */
export interface ResponseHead {
  status: number;
  /** HTTP/1.1, or 1.0 (never kept alive) */
  minor: 0 | 1;
  headers: Map<string, string>;
}

export class HttpProtocolError extends Error {
  readonly code = 'HPE_INVALID';
}

/** Limits of what a response's head may take (Node's own: 16 KiB of head; ours is looser, for long cookies). */
const MAX_HEAD_BYTES = 64 << 10;
const MAX_HEADERS = 200;
const MAX_CHUNK_LINE = 4096;

type Framing = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

interface ParserEvents {
  head(head: ResponseHead): void;
  /** a view of the input, valid for as long as the input buffer is (the parser keeps no copy) */
  body(chunk: Buffer): void;
  /** the response is complete; `reusable` when the connection may carry the next request */
  end(reusable: boolean): void;
}

const CRLF = Buffer.from('\r\n');
const EMPTY = Buffer.alloc(0);

/**
 * An incremental parser for one response at a time (RFC 9112 §4–§7): interim 1xx responses are
 * skipped, the body is framed by Transfer-Encoding chunked, Content-Length or the connection's
 * close (§6.3), and 204/304 have none. Malformed input throws HttpProtocolError; after end() the
 * parser takes the next response.
 */
export class ResponseParser {
  private state: 'head' | 'body' | 'size' | 'data' | 'data-crlf' | 'trailers' | 'done' = 'head';
  /** head or chunk-size bytes that a read split (the only bytes ever copied), and their last few */
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private tail: Buffer = EMPTY;
  /** the line takeLine() found last, without its separator */
  private line: Buffer = EMPTY;
  private framing: Framing = { kind: 'none' };
  private chunkLeft = 0;
  private head: ResponseHead | undefined;

  constructor(private readonly on: ParserEvents) {}

  /** True when the bytes so far end exactly at a response's end (or none has begun). */
  get idle(): boolean {
    return (this.state === 'head' || this.state === 'done') && this.pendingLen === 0;
  }

  /** Readies the parser for the next response on the same connection. */
  reset(): void {
    this.state = 'head';
    this.pending = [];
    this.pendingLen = 0;
    this.tail = EMPTY;
    this.head = undefined;
  }

  feed(input: Buffer): void {
    let at = 0;
    while (at < input.length) {
      switch (this.state) {
        case 'done':
          throw new HttpProtocolError('the server sent bytes after the response');
        case 'head': {
          const used = this.takeLine(input, at, MAX_HEAD_BYTES, '\r\n\r\n');
          if (used < 0) return;
          at = used;
          this.headDone();
          break;
        }
        case 'body': {
          const f = this.framing;
          if (f.kind === 'length') {
            const n = Math.min(f.left, input.length - at);
            f.left -= n;
            this.on.body(input.subarray(at, at + n));
            at += n;
            if (f.left === 0) this.finish(true);
          } else {
            this.on.body(at === 0 ? input : input.subarray(at));
            at = input.length;
          }
          break;
        }
        case 'size': {
          const used = this.takeLine(input, at, MAX_CHUNK_LINE, '\r\n');
          if (used < 0) return;
          at = used;
          const line = this.line.toString('latin1');
          // chunk-size [ chunk-ext ] (§7.1.1): extensions are ignored
          const m = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
          if (!m) throw new HttpProtocolError(`invalid chunk size line ${JSON.stringify(line.slice(0, 40))}`);
          this.chunkLeft = parseInt(m[1], 16);
          this.state = this.chunkLeft === 0 ? 'trailers' : 'data';
          break;
        }
        case 'data': {
          const n = Math.min(this.chunkLeft, input.length - at);
          this.chunkLeft -= n;
          this.on.body(input.subarray(at, at + n));
          at += n;
          if (this.chunkLeft === 0) this.state = 'data-crlf';
          break;
        }
        case 'data-crlf': {
          const used = this.takeLine(input, at, 2, '\r\n');
          if (used < 0) return;
          at = used;
          if (this.line.length !== 0) throw new HttpProtocolError('chunk data not followed by CRLF');
          this.state = 'size';
          break;
        }
        case 'trailers': {
          // trailer fields are read and dropped, up to the empty line (§7.1.2)
          const used = this.takeLine(input, at, MAX_HEAD_BYTES, '\r\n');
          if (used < 0) return;
          at = used;
          if (this.line.length === 0) this.finish(true);
          break;
        }
      }
    }
  }

  /** The connection closed: ends a close-delimited body; anything else unfinished is an error. */
  eof(): void {
    if (this.state === 'body' && this.framing.kind === 'close') return this.finish(false);
    if (this.idle) return;
    throw new HttpProtocolError(
      this.state === 'head' ? 'the connection closed before the response head' : 'the connection closed mid-body',
    );
  }

  /**
   * Reads up to `sep` from input at `at` (joined with bytes earlier reads left), into this.line
   * without the separator; returns where the input goes on, or -1 when the separator has not come
   * yet. Each byte is copied at most once however finely the line is split (a server that trickles
   * its head must not make us copy it again at every read).
   */
  private takeLine(input: Buffer, at: number, max: number, sep: '\r\n' | '\r\n\r\n'): number {
    const s = sep === '\r\n' ? CRLF : HEAD_END;
    // a separator that straddles the join: the last bytes kept and the first of this read
    const probe = this.pendingLen > 0 ? Buffer.concat([this.tail, input.subarray(at, at + s.length - 1)]) : undefined;
    const j = probe ? probe.indexOf(s) : -1;
    let lineLen: number;
    let next: number;
    if (j >= 0) {
      lineLen = this.pendingLen - this.tail.length + j;
      next = at + j + s.length - this.tail.length;
    } else {
      const i = input.indexOf(s, at);
      if (i < 0) {
        if (this.pendingLen + input.length - at > max) throw this.tooLong(max);
        const rest = Buffer.from(input.subarray(at)); // a copy: the input's buffer may be reused
        this.pending.push(rest);
        this.pendingLen += rest.length;
        this.tail = Buffer.concat([this.tail, rest]).subarray(-(s.length - 1));
        return -1;
      }
      lineLen = this.pendingLen + i - at;
      next = i + s.length;
    }
    if (lineLen > max) throw this.tooLong(max);
    this.line =
      this.pendingLen === 0
        ? input.subarray(at, at + lineLen)
        : Buffer.concat([...this.pending, input.subarray(at, Math.max(at, next - s.length))]).subarray(0, lineLen);
    this.pending = [];
    this.pendingLen = 0;
    this.tail = EMPTY;
    return next;
  }

  private tooLong(max: number): HttpProtocolError {
    return new HttpProtocolError(
      this.state === 'head' ? `response head larger than ${max} bytes` : 'chunk framing line too long',
    );
  }

  private headDone(): void {
    const lines = this.line.toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]);
    if (!m) throw new HttpProtocolError(`not an HTTP/1.x status line: ${JSON.stringify(lines[0].slice(0, 60))}`);
    const status = Number(m[2]);
    if (lines.length - 1 > MAX_HEADERS) throw new HttpProtocolError(`more than ${MAX_HEADERS} header fields`);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const colon = l.indexOf(':');
      // obs-fold (a line starting with whitespace) and fields without a name are refused (§5.2)
      if (colon <= 0 || /^[ \t]/.test(l))
        throw new HttpProtocolError(`invalid header line ${JSON.stringify(l.slice(0, 60))}`);
      const name = l.slice(0, colon).toLowerCase();
      if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name))
        throw new HttpProtocolError(`invalid header name ${JSON.stringify(name)}`);
      const value = l.slice(colon + 1).trim();
      const was = headers.get(name);
      headers.set(name, was === undefined ? value : `${was}, ${value}`);
    }
    if (status >= 100 && status < 200) {
      // 101 would switch protocols, which a GET of ours never asks for
      if (status === 101) throw new HttpProtocolError('the server switched protocols');
      return; // interim (100, 103): the final response follows
    }
    const minor = m[1] === '1' ? 1 : 0;
    this.head = { status, minor, headers };
    this.framing = this.framingOf(status, headers);
    this.on.head(this.head);
    if (this.framing.kind === 'none' || (this.framing.kind === 'length' && this.framing.left === 0)) this.finish(true);
    else this.state = this.framing.kind === 'chunked' ? 'size' : 'body';
  }

  /** §6.3: how the body's end is known. */
  private framingOf(status: number, headers: Map<string, string>): Framing {
    if (status === 204 || status === 304) return { kind: 'none' };
    const te = headers.get('transfer-encoding');
    if (te !== undefined) {
      // chunked last means chunked framing; any other coding last is read until the close (§6.3 item 4)
      const codings = te
        .toLowerCase()
        .split(',')
        .map((c) => c.trim());
      if (codings[codings.length - 1] !== 'chunked') return { kind: 'close' };
      if (codings.length > 1) throw new HttpProtocolError(`unsupported transfer coding ${JSON.stringify(te)}`);
      return { kind: 'chunked' };
    }
    const cl = headers.get('content-length');
    if (cl !== undefined) {
      // "42, 42" (a repeated field) is one length; two different ones are an error (§6.3 item 5)
      const values = new Set(cl.split(',').map((v) => v.trim()));
      const [v] = values;
      if (values.size !== 1 || !/^\d{1,15}$/.test(v))
        throw new HttpProtocolError(`invalid Content-Length ${JSON.stringify(cl)}`);
      return { kind: 'length', left: Number(v) };
    }
    return { kind: 'close' };
  }

  private finish(framed: boolean): void {
    this.state = 'done';
    const h = this.head!;
    const connection = (h.headers.get('connection') ?? '').toLowerCase();
    const reusable = framed && h.minor === 1 && !/(^|,)\s*close\s*(,|$)/.test(connection);
    this.on.end(reusable);
  }
}

const HEAD_END = Buffer.from('\r\n\r\n');

/** One GET's request bytes (§3): the path as the URL encodes it; values with CR, LF or NUL are refused. */
export function requestBytes(at: URL, headers: Record<string, string>): string {
  let out = `GET ${at.pathname}${at.search} HTTP/1.1\r\nhost: ${at.host}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (/[\r\n\0]/.test(k) || /[\r\n\0]/.test(v))
      throw new HttpProtocolError(`header ${JSON.stringify(k)} has a line break in it`);
    out += `${k}: ${v}\r\n`;
  }
  return out + '\r\n';
}

export interface Http1Response {
  head: ResponseHead;
  body: Readable;
}

export interface Http1PoolOptions {
  /** an idle connection is closed after this long (Apache's KeepAliveTimeout is 5 s) */
  idleMs: number;
  /** idle connections kept per origin */
  maxIdle: number;
  /** where the connections take their read slabs (default: one pool for the process) */
  slabs?: SlabPool;
}

/** Bytes of one slab; a read takes its unused tail while at least MIN_READ is left. */
const SLAB = 1 << 20;
const MIN_READ = 64 << 10;
/**
 * Every connection's slabs: one large transfer cycles through about ten (the spool holds up to
 * 8 MiB ahead of a slow reader); more than 16 unused are left to the collector.
 */
const sharedSlabs = new SlabPool(SLAB, 16);

/** A connection: a socket, its parser, and the response it is reading (if any). */
class Conn {
  readonly parser: ResponseParser;
  private slab: Buffer;
  private used = 0;
  /** set while a response is read */
  current: Exchange | undefined;
  /** the response bytes so far (a reused connection the server had closed is retried only when 0) */
  got = 0;
  idleTimer: NodeJS.Timeout | undefined;
  /** taken from the idle list (a failure before any response byte may then be the server's idle close) */
  reused = false;
  readonly socket: Socket;

  constructor(
    host: string,
    port: number,
    readonly key: string,
    private readonly onFree: (c: Conn, reusable: boolean) => void,
    private readonly slabs: SlabPool,
  ) {
    this.slab = slabs.take();
    this.parser = new ResponseParser({
      head: (h) => this.current?.onHead(h),
      body: (chunk) => this.current?.onBody(chunk),
      end: (reusable) => {
        const ex = this.current;
        this.current = undefined;
        ex?.onEnd();
        this.onFree(this, reusable);
      },
    });
    this.socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        // each read goes into bytes nobody has seen yet, so earlier chunks stay as they were
        buffer: () => this.next(),
        callback: (n, buf) => {
          this.used += n;
          this.got += n;
          try {
            this.parser.feed((buf as Buffer).subarray(0, n));
          } catch (err) {
            this.fail(err as Error);
            return false;
          }
          // back-pressure: the body's reader paused us (see Exchange), which stops the reads
          return !(this.current?.paused ?? false);
        },
      },
    });
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => {
      try {
        this.parser.eof();
      } catch (err) {
        this.fail(err as Error);
      }
      this.socket.destroy();
    });
    this.socket.on('close', () => {
      this.fail(new Error('socket hang up'));
      // no read comes after the close: the slab goes back once its chunks do
      this.slabs.retire(this.slab);
    });
  }

  /** A body chunk (a view of this connection's slabs) goes to a holder that gives it back. */
  lend(chunk: Buffer): Buffer {
    return this.slabs.lend(chunk);
  }

  private next(): Buffer {
    if (SLAB - this.used < MIN_READ) {
      this.slabs.retire(this.slab);
      this.slab = this.slabs.take();
      this.used = 0;
    }
    return this.slab.subarray(this.used);
  }

  private fail(err: Error): void {
    const ex = this.current;
    this.current = undefined;
    this.socket.destroy();
    this.onFree(this, false);
    ex?.onError(err);
  }
}

/** One request and its response, from the write to the body's last byte. */
class Exchange {
  paused = false;
  private body: BodyStream | undefined;

  constructor(
    readonly conn: Conn,
    private readonly resolve: (r: Http1Response) => void,
    private readonly reject: (err: Error, retryable: boolean) => void,
  ) {}

  onHead(head: ResponseHead): void {
    this.body = new BodyStream(this);
    this.resolve({ head, body: this.body });
  }

  onBody(chunk: Buffer): void {
    if (chunk.length === 0 || !this.body) return;
    // the holder gives the chunk back (giveBack) when it is done with it
    if (!this.body.push(this.conn.lend(chunk))) this.paused = true;
  }

  onEnd(): void {
    this.body?.push(null);
  }

  onError(err: Error): void {
    if (this.body) return void this.body.destroy(err);
    // nothing of a response came: a kept-alive connection the server closed meanwhile
    this.reject(err, this.conn.got === 0);
  }

  /** The reader wants more. */
  more(): void {
    if (!this.paused) return;
    this.paused = false;
    this.conn.socket.resume();
  }

  /** The reader gave up before the end: the connection cannot carry another request. */
  abandon(): void {
    if (this.conn.current === this) this.conn.socket.destroy();
  }
}

class BodyStream extends Readable {
  constructor(private readonly ex: Exchange) {
    // chunks are passed on as they came; the socket pauses while 1 MiB waits unread
    super({ highWaterMark: SLAB });
    // A body nobody reads (a 404's) or whose reader has let go may still fail (an abort, a reset):
    // that must not become an uncaught error. Readers that listen get the error as usual.
    this.on('error', () => {});
  }
  override _read(): void {
    this.ex.more();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.ex.abandon();
    cb(err);
  }
}

/** Failures before any byte of the response came: on a reused connection, the server's idle close. */
const RETRYABLE = new WeakSet<Error>();

/** Kept-alive connections per origin, most recently used first. */
export class Http1Pool {
  private readonly idle = new Map<string, Conn[]>();

  constructor(private readonly o: Http1PoolOptions) {}

  /** GETs `at` (http: only). Rejects on connection and protocol errors; the body fails as a stream. */
  async get(at: URL, headers: Record<string, string>, signal: AbortSignal): Promise<Http1Response> {
    const bytes = requestBytes(at, headers);
    for (let attempt = 0; ; attempt++) {
      const conn = this.take(at);
      try {
        return await this.exchange(conn, bytes, signal);
      } catch (err) {
        // a reused connection the server had closed: once more on a new one (GET is idempotent, §9.2.2)
        if (RETRYABLE.has(err as Error) && attempt === 0 && conn.reused) continue;
        throw err;
      }
    }
  }

  private exchange(conn: Conn, bytes: string, signal: AbortSignal): Promise<Http1Response> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        done();
        if (conn.current === ex) conn.current = undefined;
        conn.socket.destroy();
        reject(abortError());
      };
      const done = () => signal.removeEventListener('abort', onAbort);
      const ex = new Exchange(
        conn,
        (r) => {
          done();
          // an abort while the body is read ends the body with the abort error
          const stop = () => r.body.destroy(abortError());
          signal.addEventListener('abort', stop, { once: true });
          r.body.once('close', () => signal.removeEventListener('abort', stop));
          resolve(r);
        },
        (err, retryable) => {
          done();
          if (retryable) RETRYABLE.add(err);
          reject(err);
        },
      );
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      conn.current = ex;
      conn.got = 0;
      conn.parser.reset();
      conn.socket.write(bytes, 'latin1');
    });
  }

  private take(at: URL): Conn {
    const key = at.host;
    const list = this.idle.get(key);
    const c = list?.pop();
    if (c) {
      clearTimeout(c.idleTimer);
      if (list!.length === 0) this.idle.delete(key);
      c.reused = true;
      return c;
    }
    const port = at.port === '' ? 80 : Number(at.port);
    // the URL keeps IPv6 literals in brackets; connect() wants them bare
    const host = at.hostname.startsWith('[') ? at.hostname.slice(1, -1) : at.hostname;
    return new Conn(host, port, key, (conn, reusable) => this.free(conn, reusable), this.o.slabs ?? sharedSlabs);
  }

  private free(conn: Conn, reusable: boolean): void {
    const list = this.idle.get(conn.key) ?? [];
    const i = list.indexOf(conn);
    if (i >= 0) list.splice(i, 1);
    if (!reusable || conn.socket.destroyed || list.length >= this.o.maxIdle) {
      clearTimeout(conn.idleTimer);
      conn.socket.destroy();
      if (list.length === 0) this.idle.delete(conn.key);
      return;
    }
    list.push(conn);
    this.idle.set(conn.key, list);
    // an idle connection reads nothing of ours: a close or stray bytes from the server end it (see Conn)
    conn.idleTimer = setTimeout(() => this.free(conn, false), this.o.idleMs);
    conn.idleTimer.unref();
  }

  /** Closes every idle connection. */
  close(): void {
    for (const list of [...this.idle.values()]) for (const c of [...list]) this.free(c, false);
  }
}

export function abortError(): Error {
  const err = new Error('The operation was aborted');
  err.name = 'AbortError';
  return err;
}
