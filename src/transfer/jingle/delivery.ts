// Sends a spooled report by Jingle file transfer (XEP-0234) to clients that
// have no SI (Dino, Conversations): session-initiate from the project's full
// JID with the file (name, size, date, media-type, description, SHA-256),
// SOCKS5 (XEP-0260) with the built-in streamhost as our direct candidate and
// the configured proxies, the responder's candidates tried where allowed,
// then transport-replace to IBB (XEP-0261) when no candidate works and the
// client's in-band transfer can be trusted; a session-terminate with the
// right reason on every path; a bounded wait at every step.
//
// Delivered means the receiver said so (session-terminate <success/> or
// session-info <received/>) after the last byte, or, for S5B, closed the
// stream cleanly after it; for IBB every block was acknowledged by a client
// not listed in transfer.jingle.noIbbClients.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Element } from '@xmpp/component';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { reportStream, type ReportReader } from '../../reports/source.js';
import type { ClientInfo } from '../../xmpp/caps.js';
import type { Connection } from '../../xmpp/connection.js';
import type { IqRouter } from '../../xmpp/router.js';
import { buildActivate, parseProxySpec, type StreamhostInfo } from '../bytestreams.js';
import {
  DeliveryError,
  offerRefusal,
  sourceFailure,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRequest,
  type FailureReason,
} from '../delivery.js';
import { IbbError } from '../ibb.js';
import type { Streamhost } from '../streamhost.js';
import { IbbSenders, agreedBlockSize, ibbOffer } from './ibb-transport.js';
import {
  NS_JINGLE,
  NS_JINGLE_IBB,
  NS_JINGLE_S5B,
  buildContentReject,
  buildSessionInitiate,
  buildSessionTerminate,
  buildTransportInfo,
  buildTransportReject,
  buildTransportReplace,
  hexToBase64,
  type Envelope,
  type FileDesc,
  type IbbTransport,
  type Jingle,
  type Reason,
  type S5bCandidate,
  type S5bInfo,
  type S5bTransport,
} from './jingle.js';
import { NetworkPolicy, dstAddrs, nominate, ourCandidates, socksConnect, tryPeerCandidates } from './s5b-transport.js';
import { JingleSession, JingleSessions, SessionEnded, SessionTimeout, type SessionEvent } from './session.js';

export interface JingleDeliveryDeps {
  connection: Pick<Connection, 'request' | 'send'>;
  streamhost: Streamhost | undefined;
  config: Config['transfer'];
  router: IqRouter;
}

/** The one content of our sessions (XEP-0234's examples call it 'a-file-offer'). */
export const CONTENT_NAME = 'a-file-offer';
const CONTENT = { name: CONTENT_NAME, creator: 'initiator' as const };
/** After the last byte and a clean close, how long a receiver's session-terminate may still take. */
const CLOSE_GRACE_MS = 3000;

const hex = (n: number) => randomBytes(n).toString('hex');
const newId = () => 'xj-' + randomBytes(9).toString('base64url');

/** Whether a client's Jingle IBB may be trusted with a file (Dino acks in-band data without saving it). */
export function trustsIbb(client: ClientInfo | undefined, noIbbClients: readonly string[]): boolean {
  const bad = new Set(noIbbClients.map((n) => n.trim().toLowerCase()));
  return !(client?.identities ?? []).some((i) => bad.has(i.name.trim().toLowerCase()));
}

/** How a session ended from our side: the reason we send, and what the user hears. */
class Stop extends Error {
  constructor(
    readonly reason: Reason | undefined, // undefined: send no session-terminate
    readonly error: DeliveryError,
  ) {
    super(error.message);
  }
}

