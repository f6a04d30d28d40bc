// Sends a report by SI file transfer: offer (XEP-0095/0096), then SOCKS5
// bytestreams (XEP-0065) through our own streamhost or a configured proxy,
// falling back to in-band bytestreams (XEP-0047).
import type { Socket } from 'node:net';
import type { Element } from '@xmpp/component';
import type { Logger } from 'pino';
import { parseJid } from '../../xmpp/addresses.js';
import { isNamedClient } from '../../xmpp/caps.js';
import { requestCondition, requestFailure } from '../../xmpp/errors.js';
import { soon } from '../../log.js';
import { newId, newSid } from '../../xmpp/ids.js';
import { NS } from '../../xmpp/namespaces.js';
import type { ComponentModule, IqRoute } from '../../xmpp/router.js';
import {
  DeliveryError,
  offerRefusal,
  sourceFailure,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRequest,
  offerSent,
  type Method,
} from '../delivery.js';
import { IbbError } from '../ibb/sender.js';
import { Interruption, stopReasonOf } from '../interruption.js';
import { hostPort } from '../s5b/addresses.js';
import { remember, streamhostKey } from '../s5b/memory.js';
import { connectProxy } from '../s5b/proxy.js';
import { StreamError } from '../s5b/send.js';
import { dstAddr } from '../s5b/socks5.js';
import { buildStreamhostOffer, streamhostUsed, type StreamhostInfo } from '../s5b/stanzas.js';
import { buildOffer, chosenMethod } from './stanzas.js';
import type { StreamDeps } from '../streams.js';

export interface SiOptions {
  /** stream methods offered, in this order */
  methods: readonly Method[];
  /** how long the user has to accept */
  offerTimeoutMs: number;
  /** how long the receiver has to connect to a streamhost */
  connectTimeoutMs: number;
  /** an in-band block without an ack for this long ends the stream */
  stallTimeoutMs: number;
  ibb: { blockSize: number; window: number };
  /** disco#info identity names of clients whose bytes may start before their streamhost-used (see sendS5b) */
  earlyClients?: readonly string[];
}

/** Why S5B did not work, and whether IBB may still be tried. */
class S5bFailed extends Error {
  constructor(
    message: string,
    readonly fallback: boolean,
    readonly sent = 0,
  ) {
    super(message);
  }
}

export class SiDelivery implements Delivery, ComponentModule {
  readonly features = [NS.SI, NS.SI_FILE];
  readonly routes: readonly IqRoute[] = [];
  private readonly running = new Set<Interruption>();

  constructor(
    private readonly deps: StreamDeps,
    private readonly o: SiOptions,
  ) {}

  /** The server connection dropped: pending negotiations end now (the in-band streams end with IbbStreams). */
  connectionLost(): void {
    for (const r of this.running) r.trigger('interrupted');
  }

