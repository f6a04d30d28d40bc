// The component's link to ejabberd (XEP-0114) through @xmpp/component:
// connect (plain TCP or direct TLS) to the first of several servers that
// answers, move on to the next with exponential backoff when the link is lost,
// send, and IQ requests.
import { component, xml, type Component, type Element } from '@xmpp/component';
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import { LinkDownError, errorElement } from './errors.js';
import { newId } from './ids.js';
import { NS } from './namespaces.js';
import { ServerNotTrusted, tlsSocketClass, type TlsOptions } from './tls.js';

export { ServerNotTrusted, type TlsOptions } from './tls.js';

/**
 * Handles one incoming stanza. For IQ get/set, return the payload of the
 * result (an element, or true for an empty result) or an <error/> element;
 * undefined means service-unavailable. Other stanzas' return is ignored.
 */
export type StanzaHandler = (el: Element) => Promise<Element | true | undefined>;

/**
 * The server refused the component before it was ever online (wrong secret,
 * unknown domain): a configuration error that retrying will not fix.
 */
export class HandshakeRefused extends Error {
  override name = 'HandshakeRefused';
}

/** Stream errors that mean the server will not take this component as configured (XEP-0114 §3, RFC 6120 §4.9.3). */
const REFUSALS = new Set(['not-authorized', 'host-unknown', 'conflict', 'improper-addressing', 'invalid-namespace']);

/** What /healthz shows of the server link. */
export interface LinkState {
  state: 'connecting' | 'connected' | 'reconnecting';
  /** the server connected to, or being tried (xmpp://host:port or xmpps://host:port) */
  server: string | undefined;
  /** the last connection error, e.g. "connection refused" */
  lastError: string | undefined;
  /** when the link was last lost (reconnecting only) */
  since: Date | undefined;
}

/** A second connection of the component (see Connection.openSpare). */
export interface SpareLink {
  /** the server it is connected to */
  readonly server: string;
  /** Ends the stream and the socket (bounded). */
  close(): Promise<void>;
  /** Called once when the link ends, for whatever reason (at once when it already has). */
  onClosed(fn: () => void): void;
}

export interface ConnectionOptions {
  /** The servers, in order: xmpp://host:port (plain TCP) or xmpps://host:port (direct TLS). */
  services: readonly string[];
  domain: string;
  secret: string;
  reconnectMaxMs: number;
  /** How xmpps:// servers are verified. */
  tls?: TlsOptions;
  /** One attempt at most (TCP connect, TLS, stream header, handshake); default 10 s. */
  attemptTimeoutMs?: number;
  /**
   * XEP-0199 pings to the server's own domain while online: any answer, an error
   * included, proves the link; none within intervalMs drops it. A server host that
   * vanished (power, network) closes nothing, and TCP alone would notice only when a
   * write times out, minutes later. intervalMs 0 = off.
   */
  keepalive?: { to: string; intervalMs: number };
}

interface Server {
  /** as configured, for logs and /healthz */
  service: string;
  host: string;
  port: number;
  tls: boolean;
}

/** Parses xmpp://host:port or xmpps://host:port (IPv6 in brackets); throws on anything else. */
export function parseService(service: string): Server {
  const m = /^(xmpps?):\/\/(?:\[([0-9a-f:.]+)\]|([^/:[\]@\s]+)):(\d{1,5})$/i.exec(service);
  const port = m ? Number(m[4]) : 0;
  if (!m || port < 1 || port > 65535)
    throw new Error(`expected xmpp://host:port or xmpps://host:port, got ${JSON.stringify(service)}`);
  return { service, host: m[2] ?? m[3], port, tls: m[1].toLowerCase() === 'xmpps' };
}