/** One delivery: its session, the sockets to close, and the interruption that ends every wait. */
class Run {
  readonly sid = 'xj' + hex(12);
  session: JingleSession | undefined;
  live = false; // the responder knows the session (session-initiate acknowledged, not terminated)
  readonly sockets = new Set<Socket>();
  cancelExpectation: () => void = () => {};
  ibbSid: string | undefined; // the in-band stream, once one runs
  stopped: 'interrupted' | 'cancelled' | undefined;
  private fire!: (e: Error) => void;
  readonly stop: Promise<never> = new Promise<never>((_r, reject) => (this.fire = reject));
  constructor() {
    this.stop.catch(() => {});
  }
  trigger(why: 'interrupted' | 'cancelled'): void {
    if (this.stopped) return;
    this.stopped = why;
    const err = new DeliveryError(
      why,
      why === 'cancelled' ? 'cancelled by shutdown' : 'the connection to the XMPP server was lost',
    );
    this.fire(err);
    this.session?.abort(err);
    if (why === 'cancelled') for (const s of this.sockets) s.destroy(new Error('cancelled by shutdown'));
  }
  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.stop]);
  }
}

export class JingleDelivery implements Delivery {
  readonly sessions = new JingleSessions();
  private readonly ibb: IbbSenders;
  private readonly proxies: StreamhostInfo[];
  private readonly policy: NetworkPolicy;
  private readonly running = new Set<Run>();

  constructor(private readonly deps: JingleDeliveryDeps) {
    this.proxies = deps.config.externalProxies.map(parseProxySpec);
    this.policy = new NetworkPolicy(deps.config.jingle.peerNetworks);
    deps.router.on('set', NS_JINGLE, 'jingle', (iq, payload, from) => this.sessions.handle(iq, payload, from));
    this.ibb = new IbbSenders(deps.router);
  }

