// Sends a spooled report by SI file transfer: offer (XEP-0095/0096), then
// SOCKS5 bytestreams (XEP-0065) through our own streamhost or a configured
// proxy, falling back to in-band bytestreams (XEP-0047).
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Element } from '@xmpp/component';
import { SocksClient } from 'socks';
import type { Config } from '../config.js';
import type { SpooledReport } from '../reports/source.js';
import { parseJid } from '../xmpp/addresses.js';
import type { Connection } from '../xmpp/connection.js';
import { errorElement } from '../xmpp/errors.js';
import { NS } from '../xmpp/namespaces.js';
import type { IqRouter } from '../xmpp/router.js';
import {
  buildActivate,
  buildStreamhostOffer,
  parseProxySpec,
  streamhostUsed,
  type StreamhostInfo,
} from './bytestreams.js';
import {
  DeliveryError,
  offerRefusal,
  sourceFailure,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRequest,
  type Method,
} from './delivery.js';
import { IbbError, IbbSender } from './ibb.js';
import { buildOffer, chosenMethod } from './si.js';
import { dstAddr } from './socks5.js';
import type { Streamhost } from './streamhost.js';

export const TRANSFER_FEATURES = [NS.SI, NS.SI_FILE, NS.BYTESTREAMS, NS.IBB];

export interface SiDeliveryDeps {
  connection: Pick<Connection, 'request' | 'send'>;
  streamhost: Streamhost | undefined;
  config: Config['transfer'];
  router: IqRouter;
}

const newId = () => 'xr-' + randomBytes(9).toString('base64url');

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

/** Rejects every wait of one delivery when the server connection drops. */
class Interruption {
  readonly promise: Promise<never>;
  private fire!: (e: Error) => void;
  fired = false;
  constructor() {
    this.promise = new Promise<never>((_r, reject) => (this.fire = reject));
    this.promise.catch(() => {});
  }
  reason: 'interrupted' | 'cancelled' = 'interrupted';
  readonly sid = 'xr' + randomBytes(12).toString('hex');
  trigger(reason: 'interrupted' | 'cancelled' = 'interrupted'): void {
    if (this.fired) return;
    this.fired = true;
    this.reason = reason;
    this.fire(
      new DeliveryError(
        reason,
        reason === 'cancelled' ? 'cancelled by shutdown' : 'the connection to the XMPP server was lost',
      ),
    );
  }
  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.promise]);
  }
}

export class SiDelivery implements Delivery {
  private readonly running = new Set<Interruption>();
  // Active IBB senders by "<receiver full JID> <sid>", so a receiver's <close/> can end one.
  private readonly ibbSenders = new Map<string, IbbSender>();
  private readonly proxies: StreamhostInfo[];

  constructor(private readonly deps: SiDeliveryDeps) {
    this.proxies = deps.config.externalProxies.map(parseProxySpec);
    deps.router.on('set', NS.IBB, 'close', (_iq, payload, from) => {
      const key = `${from.full} ${payload.attrs.sid ?? ''}`;
      const sender = this.ibbSenders.get(key);
      if (!sender) return errorElement('cancel', 'item-not-found');
      sender.abort('receiver closed the in-band stream early');
      return true;
    });
    // We only send files; an IBB stream opened towards us is refused (XEP-0047 §2.2).
    deps.router.on('set', NS.IBB, 'open', () => errorElement('cancel', 'not-acceptable'));
  }

  /** The server connection dropped: in-band transfers and pending negotiations end now. */
  connectionLost(): void {
    for (const r of this.running) r.trigger();
    for (const sender of this.ibbSenders.values()) sender.abort('the connection to the XMPP server was lost');
  }

