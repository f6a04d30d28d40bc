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
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { isNamedClient, type ClientInfo } from '../../xmpp/caps.js';
import { parseJid } from '../../xmpp/addresses.js';
import { requestFailure } from '../../xmpp/errors.js';
import { newId, newSid } from '../../xmpp/ids.js';
import { NS } from '../../xmpp/namespaces.js';
import type { ComponentModule, IqRoute } from '../../xmpp/router.js';
import {
  DeliveryError,
  offerRefusal,
  offerSent,
  sourceFailure,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRequest,
  type FailureReason,
  type Method,
} from '../delivery.js';
import { IbbError } from '../ibb/sender.js';
import { Interruption, stopReasonOf, type StopReason } from '../interruption.js';
import { remember, streamhostKey } from '../s5b/memory.js';
import { connectProxy } from '../s5b/proxy.js';
import { StreamError } from '../s5b/send.js';
import { agreedBlockSize, ibbOffer } from './ibb-transport.js';
import type { NetworkPolicy } from '../../networks.js';
import { dstAddrs, inPreferredOrder, nominate, ourCandidates, tryPeerCandidates } from './s5b-transport.js';
import { JingleSession, JingleSessions, SessionEnded, SessionTimeout, type SessionEvent } from './session.js';
import {
  buildChecksumInfo,
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
} from './stanzas.js';
import type { StreamDeps } from '../streams.js';

export interface JingleOptions {
  /** bytestreams offered: S5B candidates and/or the in-band transport */
  methods: readonly Method[];
  /** how long the user has to accept */
  offerTimeoutMs: number;
  /** how long each step of the transport negotiation may take */
  connectTimeoutMs: number;
  /** how long the responder may take to acknowledge session-initiate (at once, before its user decides) */
  ackTimeoutMs: number;
  /** a stream that takes no bytes (or in-band acks) for this long ends */
  stallTimeoutMs: number;
  ibb: { blockSize: number; window: number };
  /** networks where the responder's own candidates may be tried */
  peerNetworks: NetworkPolicy;
  /** disco#info identity names whose Jingle IBB cannot be trusted with a file */
  noIbbClients: readonly string[];
}

/** The one content of our sessions (XEP-0234's examples call it 'a-file-offer'). */
const CONTENT_NAME = 'a-file-offer';
const CONTENT = { name: CONTENT_NAME, creator: 'initiator' as const };
/** After the last byte and a clean close, how long a receiver's session-terminate may still take. */
const CLOSE_GRACE_MS = 3000;

/** Whether a client's Jingle IBB may be trusted with a file (Dino acks in-band data without saving it). */
export function trustsIbb(client: ClientInfo | undefined, noIbbClients: readonly string[]): boolean {
  return !isNamedClient(client, noIbbClients);
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
  readonly sid = newSid('xj');
  readonly stop = new Interruption();
  session: JingleSession | undefined;
  live = false; // the responder knows the session (session-initiate acknowledged, not terminated)
  readonly sockets = new Set<Socket>();
  cancelExpectation: () => void = () => {};
  constructor() {
    this.stop.onTrigger((_why, err) => {
      this.session?.abort(err);
      if (this.stop.cuts) for (const s of this.sockets) s.destroy(new Error(err.message));
    });
  }
  get stopped(): StopReason | undefined {
    return this.stop.stopped;
  }
  race<T>(p: Promise<T>): Promise<T> {
    return this.stop.race(p);
  }
}

export class JingleDelivery implements Delivery, ComponentModule {
  /** XEP-0166 §11: an entity that speaks Jingle says so, with its application and transports. */
  readonly features = [NS.JINGLE, NS.JINGLE_FT, NS.JINGLE_S5B, NS.JINGLE_IBB];
  readonly routes: readonly IqRoute[] = [
    {
      type: 'set',
      ns: NS.JINGLE,
      name: 'jingle',
      handler: (iq, payload, from) => this.sessions.handle(iq, payload, from),
    },
  ];
  readonly sessions = new JingleSessions();
  private readonly running = new Set<Run>();

