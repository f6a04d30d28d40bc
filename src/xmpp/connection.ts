// The component's link to ejabberd (XEP-0114) through @xmpp/component:
// connect, reconnect with exponential backoff, send, and IQ requests.
import { component, type Component, type Element } from '@xmpp/component';
import type { Logger } from 'pino';
import { errorElement } from './errors.js';

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
  /** the last connection error, e.g. "connection refused" */
  lastError: string | undefined;
  /** when the link was last lost (reconnecting only) */
  since: Date | undefined;
}

export interface ConnectionOptions {
  service: string;
  domain: string;
  secret: string;
  reconnectMaxMs: number;
}

export class Connection {
  readonly xmpp: Component;
  private online = false;
  private stopping = false;
  private attempt = 0;
  private readonly lostListeners = new Set<() => void>();
  private readonly onlineWaiters = new Set<() => void>();
  private stanzaHandler: StanzaHandler = () => Promise.resolve(undefined);
  private everOnline = false;
  private lastError: string | undefined;
  private lostAt: Date | undefined;
  private refuse: (err: HandshakeRefused) => void = () => {};

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly log: Logger,
  ) {
    this.xmpp = component({ service: opts.service, domain: opts.domain, password: opts.secret });
    // The library's reconnect uses a fixed 1 s delay; we grow it on each
    // failed attempt so a restarting ejabberd is not hammered.
    this.xmpp.reconnect.delay = 1000;
    this.xmpp.reconnect.on('reconnecting', () => {
      this.attempt++;
      this.xmpp.reconnect.delay = Math.min(1000 * 2 ** this.attempt, opts.reconnectMaxMs);
    });
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
      this.attempt = 0;
      this.xmpp.reconnect.delay = 1000;
      this.log.info({ server: opts.service, domain: opts.domain }, 'connected to the XMPP server');
      for (const w of [...this.onlineWaiters]) w();
    });
    this.xmpp.on('offline', () => {
      this.online = false;
    });
    this.xmpp.on('disconnect', (ev: { clean?: boolean; reason?: unknown } | undefined) => {
      if (this.online) {
        this.online = false;
        this.lostAt = new Date();
        if (!this.stopping)
          this.log.warn(
            { server: opts.service, reason: describe(ev?.reason) },
            'disconnected from the XMPP server; reconnecting',
          );
        for (const fn of this.lostListeners) fn();
      }
    });
    let lastError = '';
    this.xmpp.on('error', (err: Error & { condition?: string; text?: string }) => {
      const msg = err.condition ? `${err.condition}${err.text ? `: ${err.text}` : ''}` : err.message;
      this.lastError = msg;
      if (err.condition && REFUSALS.has(err.condition)) {
        // The server's own words first; a guess only when it gave none.
        const said = err.text ? `the server said "${err.text}"` : guess(err.condition);
        const text = `the XMPP server refused the component ${opts.domain} (${err.condition}): ${said}`;
        if (!this.everOnline) {
          if (!this.stopping) this.log.fatal({ domain: opts.domain, condition: err.condition, text: err.text }, text);
          this.refuse(new HandshakeRefused(text));
          return;
        }
        if (msg !== lastError) this.log.error({ domain: opts.domain, condition: err.condition, text: err.text }, text);
        lastError = msg;
        return;
      }
      // Connection errors repeat on every retry; log each distinct one once.
      if (msg === lastError) return;
      lastError = msg;
      this.log.error({ err: msg }, 'XMPP connection error');
    });
    // Stanzas go through the library's middleware chain, after its IQ
    // caller (replies to our requests) and callee (which wraps what we return
    // into exactly one result or error for IQ get/set, and answers
    // service-unavailable when we return nothing).
    this.xmpp.middleware.use(async (ctx) => {
      lastError = '';
      const el = ctx.stanza;
      const isQuery = el.name === 'iq' && (el.attrs.type === 'get' || el.attrs.type === 'set');
      try {
        const reply = await this.stanzaHandler(el);
        return isQuery ? reply : undefined;
      } catch (err) {
        this.log.error({ err: (err as Error).message, stanza: el.name, from: el.attrs.from }, 'stanza handler failed');
        return isQuery ? errorElement('cancel', 'internal-server-error') : undefined;
      }
    });
  }

  get isOnline(): boolean {
    return this.online;
  }

  get link(): LinkState {
    return {
      state: this.online ? 'connected' : this.everOnline ? 'reconnecting' : 'connecting',
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
   * Resolves at the first successful handshake, retrying while the server
   * cannot be reached; rejects with HandshakeRefused when the server refuses
   * the component (and stops trying).
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
      this.xmpp.start().catch(() => {
        // The first attempt failed (error already logged): the reconnect
        // module only reacts to 'disconnect', so schedule retries ourselves.
        this.retryFirstConnect();
      });
    });
  }

  private retryFirstConnect(): void {
    if (this.stopping || this.online) return;
    this.attempt++;
    const delay = Math.min(1000 * 2 ** this.attempt, this.opts.reconnectMaxMs);
    setTimeout(() => {
      if (this.stopping || this.online || this.xmpp.status === 'connecting' || this.xmpp.status === 'opening') return;
      this.xmpp.start().catch(() => this.retryFirstConnect());
    }, delay).unref();
  }

  async send(el: Element): Promise<void> {
    await this.xmpp.send(el);
  }

  /** Sends once online, waiting out a reconnect (bounded): chat replies are not lost to a server restart. */
  async sendWhenOnline(el: Element, timeoutMs = 30000): Promise<void> {
    if (!this.online && !(await this.whenOnline(timeoutMs))) throw new Error('not connected to the XMPP server');
    await this.xmpp.send(el);
  }

  /** Sends an IQ get/set and waits for its result; rejects on error or timeout. */
  request(iq: Element, timeoutMs: number): Promise<Element> {
    return this.xmpp.iqCaller.request(iq, timeoutMs);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.xmpp.reconnect.stop();
    try {
      await this.xmpp.stop();
    } catch {
      // already closed
    }
    this.log.info({ domain: this.opts.domain }, 'disconnected from the XMPP server');
  }
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