  private methods(): Method[] {
    const canS5b = this.deps.streamhost !== undefined || this.proxies.length > 0;
    return this.deps.config.methods.filter((m) => m !== 's5b' || canS5b);
  }

  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const run = new Interruption();
    this.running.add(run);
    const onAbort = () => {
      run.trigger('cancelled');
      this.ibbSenders.get(`${req.to} ${run.sid}`)?.abort('cancelled by shutdown');
    };
    req.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.negotiate(req, run);
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      this.running.delete(run);
    }
  }

  private async negotiate(req: DeliveryRequest, run: Interruption): Promise<DeliveryOutcome> {
    const { report, to, from } = req;
    const sid = run.sid;
    const log = req.log.child({ sid });
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
    log.info({ bytes: report.size, methods: offered }, 'file offered');
    let answer: Element;
    try {
      answer = await run.race(this.deps.connection.request(offer, this.deps.config.offerTimeoutMs));
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      throw offerRefusal(err, log, 'offer', new DeliveryError('offer-timeout', 'offer not answered in time'));
    }
    if (!sameJid(answer.attrs.from, to)) throw new DeliveryError('failed', 'the answer came from another address');
    const method = chosenMethod(answer, offered);
    if (!method) {
      log.warn('offer accepted without a method we offered');
      throw new DeliveryError('unsupported', 'no common stream method');
    }
    log.info({ method }, 'offer accepted');
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
          throw new DeliveryError(err.sent > 0 ? 'lost' : 'failed', err.message, err.sent, 's5b');
        }
        log.info({ method: 's5b', err: err.message }, 'direct connection failed; falling back to in-band');
      }
    }
    const bytes = await this.sendIbb(req, sid, log, run);
    log.info({ method: 'ibb', bytes, ms: Date.now() - started }, 'delivered');
    return { kind: 'delivered', method: 'ibb', bytes };
  }

  private async sendS5b(
    req: DeliveryRequest,
    sid: string,
    log: DeliveryRequest['log'],
    run: Interruption,
  ): Promise<number> {
    const { to, from, report } = req;
    const cfg = this.deps.config;
    const hash = dstAddr(sid, from, to);
    const hosts: StreamhostInfo[] = [];
    const own = this.deps.streamhost;
    // Our streamhost is offered under the initiator's own JID: to the target
    // it is a direct connection, so no <activate/> is needed (XEP-0065 §5).
    const expectation = own?.expect(hash, cfg.connectTimeoutMs);
    if (own) hosts.push({ jid: from, host: own.host, port: own.port });
    hosts.push(...this.proxies);
    let used: string | undefined;
    try {
      const result = await run.race(
        this.deps.connection.request(buildStreamhostOffer({ id: newId(), from, to, sid, hosts }), cfg.connectTimeoutMs),
      );
      used = streamhostUsed(result);
    } catch (err) {
      expectation?.cancel();
      if (err instanceof DeliveryError) throw err;
      const condition = (err as { condition?: string }).condition;
      throw new S5bFailed(
        condition ? `receiver could not connect (${condition})` : `receiver did not connect: ${(err as Error).message}`,
        true,
      );
    }
    let socket: Socket;
    if (own && used === from) {
      try {
        // The target connects before it answers, so the socket is normally here already.
        socket = await expectation!.socket;
      } catch (err) {
        throw new S5bFailed(`receiver named our streamhost but never connected: ${(err as Error).message}`, true);
      }
    } else {
      expectation?.cancel();
      const proxy = this.proxies.find((p) => p.jid === used);
      if (!proxy) throw new S5bFailed(`receiver chose an unknown streamhost ${used ?? '(none)'}`, true);
      socket = await this.connectProxy(proxy, hash, { sid, from, to });
    }
    log.info({ method: 's5b', streamhost: used }, 'bytestream connected');
    // A shutdown past its grace period cuts the stream; the server connection dropping does not (TCP is ours).
    const cut = () => {
      if (run.reason === 'cancelled') socket.destroy(new Error('cancelled by shutdown'));
    };
    run.promise.catch(cut);
    try {
      return await this.pump(socket, report);
    } catch (err) {
      if (run.fired && run.reason === 'cancelled')
        throw new DeliveryError('cancelled', 'cancelled by shutdown', (err as S5bFailed).sent ?? 0, 's5b');
      throw err;
    }
  }

  private async connectProxy(
    proxy: StreamhostInfo,
    hash: string,
    o: { sid: string; from: string; to: string },
  ): Promise<Socket> {
    let socket: Socket;
    try {
      ({ socket } = await SocksClient.createConnection({
        proxy: { host: proxy.host, port: proxy.port, type: 5 },
        command: 'connect',
        destination: { host: hash, port: 0 },
        timeout: this.deps.config.connectTimeoutMs,
      }));
    } catch (err) {
      throw new S5bFailed(`cannot reach proxy ${proxy.jid}: ${(err as Error).message}`, true);
    }
    try {
      await this.deps.connection.request(
        buildActivate({ id: newId(), from: o.from, proxy: proxy.jid, sid: o.sid, target: o.to }),
        this.deps.config.connectTimeoutMs,
      );
    } catch (err) {
      socket.destroy();
      throw new S5bFailed(`proxy ${proxy.jid} refused activation: ${(err as Error).message}`, true);
    }
    return socket;
  }

  // S5B transfers being pumped now: their number sets the read size (see pump()).
  private pumping = 0;

  /** Streams the file into the socket with back-pressure; done when the receiver closed cleanly after the last byte. */
  private async pump(socket: Socket, report: SpooledReport): Promise<number> {
    // Two reusable buffers per transfer: one is read into while the socket
    // takes the other. 1 MiB reads are cheapest for one fast transfer, but
    // many at once share a 4 MiB budget, down to 64 KiB each (bench: 200 ×
    // 8 MiB at once reached 409 MB RSS with 1 MiB reads each). Reusing the
    // buffers leaves no per-chunk garbage: a new 1 MiB buffer per read kept
    // the collector busy for much of a large transfer (bench: 256 MiB in
    // ~330 ms instead of ~140 ms).
    const { size } = report;
    this.pumping++;
    const readSize = Math.max(64 << 10, Math.min(1 << 20, 2 ** Math.floor(Math.log2((4 << 20) / this.pumping))));
    const stallMs = this.deps.config.stallTimeoutMs;
    let sent = 0;
    let writing = 0; // writes the socket has not taken yet
    let stall: NodeJS.Timeout | undefined;
    const armStall = () => {
      clearTimeout(stall);
      stall = setTimeout(() => {
        // Waiting for the intranet is not the receiver's stall (the download has its own idle timeout).
        if (writing === 0 && sent < size) return armStall();
        socket.destroy(new Error(`no progress for ${stallMs} ms`));
      }, stallMs);
    };
    const closed = new Promise<boolean>((resolve) => socket.once('close', (hadError) => resolve(hadError)));
    socket.resume();
    socket.on('data', () => {}); // the target has nothing to say; drain whatever it sends
    socket.on('error', () => {}); // shows in the write callbacks and in 'close'
    armStall();
    let failure: Error | undefined;
    try {
      const reader = await report.open();
      try {
        const slots = [0, 1].map(() => ({
          buf: Buffer.allocUnsafe(Math.max(1, Math.min(readSize, size))),
          written: Promise.resolve(),
        }));
        let pos = 0;
        for (let i = 0; pos < size; i ^= 1) {
          const slot = slots[i];
          await slot.written; // this buffer's previous contents are with the kernel
          const bytesRead = await reader.read(slot.buf, 0, Math.min(slot.buf.length, size - pos), pos);
          if (bytesRead === 0) break; // shorter than offered: judged below
          pos += bytesRead;
          writing++;
          slot.written = new Promise<void>((resolve, reject) =>
            socket.write(slot.buf.subarray(0, bytesRead), (err) => {
              writing--;
              if (err) return reject(err);
              sent += bytesRead;
              armStall();
              resolve();
            }),
          );
          slot.written.catch(() => {}); // awaited later; not unhandled meanwhile
        }
        await Promise.all(slots.map((s) => s.written));
      } finally {
        await reader.close();
      }
      if (!socket.destroyed && !socket.writableEnded) socket.end();
    } catch (err) {
      failure = err as Error;
    }
    try {
      if (failure) throw failure;
      // Success means every byte left our buffers and the receiver then
      // closed cleanly (a reset means it did not read them all). libpurple
      // closes as soon as it has `size` bytes, which can beat our own end().
      armStall();
      const hadError = await closed;
      if (hadError || sent !== size || socket.writableLength > 0)
        throw new Error(hadError ? 'connection reset' : `closed after ${sent} of ${size} bytes`);
      return sent;
    } catch (err) {
      // destroy, not end: the receiver must not take a cut stream for a whole file
      socket.destroy();
      throw sourceFailure(err, sent, 's5b') ?? new S5bFailed(`connection lost: ${(err as Error).message}`, false, sent);
    } finally {
      clearTimeout(stall);
      this.pumping--;
    }
  }

  private async sendIbb(
    req: DeliveryRequest,
    sid: string,
    log: DeliveryRequest['log'],
    run: Interruption,
  ): Promise<number> {
    const cfg = this.deps.config;
    const sender = new IbbSender({
      from: req.from,
      to: req.to,
      sid,
      report: req.report,
      blockSize: cfg.ibb.blockSize,
      window: cfg.ibb.window,
      ackTimeoutMs: cfg.stallTimeoutMs,
      request: (iq, t) => this.deps.connection.request(iq, t),
      newId,
    });
    const key = `${req.to} ${sid}`;
    this.ibbSenders.set(key, sender);
    try {
      return await sender.send();
    } catch (err) {
      const sent = err instanceof IbbError ? err.acked : 0;
      log.warn({ method: 'ibb', err: (err as Error).message, bytes: sent }, 'transfer failed');
      const broke = sourceFailure(err, sent, 'ibb');
      if (broke) throw broke;
      if (run.fired) throw new DeliveryError(run.reason, (err as Error).message, sent, 'ibb');
      throw new DeliveryError(sent > 0 ? 'lost' : 'failed', (err as Error).message, sent, 'ibb');
    } finally {
      this.ibbSenders.delete(key);
    }
  }
}

function sameJid(a: string | undefined, b: string): boolean {
  return parseJid(a)?.full === parseJid(b)?.full;
}