  constructor(
    private readonly deps: StreamDeps,
    private readonly o: JingleOptions,
  ) {}

  /** The server connection dropped: pending negotiations end now (the in-band streams end with IbbStreams). */
  connectionLost(): void {
    for (const r of this.running) r.stop.trigger('interrupted');
  }

  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const run = new Run();
    this.running.add(run);
    const log = req.log.child({ sid: run.sid, protocol: 'jingle' });
    const onAbort = () => run.stop.trigger(stopReasonOf(req.signal!));
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
      await this.deps.request(buildSessionTerminate(env(), reason), 10000);
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'session-terminate not acknowledged');
    }
  }

  private async negotiate(req: DeliveryRequest, run: Run, log: Logger, env: () => Envelope): Promise<DeliveryOutcome> {
    const { report, to, from } = req;
    const cfg = this.o;
    const features = req.client?.features;
    // Without disco#info we assume S5B (XEP-0260 is what every Jingle FT client has) but not IBB.
    const responderS5b = features ? features.has(NS.JINGLE_S5B) : true;
    const responderIbb = features?.has(NS.JINGLE_IBB) ?? false;
    const ibbTrusted = trustsIbb(req.client, cfg.noIbbClients);
    const allowIbb = cfg.methods.includes('ibb') && responderIbb;
    const tsid = newSid('xs', 8);
    const defaults =
      cfg.methods.includes('s5b') && responderS5b
        ? ourCandidates({
            from,
            streamhost: this.deps.streamhost,
            proxies: this.deps.proxies.list,
            newCid: () => newSid('c', 6),
          })
        : [];
    // A responder tries our candidates by priority: the one that worked for this user last time gets the top one.
    const user = parseJid(to)?.bare ?? to;
    const key = (c: S5bCandidate) => streamhostKey(c, from);
    const candidates = inPreferredOrder(defaults, this.deps.memory.order(user, defaults, key));
    const learn = (seen: { worked?: string; failed?: readonly string[] }) =>
      remember(this.deps.memory, log, user, defaults.map(key), seen);
    const s5bPossible =
      cfg.methods.includes('s5b') && responderS5b && (candidates.length > 0 || cfg.peerNetworks.allowsAnything);

    let transport: S5bTransport | IbbTransport;
    if (s5bPossible) {
      transport = { kind: 's5b', sid: tsid, dstaddr: dstAddrs(tsid, from, to).ours, mode: 'tcp', candidates };
    } else if (allowIbb && ibbTrusted) {
      transport = ibbOffer(tsid, cfg.ibb.blockSize);
    } else if (allowIbb) {
      throw new DeliveryError({
        reason: 'failed',
        message: "no direct connection is possible and the client's in-band transfer is not trusted",
        linkWhy: 'no-direct-connection',
      });
    } else {
      throw new DeliveryError({ reason: 'unsupported', message: 'no Jingle transport in common' });
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
      // XEP-0234 §8.1: the hash follows in a session-info <checksum/> once the bytes are out, so the
      // offer goes out at once, as SI's does, and the stream starts while the report still arrives.
      hashes: [],
      hashUsed: ['sha-256'],
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
      const asked = this.deps.request(
        buildSessionInitiate(env(), { name: CONTENT_NAME, file, transport }),
        cfg.ackTimeoutMs,
      );
      offerSent(req);
      await run.race(asked);
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      // A client acknowledges the offer at once (XEP-0166 §6.3), before its user decides: silence means
      // its Jingle is broken (Gajim 1.7 fails inside its own code), and a link is the way on.
      const noAnswer = new DeliveryError({
        reason: 'failed',
        message: 'your chat client did not answer the file offer',
        linkWhy: 'no-answer',
      });
      throw new Stop(undefined, offerRefusal(err, log, 'session-initiate', noAnswer));
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
          new DeliveryError({ reason: 'offer-timeout', message: 'offer not accepted in time' }),
        );
      }
      throw err;
    }
    log.info({ transport: session.transport.kind }, 'offer accepted');
    const started = Date.now();

    if (session.transport.kind === 's5b') {
      const r = await this.negotiateS5b({
        req,
        run,
        log,
        env,
        session,
        accept,
        tsid,
        candidates,
        expectation,
        learn,
        key,
      });
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
          new DeliveryError({ reason: 'failed', message: `no direct connection: ${r.failed}`, method: 's5b' }),
        );
      }
      if (!ibbTrusted) {
        // Dino's Jingle IBB acknowledges every block and saves nothing: never call that delivered.
        throw new Stop(
          { condition: 'connectivity-error', text: r.failed },
          new DeliveryError({
            reason: 'failed',
            message: `no direct connection (${r.failed}), and in-band transfer to this client cannot be confirmed`,
            method: 's5b',
            linkWhy: 'no-direct-connection',
          }),
        );
      }
      const ibbT = ibbOffer(newSid('xi', 8), cfg.ibb.blockSize);
      session.replaceTransport({ kind: 'ibb', sid: ibbT.sid });
      try {
        await run.race(this.deps.request(buildTransportReplace(env(), CONTENT, ibbT), cfg.connectTimeoutMs));
      } catch (err) {
        if (err instanceof DeliveryError) throw err;
        throw new Stop(
          { condition: 'connectivity-error' },
          new DeliveryError({
            reason: 'failed',
            message: `transport-replace refused: ${requestFailure(err)}`,
            method: 's5b',
          }),
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
            new DeliveryError({ reason: 'failed', message: 'in-band fallback not answered in time', method: 's5b' }),
          );
        throw err;
      }
      if (answer.kind !== 'transport-accept')
        throw new Stop(
          { condition: 'connectivity-error' },
          new DeliveryError({ reason: 'failed', message: 'the receiver refused the in-band fallback', method: 's5b' }),
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
    /** notes in the streamhost memory what this exchange showed about our candidates */
    learn: (seen: { worked?: string; failed?: readonly string[] }) => void;
    key: (c: S5bCandidate) => string;
  }): Promise<{ socket: Socket; candidate: S5bCandidate; side: 'ours' | 'theirs' } | { failed: string }> {
    const { req, run, log, env, session, tsid } = o;
    const cfg = this.o;
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
      policy: this.o.peerNetworks,
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
      await run.race(this.deps.request(buildTransportInfo(env(), CONTENT, tsid, ours), cfg.connectTimeoutMs));
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      log.warn({ err: requestFailure(err) }, `${ours.kind} not acknowledged`);
    }
    await run.race(report);
    if (responderSilent) {
      mine?.socket.destroy();
      return { failed: 'the receiver did not tell whether it could connect' };
    }
    // XEP-0260 §2.3: candidate-used names the candidate of ours the responder connected to; candidate-error
    // says it reached none of them.
    if (responderUsed) o.learn({ worked: o.key(responderUsed) });
    else if (o.candidates.length > 0) o.learn({ failed: o.candidates.map(o.key) });
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
        session.nominateProxy();
        try {
          const socket = await run.race(
            connectProxy({
              proxy: c,
              hash: hashes.ours,
              sid: tsid,
              from: req.from,
              target: req.to,
              timeoutMs: cfg.connectTimeoutMs,
              request: this.deps.request,
              track: (s) => run.sockets.add(s),
            }),
          );
          await run.race(
            this.deps.request(
              buildTransportInfo(env(), CONTENT, tsid, { kind: 'activated', cid: c.cid }),
              cfg.connectTimeoutMs,
            ),
          );
          return { socket, candidate: c, side: 'ours' };
        } catch (err) {
          if (err instanceof DeliveryError) throw err;
          await this.deps
            .request(buildTransportInfo(env(), CONTENT, tsid, { kind: 'proxy-error' }), cfg.connectTimeoutMs)
            .catch(() => {});
          o.learn({ failed: [o.key(c)] });
          return { failed: `proxy ${c.jid} did not work: ${requestFailure(err)}` };
        }
      }
      case 'theirs': {
        o.expectation?.cancel();
        const c = nom.candidate;
        if (c.type === 'proxy') {
          // The responder activates its proxy and says so (XEP-0260 §2.4).
          session.awaitActivation(c.cid);
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
    const stallMs = this.o.stallTimeoutMs;
    // The receiver giving up mid-way ends the stream at once.
    let endedBy: Reason | undefined;
    const unobserve = session.observe((e) => {
      if (e.kind === 'session-terminate' && e.reason.condition !== 'success') {
        endedBy = e.reason;
        socket.destroy(new Error(`receiver ended the session (${e.reason.condition})`));
      }
    });
    const lost = (why: string, sent: number) =>
      new Stop(
        endedBy ? undefined : { condition: 'failed-transport', text: why },
        new DeliveryError({ reason: sent > 0 ? 'lost' : 'failed', message: why, sent, method: 's5b' }),
      );
    // A report that can let its bytes go (a download, Report.share) is read once and hashed as it is
    // sent: keeping it on disk to hash afterwards cost more than the hash (bench item 1, HTTP source).
    // A folder report is hashed from its file after the last byte, off the transfer's path.
    const inline = req.report.share ? createHash('sha256') : undefined;
    // All bytes are out: the receiver's session-terminate, <received/> or clean close says it has them.
    const confirm = async (closed: Promise<boolean>): Promise<void> => {
      await this.sendChecksum(req, session, log, inline?.digest('hex'));
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
        if (first.err instanceof SessionEnded) throw lost(first.err.message, size);
        if (run.stop.cuts || !(first.err instanceof SessionTimeout || first.err instanceof DeliveryError))
          throw first.err;
        // The server link dropped (or no word within the stall time): a clean close still tells.
        const hadError = await withTimeout(closed, stallMs, 'close').catch(() => true);
        if (hadError) throw lost('the receiver did not confirm the file', size);
        log.info({ confirmedBy: 'clean close' }, 'receiver closed the stream after the last byte');
        return;
      }
      if ('hadError' in first) {
        if (first.hadError) throw lost('connection reset after the last byte', size);
        // Closed cleanly: a session-terminate normally follows at once.
        const e = await withTimeout(confirmation, CLOSE_GRACE_MS, 'session-terminate').catch((err: unknown) =>
          err instanceof SessionEnded ? err : undefined,
        );
        if (e instanceof SessionEnded) throw lost(e.message, size);
        log.info(
          { confirmedBy: e ? (e.kind === 'received' ? 'received' : 'session-terminate') : 'clean close' },
          'receiver confirmed',
        );
        return;
      }
      const e = first.e;
      if (e.kind === 'session-terminate' && e.reason.condition !== 'success')
        throw lost(`the receiver ended the session (${e.reason.condition})`, size);
      log.info({ confirmedBy: e.kind === 'received' ? 'received' : 'session-terminate' }, 'receiver confirmed');
    };
    try {
      return await this.deps.s5b.send(socket, req.report, confirm, { once: inline !== undefined, hash: inline });
    } catch (err) {
      const sent = err instanceof StreamError ? err.sent : 0;
      const cause = (err as Error).cause;
      if (run.stop.cuts) throw run.stop.failure(sent, 's5b');
      if (cause instanceof Stop || cause instanceof DeliveryError) throw cause;
      const broke = sourceFailure(cause, sent, 's5b');
      if (broke) throw new Stop(endedBy ? undefined : { condition: 'failed-application', text: broke.message }, broke);
      throw lost((err as Error).message, sent);
    } finally {
      unobserve();
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
    let acked = 0;
    run.stop.onTrigger((_why, err) => {
      if (run.stop.cuts) this.deps.ibb.abort(req.to, ibbSid, err.message);
    });
    const unobserve = session.observe((e) => {
      if (e.kind === 'session-terminate' && e.reason.condition !== 'success')
        this.deps.ibb.abort(req.to, ibbSid, `receiver ended the session (${e.reason.condition})`);
    });
    try {
      acked = await this.deps.ibb.send({
        from: req.from,
        to: req.to,
        sid: ibbSid,
        report: req.report,
        blockSize,
        window: this.o.ibb.window,
        ackTimeoutMs: this.o.stallTimeoutMs,
        onProgress: (n) => (acked = n),
      });
    } catch (err) {
      const sent = err instanceof IbbError ? err.acked : acked;
      // Our own stop first: a shutdown also ends the download, which is not the intranet's fault.
      if (run.stopped) throw run.stop.failure(sent, 'ibb', (err as Error).message);
      const ended = session.terminatedBy;
      const broke = sourceFailure((err as Error).cause, sent, 'ibb');
      if (broke) throw new Stop(ended ? undefined : { condition: 'failed-application', text: broke.message }, broke);
      const error = new DeliveryError({
        reason: sent > 0 ? 'lost' : 'failed',
        message: (err as Error).message,
        sent,
        method: 'ibb',
      });
      throw new Stop(ended ? undefined : { condition: 'failed-transport', text: (err as Error).message }, error);
    } finally {
      unobserve();
    }
    await this.sendChecksum(req, session, log);
    // Every block acknowledged: a receiver's terminate or <received/> normally follows; a failure reason would undo it.
    const e = await session
      .wait((x) => x.kind === 'received' || x.kind === 'session-terminate', CLOSE_GRACE_MS, 'confirmation')
      .catch((err: unknown) => (err instanceof SessionEnded ? err : undefined));
    if (e instanceof SessionEnded || (e?.kind === 'session-terminate' && e.reason.condition !== 'success')) {
      const why =
        e instanceof SessionEnded
          ? e.message
          : `the receiver ended the session (${e?.kind === 'session-terminate' ? e.reason.condition : ''})`;
      throw new Stop(undefined, new DeliveryError({ reason: 'lost', message: why, sent: acked, method: 'ibb' }));
    }
    if (session.state !== 'ended') await this.terminate(env, { condition: 'success' }, log);
    run.live = false;
    log.info({ method: 'ibb', bytes: acked, ms: Date.now() - started, confirmedBy: e ? e.kind : 'acks' }, 'delivered');
    return { kind: 'delivered', method: 'ibb', bytes: acked };
  }

  /**
   * XEP-0234 §8.2: the file's hash, announced by <hash-used/> in the offer,
   * after the last byte (`known` when hashed as it was sent, else from the
   * report on local disk); not sent when the receiver already ended the session.
   */
  private async sendChecksum(req: DeliveryRequest, session: JingleSession, log: Logger, known?: string): Promise<void> {
    try {
      const sha256 = known ?? (await req.report.complete()).sha256;
      if (session.state === 'ended') return;
      const env: Envelope = { id: newId(), from: req.from, to: req.to, sid: session.sid, initiator: req.from };
      await this.deps.request(
        buildChecksumInfo(env, CONTENT, [{ algo: 'sha-256', value: hexToBase64(sha256) }]),
        this.o.connectTimeoutMs,
      );
    } catch (err) {
      log.debug({ err: requestFailure(err) }, 'checksum not acknowledged');
    }
  }

  /** What the responder asked for that we do not do: answered after its IQ was acknowledged. */
  private async answerRequest(e: SessionEvent, env: () => Envelope, log: Logger): Promise<void> {
    try {
      if (e.kind === 'transport-replace')
        await this.deps.request(buildTransportReject(env(), CONTENT, e.transport), 10000);
      else if (e.kind === 'content-add') await this.deps.request(buildContentReject(env(), e.content), 10000);
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
  if (run.stopped) return new Stop(undefined, run.stop.failure(0, undefined, (err as Error).message));
  return new Stop(
    { condition: 'general-error' },
    new DeliveryError({ reason: 'failed', message: (err as Error).message }),
  );
}

/** The receiver's session-terminate, before any data flowed, in the user's terms. */
function endedError(r: Reason): DeliveryError {
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
  return new DeliveryError({ reason, message: text });
}