export class Connection {
  readonly xmpp: Component;
  private online = false;
  private stopping = false;
  /** failed attempts since the link was last up: the backoff's exponent */
  private failures = 0;
  private readonly servers: Server[];
  /** index into servers of the one connected to, or being tried */
  private index = 0;
  private attempting = false;
  private attemptToken = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly tlsSocket: new () => unknown;
  private pinger: NodeJS.Timeout | undefined;
  private readonly lostListeners = new Set<() => void>();
  private readonly onlineWaiters = new Set<() => void>();
  private stanzaHandler: StanzaHandler = () => Promise.resolve(undefined);
  private everOnline = false;
  private lastError: string | undefined;
  private lostAt: Date | undefined;
  private refuse: (err: Error) => void = () => {};

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly log: Logger,
  ) {
    if (opts.services.length === 0) throw new Error('no XMPP server given');
    this.servers = opts.services.map(parseService);
    this.tlsSocket = tlsSocketClass(opts.tls ?? {});
    // Every stanza crosses the link, in-band report data included.
    for (const srv of this.servers)
      if (!srv.tls && !isLoopback(srv.host))
        log.warn(
          { server: srv.service },
          'the link to this XMPP server is not encrypted: use xmpps:// with a TLS listener (ejabberd: tls: true)',
        );
    this.xmpp = component({ service: plainUri(this.servers[0]), domain: opts.domain, password: opts.secret });
    // Every attempt is ours (which server, backoff, a bound on each attempt):
    // the library's reconnect retries only its one service, every second, and
    // waits forever on a connect whose packets are dropped.
    this.xmpp.reconnect.stop();
    // The library takes host and port from its service URI; ours come from
    // the current server (also IPv6 literals, which its parser leaves in brackets).
    this.xmpp.socketParameters = () => ({ host: this.current.host, port: this.current.port });
    // Stanzas are small and answered at once (IBB acks, offers): Nagle's
    // algorithm against the server's delayed ACKs cost ~40-80 ms per exchange
    // (bench item 5: request → offer p99 94 ms, 24 ms with it off).
    this.xmpp.on('connect', () => this.xmpp.socket?.setNoDelay?.(true));
    // ltx throws from inside the socket's data handler on an illegal character
    // reference (&#0;), which would crash the process: treat it as the
    // malformed XML it is (stream error bad-format, drop, reconnect).
    const onData = this.xmpp._onData.bind(this.xmpp);
    this.xmpp._onData = (data: Buffer) => {
      try {
        onData(data);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'the XMPP server sent XML we cannot parse; reconnecting');
        this.xmpp._onParserError(err as Error);
      }
    };
    this.xmpp.on('online', () => {
      this.online = true;
      this.everOnline = true;
      this.lastError = undefined;
      this.lostAt = undefined;
      this.failures = 0;
      this.log.info(
        { server: this.current.service, domain: opts.domain, tls: this.current.tls },
        'connected to the XMPP server',
      );
      this.startKeepalive();
      for (const w of [...this.onlineWaiters]) w();
    });
    this.xmpp.on('offline', () => {
      this.online = false;
    });
    this.xmpp.on('disconnect', (ev: { clean?: boolean; reason?: unknown } | undefined) => {
      this.stopKeepalive();
      if (this.online) {
        this.online = false;
        this.lostAt = new Date();
        if (!this.stopping)
          this.log.warn(
            {
              server: this.current.service,
              reason: describe(ev?.reason),
              ...(this.servers.length > 1
                ? { next: this.servers[(this.index + 1) % this.servers.length].service }
                : {}),
            },
            'disconnected from the XMPP server; reconnecting',
          );
        for (const fn of this.lostListeners) fn();
      }
      // A failed attempt is followed up by attempt() itself.
      if (!this.attempting) this.scheduleNext();
    });
    let lastError = '';
    this.xmpp.on('error', (err: Error & { condition?: string; text?: string }) => {
      const msg = err.condition ? `${err.condition}${err.text ? `: ${err.text}` : ''}` : err.message;
      this.lastError = msg;
      const server = this.current.service;
      if (err instanceof ServerNotTrusted) {
        // We refuse the server: a wrong CA or name is a configuration error at
        // start-up; later (a certificate replaced) the link keeps retrying.
        if (!this.everOnline) {
          if (!this.stopping) this.log.fatal({ server, err: err.message }, err.message);
          this.refuse(err);
          return;
        }
        if (msg !== lastError) this.log.error({ server, err: err.message }, err.message);
        lastError = msg;
        return;
      }
      if (err.condition && REFUSALS.has(err.condition)) {
        // The server's own words first; a guess only when it gave none.
        const said = err.text ? `the server said "${err.text}"` : guess(err.condition);
        const text = `the XMPP server refused the component ${opts.domain} (${err.condition}): ${said}`;
        if (!this.everOnline) {
          if (!this.stopping)
            this.log.fatal({ server, domain: opts.domain, condition: err.condition, text: err.text }, text);
          this.refuse(new HandshakeRefused(text));
          return;
        }
        if (msg !== lastError)
          this.log.error({ server, domain: opts.domain, condition: err.condition, text: err.text }, text);
        lastError = msg;
        return;
      }
      // Connection errors repeat on every retry; log each distinct one once.
      if (`${server} ${msg}` === lastError) return;
      lastError = `${server} ${msg}`;
      this.log.error({ server, err: msg }, 'XMPP connection error');
    });
    // Stanzas go through the library's middleware chain, after its IQ
    // caller (replies to our requests) and callee (which wraps what we return
    // into exactly one result or error for IQ get/set, and answers
    // service-unavailable when we return nothing).
    this.xmpp.middleware.use((ctx) => {
      lastError = '';
      return this.dispatch(ctx.stanza);
    });
  }

  /** One incoming stanza to the handler: for IQ get/set, the reply the library's callee sends. */
  private async dispatch(el: Element): Promise<Element | true | undefined> {
    const isQuery = el.name === 'iq' && (el.attrs.type === 'get' || el.attrs.type === 'set');
    try {
      const reply = await this.stanzaHandler(el);
      return isQuery ? reply : undefined;
    } catch (err) {
      this.log.error({ err: (err as Error).message, stanza: el.name, from: el.attrs.from }, 'stanza handler failed');
      return isQuery ? errorElement('cancel', 'internal-server-error') : undefined;
    }
  }

  /**
   * Opens one more connection for the component domain to the server this one
   * uses, handshake included (ejabberd domain_balancing gives it the first free
   * slot, src/xmpp/slots). Whatever arrives on it is handled exactly like what
   * arrives here: IQ replies reach this connection's pending requests, the rest
   * goes to the stanza handler (and IQ get/set are answered on the spare),
   * except what `intercept` takes (it returns true). Outbound stays here.
   */
  async openSpare(intercept: (el: Element) => boolean, timeoutMs: number): Promise<SpareLink> {
    const server = this.current;
    const spare = component({ service: plainUri(server), domain: this.opts.domain, password: this.opts.secret });
    spare.reconnect.stop();
    spare.Socket = server.tls ? this.tlsSocket : Socket;
    spare.socketParameters = () => ({ host: server.host, port: server.port });
    spare.on('connect', () => spare.socket?.setNoDelay?.(true));
    // as for the primary: malformed XML must not throw out of the socket's data handler
    const onData = spare._onData.bind(spare);
    spare._onData = (data: Buffer) => {
      try {
        onData(data);
      } catch (err) {
        this.log.error(
          { err: (err as Error).message },
          'the XMPP server sent XML we cannot parse on a spare connection',
        );
        spare._onParserError(err as Error);
      }
    };
    spare.on('error', (err: Error & { condition?: string }) =>
      this.log.debug({ server: server.service, err: err.condition ?? err.message }, 'spare connection error'),
    );
    spare.middleware.use((ctx) => {
      const el = ctx.stanza;
      // stanzas only: not the spare's own <handshake/>
      if (el.name !== 'iq' && el.name !== 'message' && el.name !== 'presence') return undefined;
      if (intercept(el)) return undefined;
      if (el.name === 'iq' && (el.attrs.type === 'result' || el.attrs.type === 'error')) {
        // the reply to a request sent through this connection: its iqCaller matches it
        this.xmpp.emit('element', el);
        return undefined;
      }
      return this.dispatch(el);
    });
    const closed = new Set<() => void>();
    let ended = false;
    spare.on('disconnect', () => {
      if (ended) return;
      ended = true;
      for (const fn of closed) fn();
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        spare.start(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no handshake within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      ended = true;
      spare.socket?.destroy?.();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return {
      server: server.service,
      close: async () => {
        await Promise.race([spare.stop().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
        spare.socket?.destroy?.();
      },
      onClosed: (fn) => {
        if (ended) fn();
        else closed.add(fn);
      },
    };
  }

  private get current(): Server {
    return this.servers[this.index];
  }

  get isOnline(): boolean {
    return this.online;
  }

  get link(): LinkState {
    return {
      state: this.online ? 'connected' : this.everOnline ? 'reconnecting' : 'connecting',
      server: this.current.service,
      lastError: this.online ? undefined : this.lastError,
      since: this.online ? undefined : this.lostAt,
    };
  }

  /** Called each time an established connection drops (in-band transfers cannot survive that). */
  onLost(fn: () => void): void {
    this.lostListeners.add(fn);
  }

  /** Resolves true once online (at once when already), false after timeoutMs. */
  whenOnline(timeoutMs: number): Promise<boolean> {
    if (this.online) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.onlineWaiters.delete(onOnline);
        resolve(ok);
      };
      const onOnline = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.onlineWaiters.add(onOnline);
    });
  }

  onStanza(fn: StanzaHandler): void {
    this.stanzaHandler = fn;
  }

  /**
   * Resolves at the first successful handshake, trying the servers in turn
   * while none can be reached; rejects with HandshakeRefused when a server
   * refuses the component, or ServerNotTrusted when a server's TLS
   * certificate or name fails verification (and stops trying).
   */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.refuse = (err) => {
        this.refuse = () => {};
        void this.stop().finally(() => reject(err));
      };
      this.xmpp.once('online', () => {
        this.refuse = () => {};
        resolve();
      });
      void this.attempt();
    });
  }

  /** One attempt on the current server; on failure, the next server after the backoff. */
  private async attempt(): Promise<void> {
    this.timer = undefined;
    if (this.stopping || this.online || this.attempting) return;
    this.attempting = true;
    const token = ++this.attemptToken;
    const server = this.current;
    this.xmpp.options.service = plainUri(server); // what the library itself reads (see-other-host)
    // Set per attempt: a list may mix plain and TLS servers.
    this.xmpp.Socket = server.tls ? this.tlsSocket : Socket;
    this.log.debug({ server: server.service, attempt: this.failures + 1 }, 'connecting to the XMPP server');
    const ok = await new Promise<boolean>((resolve) => {
      const finish = (up: boolean) => {
        clearTimeout(timer);
        this.xmpp.removeListener('online', onOnline);
        this.xmpp.removeListener('disconnect', onDown);
        resolve(up);
      };
      const onOnline = () => finish(true);
      const onDown = () => finish(false);
      const timer = setTimeout(() => {
        if (this.stopping) return finish(false);
        const msg = `no answer from ${server.service} within ${this.opts.attemptTimeoutMs ?? 10000} ms`;
        this.xmpp.emit('error', new Error(msg));
        finish(false);
      }, this.opts.attemptTimeoutMs ?? 10000);
      this.xmpp.on('online', onOnline);
      this.xmpp.on('disconnect', onDown);
      // Failures arrive as 'error' (logged above) and 'disconnect'.
      this.xmpp
        .connect(plainUri(server))
        .then(() => this.xmpp.open({ domain: this.opts.domain }))
        // (the server never sent its stream header: drop the socket rather than
        // wait for the timeout; only this attempt's, should a later one be under way)
        .catch(() => !this.online && token === this.attemptToken && this.xmpp.socket?.destroy?.());
    });
    this.attempting = false;
    if (ok || this.stopping) return;
    this.failures++;
    // Still half-open (timed out): drop it; its 'disconnect' then finds the next attempt scheduled.
    this.xmpp.socket?.destroy?.();
    this.scheduleNext();
  }

  /** The next server in the list, after the backoff (1 s doubling up to reconnectMaxMs). */
  private scheduleNext(): void {
    if (this.stopping || this.online || this.attempting || this.timer) return;
    const from = this.current;
    this.index = (this.index + 1) % this.servers.length;
    const delay = Math.min(1000 * 2 ** this.failures, this.opts.reconnectMaxMs);
    if (this.servers.length > 1)
      this.log.info({ from: from.service, server: this.current.service, inMs: delay }, 'trying the next XMPP server');
    this.timer = setTimeout(() => void this.attempt(), delay);
  }

  private startKeepalive(): void {
    const k = this.opts.keepalive;
    this.stopKeepalive();
    if (!k || k.intervalMs <= 0) return;
    let waiting = false;
    this.pinger = setInterval(() => {
      if (waiting || !this.online) return;
      waiting = true;
      const socket = this.xmpp.socket;
      const server = this.current.service;
      const ping = xml(
        'iq',
        { type: 'get', to: k.to, from: this.opts.domain, id: newId() },
        xml('ping', { xmlns: NS.PING }),
      );
      const sent = Date.now();
      this.xmpp.iqCaller
        .request(ping, k.intervalMs)
        .then(() => this.log.debug({ server, ms: Date.now() - sent }, 'the XMPP server answered a ping'))
        .catch((err: Error) => {
          if (err.name !== 'TimeoutError')
            this.log.debug({ server, ms: Date.now() - sent, err: err.message }, 'the XMPP server answered a ping');
          // An error reply (a server without mod_ping) is an answer all the same.
          if (err.name !== 'TimeoutError' || this.stopping || socket !== this.xmpp.socket) return;
          this.lastError = `no answer to a ping in ${k.intervalMs} ms`;
          this.log.warn({ server, waitedMs: k.intervalMs }, 'the XMPP server did not answer a ping; dropping the link');
          socket?.destroy?.();
        })
        .finally(() => (waiting = false));
    }, k.intervalMs);
    this.pinger.unref();
  }

  private stopKeepalive(): void {
    clearInterval(this.pinger);
    this.pinger = undefined;
  }

  /** Sends a stanza; rejects with LinkDownError while the link is down (xmpp.js would write to no socket). */
  async send(el: Element): Promise<void> {
    if (!this.online) throw new LinkDownError();
    await this.xmpp.send(el).catch((err: unknown) => this.linkError(err));
  }

  /** Sends once online, waiting out a reconnect (bounded): chat replies are not lost to a server restart. */
  async sendWhenOnline(el: Element, timeoutMs = 30000): Promise<void> {
    if (!this.online && !(await this.whenOnline(timeoutMs))) throw new LinkDownError();
    await this.send(el);
  }

  /** Sends an IQ get/set and waits for its result; rejects on error or timeout, and with LinkDownError while the link is down. */
  async request(iq: Element, timeoutMs: number): Promise<Element> {
    if (!this.online) throw new LinkDownError();
    return this.xmpp.iqCaller.request(iq, timeoutMs).catch((err: unknown) => this.linkError(err));
  }

  /** A send that failed because the link went down meanwhile is a LinkDownError; anything else stays as it was. */
  private linkError(err: unknown): never {
    if (!this.online || !this.xmpp.socket) throw new LinkDownError();
    throw err;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stopKeepalive();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.xmpp.reconnect.stop();
    try {
      await this.xmpp.stop();
    } catch {
      // already closed
    }
    this.xmpp.socket?.destroy?.();
    this.log.info({ domain: this.opts.domain }, 'disconnected from the XMPP server');
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The library's own form of a server (it knows xmpp:// only; TLS is our Socket class). */
function plainUri(s: Server): string {
  return `xmpp://${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;
}

/** Why a server may refuse a component, for a server that gave no text. */
function guess(condition: string): string {
  switch (condition) {
    case 'not-authorized':
      return 'the secret is wrong (check xmpp.secret against the listener: ejabberd hosts.<domain>.password, Prosody component_secret)';
    case 'host-unknown':
      return "the server does not know this component domain (ejabberd: the listener's hosts; Prosody: a Component block)";
    case 'conflict':
      return 'the domain is taken: it is also a virtual host, or (Prosody) another instance is connected';
    default:
      return 'check xmpp.domain and the listener configuration';
  }
}

/** A disconnect reason as text (the library gives an Error, a string or nothing). */
function describe(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return typeof reason === 'string' && reason !== '' ? reason : 'closed';
}