  /** The server connection dropped: pending negotiations and in-band transfers end now. */
  connectionLost(): void {
    for (const r of this.running) r.trigger('interrupted');
    this.ibb.abortAll('the connection to the XMPP server was lost');
  }

  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const run = new Run();
    this.running.add(run);
    const log = req.log.child({ sid: run.sid, protocol: 'jingle' });
    const onAbort = () => {
      run.trigger('cancelled');
      if (run.ibbSid) this.ibb.abort(req.to, run.ibbSid, 'cancelled by shutdown');
    };
    req.signal?.addEventListener('abort', onAbort, { once: true });
    const env = (): Envelope => ({ id: newId(), from: req.from, to: req.to, sid: run.sid, initiator: req.from });
    try {
      return await this.negotiate(req, run, log, env);
    } catch (err) {
      const stop = toStop(err, run);
      // Nothing to terminate when the responder already did (Dino ends a session whose candidates all failed itself).
      const open = run.live && run.session?.state !== 'ended';
      if (stop.reason && open && !run.stopped) await this.terminate(env, stop.reason, log);
      else if (run.stopped === 'cancelled' && open)
        await this.terminate(env, { condition: 'cancel', text: 'the report service is shutting down' }, log);
      const e = stop.error;
      const level = e.reason === 'failed' || e.reason === 'lost' ? 'warn' : 'info';
      log[level](
        {
          method: e.method,
          err: e.message,
          bytes: e.sent,
          reason: stop.reason?.condition ?? run.session?.terminatedBy?.condition,
        },
        'transfer failed',
      );
      throw e;
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      this.running.delete(run);
      run.cancelExpectation();
      for (const s of run.sockets) s.destroy();
      if (run.session) {
        this.sessions.remove(run.session);
        run.session.abort(new Error('the delivery is over')); // no wait (and no timer) outlives it
      }
    }
  }

  private async terminate(env: () => Envelope, reason: Reason, log: Logger): Promise<void> {
    try {
      await this.deps.connection.request(buildSessionTerminate(env(), reason), 10000);
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'session-terminate not acknowledged');
    }
  }

  private async negotiate(req: DeliveryRequest, run: Run, log: Logger, env: () => Envelope): Promise<DeliveryOutcome> {
    const { report, to, from } = req;
    const cfg = this.deps.config;
    const features = req.client?.features;
    // Without disco#info we assume S5B (XEP-0260 is what every Jingle FT client has) but not IBB.
    const responderS5b = features ? features.has(NS_JINGLE_S5B) : true;
    const responderIbb = features?.has(NS_JINGLE_IBB) ?? false;
    const ibbTrusted = trustsIbb(req.client, cfg.jingle.noIbbClients);
    const allowIbb = cfg.methods.includes('ibb') && responderIbb;
    const tsid = 'xs' + hex(8);
    const candidates =
      cfg.methods.includes('s5b') && responderS5b
        ? ourCandidates({ from, streamhost: this.deps.streamhost, proxies: this.proxies, newCid: () => 'c' + hex(6) })
        : [];
    const s5bPossible =
      cfg.methods.includes('s5b') && responderS5b && (candidates.length > 0 || this.policy.allowsAnything);

    let transport: S5bTransport | IbbTransport;
    if (s5bPossible) {
      transport = { kind: 's5b', sid: tsid, dstaddr: dstAddrs(tsid, from, to).ours, mode: 'tcp', candidates };
    } else if (allowIbb && ibbTrusted) {
      transport = ibbOffer(tsid, cfg.ibb.blockSize);
    } else if (allowIbb) {
      throw new DeliveryError(
        'failed',
        "no direct connection is possible and the client's in-band transfer is not trusted",
        0,
        undefined,
        'no-direct-connection',
      );
    } else {
      throw new DeliveryError('unsupported', 'no Jingle transport in common');
    }

    // XEP-0234 §8: the hash lets the receiver check the file; it waits for the whole report,
    // before the session exists and our streamhost waits for the receiver.
    let sha256: string;
    try {
      ({ sha256 } = await report.complete());
    } catch (err) {
      throw sourceFailure(err, 0, transport.kind) ?? err;
    }

    const session = new JingleSession({
      sid: run.sid,
      initiator: from,
      responder: to,
      contentName: CONTENT_NAME,
      transport: transport.kind === 's5b' ? { kind: 's5b', sid: tsid, candidates } : { kind: 'ibb', sid: tsid },
    });
    run.session = session;
    session.onRequest = (e) => void this.answerRequest(e, env, log);
    this.sessions.add(session);

    // Our streamhost learns the hash before the offer goes out: Dino connects before its session-accept.
    const own = this.deps.streamhost;
    const ownCandidate = candidates.find((c) => c.jid === from);
    const expectation =
      transport.kind === 's5b' && own && ownCandidate
        ? own.expect(transport.dstaddr!, cfg.offerTimeoutMs + cfg.connectTimeoutMs)
        : undefined;
    if (expectation) {
      run.cancelExpectation = () => {
        expectation.cancel();
        void expectation.socket.then(
          (s) => (run.sockets.has(s) ? undefined : s.destroy()),
          () => {},
        );
      };
    }

    const file: FileDesc = {
      name: report.name,
      size: report.size,
      date: report.date,
      mediaType: report.mime,
      desc: `Status report of project ${report.project}`,
      hashes: [{ algo: 'sha-256', value: hexToBase64(sha256) }],
    };
    await req.progress?.({ kind: 'offering' });
    log.info(
      {
        bytes: report.size,
        transport: transport.kind,
        candidates: candidates.map((c) => `${c.type} ${c.host}:${c.port}`),
      },
      'file offered',
    );
    try {
      await run.race(
        this.deps.connection.request(
          buildSessionInitiate(env(), { name: CONTENT_NAME, file, transport }),
          cfg.connectTimeoutMs,
        ),
      );
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      throw new Stop(
        undefined,
        offerRefusal(err, log, 'session-initiate', new DeliveryError('failed', 'your chat client did not answer')),
      );
    }
    run.live = true;

    let accept: Jingle;
    try {
      const e = await run.race(session.wait((x) => x.kind === 'session-accept', cfg.offerTimeoutMs, 'session-accept'));
      accept = (e as Extract<SessionEvent, { kind: 'session-accept' }>).jingle;
    } catch (err) {
      if (err instanceof SessionTimeout) {
        log.info('offer not answered in time');
        throw new Stop(
          { condition: 'timeout', text: 'the file was not accepted in time' },
          new DeliveryError('offer-timeout', 'offer not accepted in time'),
        );
      }
      throw err;
    }
    log.info({ transport: session.transport.kind }, 'offer accepted');
    const started = Date.now();

    if (session.transport.kind === 's5b') {
      const r = await this.negotiateS5b({ req, run, log, env, session, accept, tsid, candidates, expectation });
      if ('socket' in r) {
        log.info(
          { method: 's5b', candidate: `${r.candidate.type} ${r.candidate.host}:${r.candidate.port}`, side: r.side },
          'bytestream connected',
        );
        const bytes = await this.pump(r.socket, req, run, session, log);
        if (session.state !== 'ended') await this.terminate(env, { condition: 'success' }, log);
        run.live = false;
        log.info({ method: 's5b', bytes, ms: Date.now() - started }, 'delivered');
        return { kind: 'delivered', method: 's5b', bytes };
      }
      log.info({ err: r.failed }, 'no direct connection');
      if (!allowIbb) {
        throw new Stop(
          { condition: 'connectivity-error', text: r.failed },
          new DeliveryError('failed', `no direct connection: ${r.failed}`, 0, 's5b'),
        );
      }
      if (!ibbTrusted) {
        // Dino's Jingle IBB acknowledges every block and saves nothing: never call that delivered.
        throw new Stop(
          { condition: 'connectivity-error', text: r.failed },
          new DeliveryError(
            'failed',
            `no direct connection (${r.failed}), and in-band transfer to this client cannot be confirmed`,
            0,
            's5b',
            'no-direct-connection',
          ),
        );
      }
      const ibbT = ibbOffer('xi' + hex(8), cfg.ibb.blockSize);
      session.replacing = { kind: 'ibb', sid: ibbT.sid };
      try {
        await run.race(this.deps.connection.request(buildTransportReplace(env(), CONTENT, ibbT), cfg.connectTimeoutMs));
      } catch (err) {
        if (err instanceof DeliveryError) throw err;
        throw new Stop(
          { condition: 'connectivity-error' },
          new DeliveryError(
            'failed',
            `transport-replace refused: ${(err as { condition?: string }).condition ?? (err as Error).message}`,
            0,
            's5b',
          ),
        );
      }
      let answer: SessionEvent;
      try {
        answer = await run.race(
          session.wait(
            (x) => x.kind === 'transport-accept' || x.kind === 'transport-reject',
            cfg.connectTimeoutMs,
            'transport-accept',
          ),
        );
      } catch (err) {
        if (err instanceof SessionTimeout)
          throw new Stop(
            { condition: 'connectivity-error', text: 'transport-replace not answered' },
            new DeliveryError('failed', 'in-band fallback not answered in time', 0, 's5b'),
          );
        throw err;
      }
      if (answer.kind !== 'transport-accept')
        throw new Stop(
          { condition: 'connectivity-error' },
          new DeliveryError('failed', 'the receiver refused the in-band fallback', 0, 's5b'),
        );
      const blockSize = agreedBlockSize(ibbT.blockSize, answer.transport.kind === 'ibb' ? answer.transport : undefined);
      log.info({ method: 'ibb', blockSize }, 'falling back to in-band');
      return this.sendIbb(req, run, session, log, env, ibbT.sid, blockSize, started);
    }
    const accepted = accept.contents.find((c) => c.name === CONTENT_NAME)?.transport;
    const blockSize = agreedBlockSize(
      transport.kind === 'ibb' ? transport.blockSize : cfg.ibb.blockSize,
      accepted?.kind === 'ibb' ? accepted : undefined,
    );
    return this.sendIbb(req, run, session, log, env, tsid, blockSize, started);
  }

  /** XEP-0260 §2.3–2.4: exchange candidate-used/candidate-error, nominate, activate a proxy if needed. */
  private async negotiateS5b(o: {
    req: DeliveryRequest;
    run: Run;
    log: Logger;
    env: () => Envelope;
    session: JingleSession;
    accept: Jingle;
    tsid: string;
    candidates: S5bCandidate[];
    expectation: { socket: Promise<Socket>; cancel: () => void } | undefined;
  }): Promise<{ socket: Socket; candidate: S5bCandidate; side: 'ours' | 'theirs' } | { failed: string }> {
    const { req, run, log, env, session, tsid } = o;
    const cfg = this.deps.config;
    const accepted = o.accept.contents.find((c) => c.name === CONTENT_NAME)?.transport;
    const t = accepted?.kind === 's5b' ? accepted : undefined;
    const theirs = t?.candidates ?? [];
    const hashes = dstAddrs(tsid, req.from, req.to, t?.dstaddr);

    // The responder's report, awaited alongside our own attempts.
    let responderUsed: S5bCandidate | null | undefined;
    let responderSilent = false;
    const report = session
      .wait(
        (e) => e.kind === 's5b' && (e.info.kind === 'candidate-used' || e.info.kind === 'candidate-error'),
        cfg.connectTimeoutMs,
        'candidate-used or candidate-error',
      )
      .then(
        (e) => {
          responderUsed = e.kind === 's5b' ? (e.candidate ?? null) : null;
        },
        (err: unknown) => {
          if (!(err instanceof SessionTimeout)) throw err;
          responderSilent = true;
          responderUsed = null;
        },
      );
    report.catch(() => {});

    const attempts = tryPeerCandidates(theirs, {
      dstaddr: hashes.theirs,
      policy: this.policy,
      timeoutMs: Math.min(cfg.connectTimeoutMs, 15000),
      stillWanted: (c) => !responderUsed || c.priority > responderUsed.priority,
      onSkip: (c, why) =>
        log.debug({ candidate: `${c.type} ${c.host}:${c.port}`, why }, 'responder candidate not used'),
    });
    // A connection that comes in after the delivery ended is closed at once.
    void attempts.then((m) => (run.stopped ? m?.socket.destroy() : undefined));
    const mine = await run.race(attempts);
    if (mine) run.sockets.add(mine.socket);
    const ours: S5bInfo = mine ? { kind: 'candidate-used', cid: mine.candidate.cid } : { kind: 'candidate-error' };
    try {
      await run.race(
        this.deps.connection.request(buildTransportInfo(env(), CONTENT, tsid, ours), cfg.connectTimeoutMs),
      );
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      log.warn(
        { err: (err as { condition?: string }).condition ?? (err as Error).message },
        `${ours.kind} not acknowledged`,
      );
    }
    await run.race(report);
    if (responderSilent) {
      mine?.socket.destroy();
      return { failed: 'the receiver did not tell whether it could connect' };
    }
    const nom = nominate(responderUsed ?? null, mine?.candidate ?? null);
    log.info(
      { responderUsed: responderUsed?.cid ?? null, initiatorUsed: mine?.candidate.cid ?? null, nominated: nom.kind },
      'candidates exchanged',
    );
    switch (nom.kind) {
      case 'none':
        return {
          failed: theirs.length
            ? 'neither side could connect to the other'
            : 'the receiver could not connect to our streamhost',
        };
      case 'ours': {
        if (mine) {
          run.sockets.delete(mine.socket);
          mine.socket.destroy();
        }
        const c = nom.candidate;
        if (c.jid === req.from && o.expectation) {
          try {
            const socket = await run.race(
              withTimeout(o.expectation.socket, cfg.connectTimeoutMs, 'connection to our streamhost'),
            );
            run.sockets.add(socket);
            return { socket, candidate: c, side: 'ours' };
          } catch (err) {
            if (err instanceof DeliveryError) throw err;
            return { failed: `the receiver named our streamhost but never connected: ${(err as Error).message}` };
          }
        }
        // One of our configured proxies: connect, activate, tell the responder (XEP-0260 §2.4).
        o.expectation?.cancel();
        session.proxyNominated = true;
        try {
          const socket = await run.race(socksConnect(c.host, c.port, hashes.ours, cfg.connectTimeoutMs));
          run.sockets.add(socket);
          await run.race(
            this.deps.connection.request(
              buildActivate({ id: newId(), from: req.from, proxy: c.jid, sid: tsid, target: req.to }),
              cfg.connectTimeoutMs,
            ),
          );
          await run.race(
            this.deps.connection.request(
              buildTransportInfo(env(), CONTENT, tsid, { kind: 'activated', cid: c.cid }),
              cfg.connectTimeoutMs,
            ),
          );
          return { socket, candidate: c, side: 'ours' };
        } catch (err) {
          if (err instanceof DeliveryError) throw err;
          await this.deps.connection
            .request(buildTransportInfo(env(), CONTENT, tsid, { kind: 'proxy-error' }), cfg.connectTimeoutMs)
            .catch(() => {});
          return {
            failed: `proxy ${c.jid} did not work: ${(err as { condition?: string }).condition ?? (err as Error).message}`,
          };
        }
      }
      case 'theirs': {
        o.expectation?.cancel();
        const c = nom.candidate;
        if (c.type === 'proxy') {
          // The responder activates its proxy and says so (XEP-0260 §2.4).
          session.proxyNominated = true;
          session.awaitingActivation = c.cid;
          try {
            const e = await run.race(
              session.wait(
                (x) => x.kind === 's5b' && (x.info.kind === 'activated' || x.info.kind === 'proxy-error'),
                cfg.connectTimeoutMs,
                'activated',
              ),
            );
            if (e.kind === 's5b' && e.info.kind === 'proxy-error')
              return { failed: `the receiver could not activate its proxy ${c.jid}` };
          } catch (err) {
            if (err instanceof SessionTimeout)
              return { failed: `the receiver's proxy ${c.jid} was not activated in time` };
            throw err;
          }
        }
        return { socket: mine!.socket, candidate: c, side: 'theirs' };
      }
    }
  }

  /** Streams the file into the bytestream; resolves with the bytes once the receiver confirmed them. */
  private async pump(
    socket: Socket,
    req: DeliveryRequest,
    run: Run,
    session: JingleSession,
    log: Logger,
  ): Promise<number> {
    const { size } = req.report;
    const stallMs = this.deps.config.stallTimeoutMs;
    // Dino closes its sending half as soon as it accepts: we must keep writing.
    socket.allowHalfOpen = true;
    let sent = 0;
    let stall: NodeJS.Timeout | undefined;
    const armStall = () => {
      clearTimeout(stall);
      stall = setTimeout(() => socket.destroy(new Error(`no progress for ${stallMs} ms`)), stallMs);
    };
    const meter = new Transform({
      transform(chunk: Buffer, _e, cb) {
        sent += chunk.length;
        armStall();
        cb(null, chunk);
      },
    });
    const closed = new Promise<boolean>((resolve) => socket.once('close', (hadError) => resolve(hadError)));
    socket.on('data', () => {}); // nothing is expected from the receiver
    socket.resume();
    // The receiver giving up mid-way ends the stream at once.
    let endedBy: Reason | undefined;
    const unobserve = session.observe((e) => {
      if (e.kind === 'session-terminate' && e.reason.condition !== 'success') {
        endedBy = e.reason;
        socket.destroy(new Error(`receiver ended the session (${e.reason.condition})`));
      }
    });
    const lost = (why: string) =>
      new Stop(
        endedBy ? undefined : { condition: 'failed-transport', text: why },
        new DeliveryError(sent > 0 ? 'lost' : 'failed', why, sent, 's5b'),
      );
    armStall();
    let reader: ReportReader | undefined;
    try {
      try {
        reader = await req.report.open();
        await pipeline(reportStream(reader, size, 1 << 20), meter, socket);
      } catch (err) {
        if (run.stopped === 'cancelled') throw new DeliveryError('cancelled', 'cancelled by shutdown', sent, 's5b');
        const broke = sourceFailure(err, sent, 's5b');
        if (broke)
          throw new Stop(endedBy ? undefined : { condition: 'failed-application', text: broke.message }, broke);
        // A receiver that closes right after the last byte can beat our own 'finish'; judged below.
        if ((err as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE' || sent !== size)
          throw lost(`connection lost: ${(err as Error).message}`);
      }
      if (sent !== size) throw lost(`stream ended after ${sent} of ${size} bytes`);
      armStall();
      // All bytes are out: now the receiver's word.
      const confirmation = session.wait(
        (e) => e.kind === 'received' || e.kind === 'session-terminate',
        stallMs,
        'confirmation',
      );
      confirmation.catch(() => {});
      const first = await Promise.race([
        confirmation.then((e) => ({ e })),
        closed.then((hadError) => ({ hadError })),
      ]).catch((err: unknown) => ({ err }));
      if ('err' in first) {
        if (first.err instanceof SessionEnded) throw lost(first.err.message);
        if (run.stopped === 'cancelled' || !(first.err instanceof SessionTimeout || first.err instanceof DeliveryError))
          throw first.err;
        // The server link dropped (or no word within the stall time): a clean close still tells.
        const hadError = await withTimeout(closed, stallMs, 'close').catch(() => true);
        if (hadError) throw lost('the receiver did not confirm the file');
        log.info({ confirmedBy: 'clean close' }, 'receiver closed the stream after the last byte');
        return sent;
      }
      if ('hadError' in first) {
        if (first.hadError) throw lost('connection reset after the last byte');
        // Closed cleanly: a session-terminate normally follows at once.
        const e = await withTimeout(confirmation, CLOSE_GRACE_MS, 'session-terminate').catch((err: unknown) =>
          err instanceof SessionEnded ? err : undefined,
        );
        if (e instanceof SessionEnded) throw lost(e.message);
        log.info(
          { confirmedBy: e ? (e.kind === 'received' ? 'received' : 'session-terminate') : 'clean close' },
          'receiver confirmed',
        );
        return sent;
      }
      const e = first.e;
      if (e.kind === 'session-terminate' && e.reason.condition !== 'success')
        throw lost(`the receiver ended the session (${e.reason.condition})`);
      log.info({ confirmedBy: e.kind === 'received' ? 'received' : 'session-terminate' }, 'receiver confirmed');
      return sent;
    } finally {
      unobserve();
      clearTimeout(stall);
      socket.destroy();
      await reader?.close();
    }
  }

  private async sendIbb(
    req: DeliveryRequest,
    run: Run,
    session: JingleSession,
    log: Logger,
    env: () => Envelope,
    ibbSid: string,
    blockSize: number,
    started: number,
  ): Promise<DeliveryOutcome> {
    const cfg = this.deps.config;
    let acked = 0;
    run.ibbSid = ibbSid;
    const unobserve = session.observe((e) => {
      if (e.kind === 'session-terminate' && e.reason.condition !== 'success')
        this.ibb.abort(req.to, ibbSid, `receiver ended the session (${e.reason.condition})`);
    });
    try {
      acked = await this.ibb.send(
        {
          from: req.from,
          to: req.to,
          sid: ibbSid,
          report: req.report,
          blockSize,
          window: cfg.ibb.window,
          ackTimeoutMs: cfg.stallTimeoutMs,
          request: (iq: Element, t: number) => this.deps.connection.request(iq, t),
          newId,
          onProgress: (n) => (acked = n),
        },
        req.to,
      );
    } catch (err) {
      const sent = err instanceof IbbError ? err.acked : acked;
      if (run.stopped) throw new DeliveryError(run.stopped, (err as Error).message, sent, 'ibb');
      const ended = session.terminatedBy;
      const broke = sourceFailure(err, sent, 'ibb');
      if (broke) throw new Stop(ended ? undefined : { condition: 'failed-application', text: broke.message }, broke);
      const error = new DeliveryError(sent > 0 ? 'lost' : 'failed', (err as Error).message, sent, 'ibb');
      throw new Stop(ended ? undefined : { condition: 'failed-transport', text: (err as Error).message }, error);
    } finally {
      unobserve();
    }
    // Every block acknowledged: a receiver's terminate or <received/> normally follows; a failure reason would undo it.
    const e = await session
      .wait((x) => x.kind === 'received' || x.kind === 'session-terminate', CLOSE_GRACE_MS, 'confirmation')
      .catch((err: unknown) => (err instanceof SessionEnded ? err : undefined));
    if (e instanceof SessionEnded || (e?.kind === 'session-terminate' && e.reason.condition !== 'success')) {
      const why =
        e instanceof SessionEnded
          ? e.message
          : `the receiver ended the session (${e?.kind === 'session-terminate' ? e.reason.condition : ''})`;
      throw new Stop(undefined, new DeliveryError('lost', why, acked, 'ibb'));
    }
    if (session.state !== 'ended') await this.terminate(env, { condition: 'success' }, log);
    run.live = false;
    log.info({ method: 'ibb', bytes: acked, ms: Date.now() - started, confirmedBy: e ? e.kind : 'acks' }, 'delivered');
    return { kind: 'delivered', method: 'ibb', bytes: acked };
  }

  /** What the responder asked for that we do not do: answered after its IQ was acknowledged. */
  private async answerRequest(e: SessionEvent, env: () => Envelope, log: Logger): Promise<void> {
    try {
      if (e.kind === 'transport-replace')
        await this.deps.connection.request(buildTransportReject(env(), CONTENT, e.transport), 10000);
      else if (e.kind === 'content-add')
        await this.deps.connection.request(buildContentReject(env(), e.content), 10000);
    } catch (err) {
      log.debug({ err: (err as Error).message, request: e.kind }, 'answer not acknowledged');
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>(
      (_r, reject) => (timer = setTimeout(() => reject(new SessionTimeout(`no ${what} within ${ms} ms`)), ms)),
    ),
  ]).finally(() => clearTimeout(timer));
}

/** Whatever ended a delivery, as a Stop: what to tell the responder and the user. */
function toStop(err: unknown, run: Run): Stop {
  if (err instanceof Stop) return err;
  if (err instanceof SessionEnded) return new Stop(undefined, endedError(err.reason));
  if (err instanceof DeliveryError) {
    if (err.reason === 'interrupted' || err.reason === 'cancelled') return new Stop(undefined, err);
    return new Stop(
      err.linkWhy || err.reason === 'unsupported' ? undefined : { condition: 'general-error', text: err.message },
      err,
    );
  }
  if (run.stopped) return new Stop(undefined, new DeliveryError(run.stopped, (err as Error).message));
  return new Stop({ condition: 'general-error' }, new DeliveryError('failed', (err as Error).message));
}

/** The receiver's session-terminate, before any data flowed, in the user's terms. */
export function endedError(r: Reason): DeliveryError {
  const why: Record<string, [FailureReason, string]> = {
    decline: ['declined', 'declined'],
    cancel: ['declined', 'cancelled by the receiver'],
    busy: ['declined', 'the receiver is busy'],
    'unsupported-applications': ['unsupported', 'the client does not take Jingle file offers'],
    'unsupported-transports': ['unsupported', 'no transport in common'],
    'failed-application': ['unsupported', 'the client could not handle the file offer'],
    'incompatible-parameters': ['unsupported', 'the client could not handle the file offer'],
    'security-error': ['unsupported', 'the client requires an encrypted transfer'],
    'connectivity-error': ['failed', 'no connection could be made'],
    'failed-transport': ['failed', 'the connection failed'],
    timeout: ['offer-timeout', 'not accepted in time'],
    expired: ['offer-timeout', 'not accepted in time'],
    gone: ['failed', 'your chat client went offline'],
  };
  const [reason, text] = why[r.condition] ?? [
    'failed',
    `the receiver ended the session (${r.condition}${r.text ? `: ${r.text}` : ''})`,
  ];
  return new DeliveryError(reason, text);
}
