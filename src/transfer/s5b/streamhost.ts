// The component's own XEP-0065 streamhost: a TCP server speaking the SOCKS5
// subset of socks5.ts. It hands a connection over only for a DST.ADDR hash
// the component negotiated (expect()), each hash once; everything else, and
// every handshake slower than the deadline, is closed. At a connection cap
// the oldest connection still in its handshake makes room, so idle or slow
// connections from one address (an office NAT) cannot lock a receiver out.
import { createServer, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import {
  MAX_HANDSHAKE_BYTES,
  METHOD_NONE_ACCEPTABLE,
  METHOD_NO_AUTH,
  REPLY,
  connectReply,
  greetingReply,
  parseConnect,
  parseGreeting,
} from './socks5.js';
import { advertisedHosts, hostPort, isWildcard, type InterfaceAddress } from './addresses.js';

export interface StreamhostOptions {
  bindHost: string;
  bindPort: number;
  advertiseHost: string;
  advertisePort: number;
  handshakeTimeoutMs: number;
  maxConnections: number;
  maxPerAddress: number;
  /** The host's interfaces (default os.networkInterfaces()): which addresses to offer when bound to all. */
  interfaces?: () => Record<string, InterfaceAddress[] | undefined>;
}

interface Expectation {
  resolve: (s: Socket) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class StreamhostTimeout extends Error {
  override name = 'StreamhostTimeout';
}

/** A real client sends its greeting right after connecting; a connection silent this long is dropped. */
const FIRST_BYTE_MS = 3000;

export class Streamhost {
  private readonly expected = new Map<string, Expectation>();
  private readonly open = new Set<Socket>();
  private readonly perAddress = new Map<string, number>();
  // Connections that have not yet sent a CONNECT we expect, oldest first (a Map keeps insertion order),
  // and whether their greeting is complete (a receiver's is, within a round trip of connecting).
  private readonly handshaking = new Map<Socket, { addr: string; greeted: boolean }>();
  private evicted = 0;
  private refused = 0;
  /** Offered hosts, best first (addresses.ts); a client tries them in this order. */
  readonly hosts: readonly string[];
  readonly port: number;
  private readonly loopbackOnly: boolean;

  private constructor(
    private readonly server: Server,
    private readonly opts: StreamhostOptions,
    private readonly log: Logger,
  ) {
    const addr = server.address();
    const bound = typeof addr === 'object' && addr ? addr.port : opts.bindPort;
    const a = advertisedHosts({
      bindHost: opts.bindHost,
      advertiseHost: opts.advertiseHost,
      interfaces: (opts.interfaces ?? networkInterfaces)(),
    });
    this.hosts = a.hosts;
    this.loopbackOnly = a.loopbackOnly;
    this.port = opts.advertisePort || bound;
  }

  /** The first offered host. */
  get host(): string {
    return this.hosts[0];
  }

  static async listen(opts: StreamhostOptions, log: Logger): Promise<Streamhost> {
    try {
      return await Streamhost.listenOn(opts, log);
    } catch (err) {
      // `::` on a host without IPv6: every IPv4 address instead.
      const code = (err as { code?: string }).code;
      if (opts.bindHost !== '::' || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw err;
      log.info({ bind: opts.bindHost, err: code }, 'no IPv6 here: streamhost listens on every IPv4 address');
      return Streamhost.listenOn({ ...opts, bindHost: '0.0.0.0' }, log);
    }
  }

  private static listenOn(opts: StreamhostOptions, log: Logger): Promise<Streamhost> {
    return new Promise((resolve, reject) => {
      const server = createServer({ noDelay: true });
      // A burst of receivers connecting at once must not stall in the kernel queue.
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          Object.assign(new Error(`streamhost cannot listen on ${opts.bindHost}:${opts.bindPort}: ${err.message}`), {
            code: err.code,
          }),
        ),
      );
      server.listen({ host: opts.bindHost, port: opts.bindPort, backlog: 511 }, () => {
        const sh = new Streamhost(server, opts, log);
        server.on('connection', (s) => sh.accept(s));
        server.on('error', (err) => log.error({ err: err.message }, 'streamhost error'));
        log.info(
          { bind: `${opts.bindHost}:${sh.boundPort}`, advertised: sh.hosts.map((h) => hostPort(h, sh.port)) },
          'streamhost listening',
        );
        if (sh.loopbackOnly)
          log.warn(
            { advertised: sh.hosts, bind: opts.bindHost, wildcard: isWildcard(opts.bindHost) },
            'streamhost offers only loopback: users on other hosts cannot reach it (set transfer.proxy.advertiseHost or bindHost)',
          );
        resolve(sh);
      });
    });
  }

  get boundPort(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : this.opts.bindPort;
  }

  get connections(): number {
    return this.open.size;
  }

  get listening(): boolean {
    return this.server.listening;
  }

  /**
   * Waits for the target to connect with this DST.ADDR. The hash is
   * registered before the streamhost offer goes out, and forgotten on
   * success, timeout or cancel.
   */
  expect(hash: string, timeoutMs: number): { socket: Promise<Socket>; cancel: () => void } {
    if (this.expected.has(hash)) throw new Error('hash already expected');
    let cancel: () => void = () => {};
    const socket = new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.expected.delete(hash);
        reject(new StreamhostTimeout(`no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      this.expected.set(hash, { resolve, reject, timer });
      cancel = () => {
        const e = this.expected.get(hash);
        if (!e) return;
        clearTimeout(e.timer);
        this.expected.delete(hash);
        reject(new Error('cancelled'));
      };
    });
    socket.catch(() => {}); // a cancelled expectation is not an unhandled rejection
    return { socket, cancel };
  }

  /**
   * Closes the connection that has done least for the longest, from `addr`
   * when given: the oldest without a complete greeting, else the oldest
   * still in its handshake. False when every connection is a relayed stream.
   */
  private evictOldest(addr?: string): boolean {
    let victim: Socket | undefined;
    for (const [s, h] of this.handshaking) {
      if (addr !== undefined && h.addr !== addr) continue;
      if (!h.greeted) {
        victim = s;
        break;
      }
      victim ??= s;
    }
    if (!victim) return false;
    const from = this.handshaking.get(victim)!.addr;
    this.release(victim);
    victim.destroy();
    this.evicted++;
    // One line per hundred: a flood must not flood the log too.
    if (this.evicted % 100 === 1)
      this.log.warn(
        { remote: from, evicted: this.evicted },
        'streamhost at its cap: oldest unfinished handshake closed',
      );
    return true;
  }

  /** Forgets a connection in the counts (once, whether it closed or was evicted). */
  private release(sock: Socket): void {
    if (!this.open.delete(sock)) return;
    this.handshaking.delete(sock);
    const addr = sock.remoteAddress ?? '?';
    const n = (this.perAddress.get(addr) ?? 1) - 1;
    if (n <= 0) this.perAddress.delete(addr);
    else this.perAddress.set(addr, n);
  }

  private accept(sock: Socket): void {
    const remote = `${sock.remoteAddress}:${sock.remotePort}`;
    const addr = sock.remoteAddress ?? '?';
    if (this.open.size >= this.opts.maxConnections && !this.evictOldest()) {
      this.log.warn({ remote, open: this.open.size }, 'streamhost connection refused: too many open connections');
      sock.destroy();
      return;
    }
    if ((this.perAddress.get(addr) ?? 0) >= this.opts.maxPerAddress && !this.evictOldest(addr)) {
      this.log.warn(
        { remote, open: this.perAddress.get(addr) },
        'streamhost connection refused: too many from one address',
      );
      sock.destroy();
      return;
    }
    this.perAddress.set(addr, (this.perAddress.get(addr) ?? 0) + 1);
    this.open.add(sock);
    const state = { addr, greeted: false };
    this.handshaking.set(sock, state);
    sock.once('close', () => this.release(sock));
    sock.on('error', () => {}); // reported where the socket is used; a reset here must not crash us
    let buf: Buffer = Buffer.alloc(0);
    let stage: 'greeting' | 'request' = 'greeting';
    const fail = (why: string, reply?: Buffer) => {
      // Each refusal at debug; every hundredth also at warn, with the count, so a flood shows without flooding.
      this.refused++;
      this.log[this.refused % 100 === 1 ? 'warn' : 'debug'](
        { remote, why, refused: this.refused },
        'streamhost handshake refused',
      );
      clearTimeout(deadline);
      clearTimeout(silence);
      sock.removeListener('data', onData);
      if (reply) sock.end(reply);
      else sock.destroy();
      // end() leaves the socket half-open until the peer closes: do not wait for it.
      setTimeout(() => sock.destroy(), 1000).unref();
    };
    const deadline = setTimeout(() => fail('handshake timeout'), this.opts.handshakeTimeoutMs);
    const silence = setTimeout(() => fail('no greeting'), Math.min(FIRST_BYTE_MS, this.opts.handshakeTimeoutMs));
    // An evicted or vanished connection's deadlines must not fire (and be counted as refusals) later.
    sock.once('close', () => {
      clearTimeout(deadline);
      clearTimeout(silence);
    });
    const onData = (chunk: Buffer) => {
      clearTimeout(silence);
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > MAX_HANDSHAKE_BYTES) return fail('handshake too long');
      if (stage === 'greeting') {
        const g = parseGreeting(buf);
        if (g.status === 'need-more') return;
        if (g.status === 'bad') return fail(g.reason);
        if (!g.methods.includes(METHOD_NO_AUTH))
          return fail('no-auth method not offered', greetingReply(METHOD_NONE_ACCEPTABLE));
        sock.write(greetingReply(METHOD_NO_AUTH));
        state.greeted = true;
        buf = buf.subarray(g.consumed);
        stage = 'request';
      }
      const r = parseConnect(buf);
      if (r.status === 'need-more') return;
      if (r.status === 'bad') return fail(r.reason, connectReply(REPLY.COMMAND_NOT_SUPPORTED, ''));
      const e = this.expected.get(r.addr);
      if (!e || r.port !== 0) return fail('unknown session', connectReply(REPLY.NOT_ALLOWED, r.addr));
      // Each negotiated session is relayed once: forget the hash before anything else.
      this.expected.delete(r.addr);
      clearTimeout(e.timer);
      clearTimeout(deadline);
      this.handshaking.delete(sock); // a negotiated stream now: never evicted
      sock.removeListener('data', onData);
      sock.pause();
      sock.write(connectReply(REPLY.SUCCEEDED, r.addr));
      e.resolve(sock);
    };
    sock.on('data', onData);
  }

  async close(): Promise<void> {
    for (const [hash, e] of this.expected) {
      clearTimeout(e.timer);
      e.reject(new Error('streamhost closed'));
      this.expected.delete(hash);
    }
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // Transfers in flight get a moment; then every socket goes.
      setTimeout(() => {
        for (const s of this.open) s.destroy();
      }, 100).unref();
    });
  }
}