  private methods(): Method[] {
    const canS5b = this.deps.streamhost !== undefined || this.deps.proxies.list.length > 0;
    return this.o.methods.filter((m) => m !== 's5b' || canS5b);
  }

  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const run = new Interruption();
    const sid = newSid('xr');
    run.onTrigger((_why, err) => {
      if (run.cuts) this.deps.ibb.abort(req.to, sid, err.message);
    });
    this.running.add(run);
    const onAbort = () => run.trigger(stopReasonOf(req.signal!));
    req.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.negotiate(req, sid, run);
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      this.running.delete(run);
    }
  }

  private async negotiate(req: DeliveryRequest, sid: string, run: Interruption): Promise<DeliveryOutcome> {
    const { report, to, from } = req;
    const offered = this.methods();
    const offer = buildOffer({
      id: newId(),
      from,
      to,
      sid,
      methods: offered,
      file: {
        name: report.name,
        size: report.size,
        date: report.date,
        desc: `Status report of project ${report.project}`,
        mime: report.mime,
      },
    });
    await req.progress?.({ kind: 'offering' });
    let answer: Element;
    const asked = this.deps.request(offer, this.o.offerTimeoutMs);
    // made once the offer is written: a child logger is not free either
    const log = req.log.child({ sid });
    try {
      soon(() => log.info({ bytes: report.size, methods: offered }, 'file offered'));
      offerSent(req);
      answer = await run.race(asked);
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      throw offerRefusal(
        err,
        log,
        'offer',
        new DeliveryError({ reason: 'offer-timeout', message: 'offer not answered in time' }),
      );
    }
    if (!sameJid(answer.attrs.from, to)) {
      throw new DeliveryError({ reason: 'failed', message: 'the answer came from another address' });
    }
    const method = chosenMethod(answer, offered);
    if (!method) {
      log.warn('offer accepted without a method we offered');
      throw new DeliveryError({ reason: 'unsupported', message: 'no common stream method' });
    }
    soon(() => log.info({ method }, 'offer accepted'));
    const started = Date.now();
    if (method === 's5b') {
      try {
        const bytes = await this.sendS5b(req, sid, log, run);
        log.info({ method: 's5b', bytes, ms: Date.now() - started }, 'delivered');
        return { kind: 'delivered', method: 's5b', bytes };
      } catch (err) {
        if (!(err instanceof S5bFailed)) throw err;
        if (!err.fallback || !offered.includes('ibb')) {
          log.warn({ method: 's5b', err: err.message, bytes: err.sent }, 'transfer failed');
          throw new DeliveryError({
            reason: err.sent > 0 ? 'lost' : 'failed',
            message: err.message,
            sent: err.sent,
            method: 's5b',
          });
        }
        log.info({ method: 's5b', err: err.message }, 'direct connection failed; falling back to in-band');
      }
    }
    const bytes = await this.sendIbb(req, sid, log, run);
    log.info({ method: 'ibb', bytes, ms: Date.now() - started }, 'delivered');
    return { kind: 'delivered', method: 'ibb', bytes };
  }

  private async sendS5b(req: DeliveryRequest, sid: string, log: Logger, run: Interruption): Promise<number> {
    const { to, from, report } = req;
    const { connectTimeoutMs } = this.o;
    const hash = dstAddr(sid, from, to);
    const defaults: StreamhostInfo[] = [];
    const own = this.deps.streamhost;
    // Our streamhost is offered under the initiator's own JID: to the target
    // it is a direct connection, so no <activate/> is needed (XEP-0065 §5).
    const expectation = own?.expect(hash, connectTimeoutMs);
    // Every address the streamhost offers, best first (s5b/addresses.ts): the target tries them in order.
    const ownHosts: StreamhostInfo[] = own ? own.hosts.map((host) => ({ jid: from, host, port: own.port })) : [];
    defaults.push(...ownHosts);
    const proxies = this.deps.proxies.list;
    defaults.push(...proxies);
    // libpurple tries streamhosts in document order and waits out each one it cannot reach: the one that
    // worked for this user last time goes first.
    const user = parseJid(to)?.bare ?? to;
    const key = (h: StreamhostInfo) => streamhostKey(h, from);
    const offeredKeys = defaults.map(key);
    const hosts = this.deps.memory.order(user, defaults, key);
    const learn = (seen: { worked?: string; failed?: readonly string[] }) =>
      remember(this.deps.memory, log, user, offeredKeys, seen);
    soon(() =>
      log.info(
        { method: 's5b', streamhosts: hosts.map((h) => `${h.jid} ${hostPort(h.host, h.port)}`) },
        'streamhosts offered',
      ),
    );
    const stream = (socket: Socket): Promise<number> => {
      // A shutdown past its grace period cuts the stream; the server connection dropping does not (TCP is ours).
      run.onTrigger((_why, err) => {
        if (run.cuts) socket.destroy(new Error(err.message));
      });
      // once: an SI bytestream never starts over (no fallback once bytes flow, no re-offer of a
      // stream our server link does not carry), so the report's bytes need not be kept behind it
      return this.deps.s5b.send(socket, report, undefined, { once: true }).catch((err: unknown) => {
        const sent = err instanceof StreamError ? err.sent : 0;
        if (run.cuts) throw run.failure(sent, 's5b');
        throw sourceFailure((err as Error).cause, sent, 's5b') ?? new S5bFailed((err as Error).message, false, sent);
      });
    };
    // XEP-0065 §5.3.3 has the target name the streamhost it used before the stream is used: it may have
    // connected to several. A client of transfer.proxy.earlyClients (libpurple) tries one streamhost at a
    // time and reads exactly the SOCKS5 reply (proxy.c, s5_canread_again), so once it holds a connection to
    // ours with this session's hash, that is the stream it will name, and bytes behind the reply wait in
    // its socket. They go out now, while its streamhost-used crosses the server; the transfer still counts
    // only once that streamhost-used names us (see below), and a stream started early is never replaced.
    let early: { socket: Socket; sending: Promise<number> } | undefined;
    let answered = false;
    if (expectation && isNamedClient(req.client, this.o.earlyClients ?? [])) {
      expectation.socket.then(
        (socket) => {
          if (answered || run.stopped) return; // the answer came first: the stream starts below, as for anyone
          const sending = stream(socket);
          sending.catch(() => {}); // awaited below
          early = { socket, sending };
        },
        () => {}, // cancelled, or never connected: the answer below tells
      );
    }
    /** Our streamhost will not carry this stream: no more waiting for it, and a connection that came is closed. */
    const release = () => {
      expectation?.cancel();
      void expectation?.socket.then(
        (s) => s.destroy(),
        () => {},
      );
    };
    /** Ends a stream started early that will not count; the error says how many of its bytes left. */
    const abandon = async (e: NonNullable<typeof early>, why: string): Promise<S5bFailed> => {
      // a reset where it can still be had: once end() is under way a TCP reset is refused (and 'close' never comes)
      if (!e.socket.destroyed) {
        if (e.socket.writableEnded) e.socket.destroy();
        else e.socket.resetAndDestroy();
      }
      const sent = await e.sending.then(
        (n) => n,
        (err: unknown) => (err as { sent?: number }).sent ?? 0,
      );
      return new S5bFailed(why, false, sent);
    };
    let used: string | undefined;
    try {
      const result = await run.race(
        this.deps.request(buildStreamhostOffer({ id: newId(), from, to, sid, hosts }), connectTimeoutMs),
      );
      used = streamhostUsed(result);
    } catch (err) {
      answered = true;
      release();
      const cut = early
        ? await abandon(early, `receiver connected to our streamhost, then answered ${requestFailure(err)}`)
        : undefined;
      if (err instanceof DeliveryError) throw err;
      if (cut) throw cut;
      // libpurple's item-not-found after trying every streamhost, or still no answer when our wait ended. Any
      // other error (the user went offline) says nothing about the streamhosts.
      if (requestCondition(err) === 'item-not-found' || (err as Error).name === 'TimeoutError')
        learn({ failed: offeredKeys });
      throw new S5bFailed(`receiver could not connect (${requestFailure(err)})`, true);
    }
    answered = true;
    let socket: Socket;
    if (own && expectation && used === from) {
      if (early) socket = early.socket;
      else {
        try {
          // The target connects before it answers, so the socket is normally here already.
          socket = await expectation.socket;
        } catch (err) {
          learn({ failed: ownHosts.map(key) });
          throw new S5bFailed(`receiver named our streamhost but never connected: ${(err as Error).message}`, true);
        }
      }
      // Every address is offered under one JID: which one the target reached, the socket says.
      const reached = (socket.localAddress ?? '').replace(/^::ffff:/, '');
      learn({ worked: key(ownHosts.find((h) => h.host === reached) ?? ownHosts[0]) });
    } else {
      release();
      if (early) throw await abandon(early, `receiver connected to our streamhost, then named ${used ?? '(none)'}`);
      const proxy = proxies.find((p) => p.jid === used);
      if (!proxy) throw new S5bFailed(`receiver chose an unknown streamhost ${used ?? '(none)'}`, true);
      try {
        socket = await connectProxy({
          proxy,
          hash,
          sid,
          from,
          target: to,
          timeoutMs: connectTimeoutMs,
          request: this.deps.request,
        });
      } catch (err) {
        learn({ failed: [key(proxy)] });
        throw new S5bFailed((err as Error).message, true);
      }
      learn({ worked: key(proxy) });
    }
    const sending = early?.sending;
    soon(() =>
      log.info({ method: 's5b', streamhost: used, ...(sending ? { early: true } : {}) }, 'bytestream connected'),
    );
    return await (sending ?? stream(socket));
  }

  private async sendIbb(req: DeliveryRequest, sid: string, log: Logger, run: Interruption): Promise<number> {
    try {
      return await this.deps.ibb.send({
        from: req.from,
        to: req.to,
        sid,
        report: req.report,
        blockSize: this.o.ibb.blockSize,
        window: this.o.ibb.window,
        ackTimeoutMs: this.o.stallTimeoutMs,
      });
    } catch (err) {
      const sent = err instanceof IbbError ? err.acked : 0;
      const message = (err as Error).message;
      log.warn({ method: 'ibb', err: message, bytes: sent }, 'transfer failed');
      // Our own stop first: a shutdown also ends the download, which is not the intranet's fault.
      if (run.stopped) throw run.failure(sent, 'ibb', message);
      throw (
        sourceFailure((err as Error).cause, sent, 'ibb') ??
        new DeliveryError({ reason: sent > 0 ? 'lost' : 'failed', message, sent, method: 'ibb' })
      );
    }
  }
}

function sameJid(a: string | undefined, b: string): boolean {
  return parseJid(a)?.full === parseJid(b)?.full;
}
