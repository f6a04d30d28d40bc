// The Jingle session state machine, initiator side (we only send files):
// which action the responder may send in which state, the answer each gets
// (XEP-0166 §10: out-of-order, unknown-session, tie-break, unsupported-info),
// and an event queue the delivery waits on, every wait with a timeout.
//
//   pending ──session-accept──► active ──session-terminate──► ended
//      └────────────────session-terminate───────────────────────┘
//   plus a transport sub-state: s5b, or (after our transport-replace and the
//   responder's transport-accept) ibb; and the S5B candidate exchange.
import type { Element } from '@xmpp/component';
import { errorElement } from '../../xmpp/errors.js';
import type { Jid } from '../../xmpp/addresses.js';
import { parseJid } from '../../xmpp/addresses.js';
import type { IqReply } from '../../xmpp/router.js';
import {
  JingleParseError,
  contentTransportElement,
  jingleErrorOf,
  parseJingle,
  parseS5bInfo,
  type Jingle,
  type Reason,
  type S5bCandidate,
  type S5bInfo,
  type Transport,
} from './stanzas.js';
import { NS } from '../../xmpp/namespaces.js';

export type SessionState = 'pending' | 'active' | 'ended';

export type SessionEvent =
  | { kind: 'session-accept'; jingle: Jingle }
  | { kind: 'session-terminate'; reason: Reason }
  | { kind: 's5b'; info: S5bInfo; candidate?: S5bCandidate }
  | { kind: 'transport-accept'; transport: Transport }
  | { kind: 'transport-reject' }
  | { kind: 'transport-replace'; transport: Element | undefined }
  | { kind: 'content-add'; content: Element | undefined }
  | { kind: 'content-remove'; reason?: Reason }
  | { kind: 'received' };

/** What an incoming action gets: an empty result (and maybe an event), or an error. */
export type Verdict = { ok: true; event?: SessionEvent } | { ok: false; error: Element };

/** A wait that did not end the way it was meant to. */
export class SessionEnded extends Error {
  override name = 'SessionEnded';
  constructor(readonly reason: Reason) {
    super(`the receiver ended the session (${reason.condition}${reason.text ? `: ${reason.text}` : ''})`);
  }
}

export class SessionTimeout extends Error {
  override name = 'SessionTimeout';
}

const ok = (event?: SessionEvent): Verdict => (event ? { ok: true, event } : { ok: true });
const fail = (error: Element): Verdict => ({ ok: false, error });
const badRequest = (text: string): Verdict => fail(errorElement('modify', 'bad-request', text));
const outOfOrder = (text: string): Verdict => fail(jingleErrorOf('out-of-order', text));

export interface SessionOptions {
  sid: string;
  /** our full JID: the project's, every stanza's `from` and the `initiator` */
  initiator: string;
  /** the receiver's full JID */
  responder: string;
  contentName: string;
  /** the transport we offered in session-initiate */
  transport: { kind: 's5b'; sid: string; candidates: readonly S5bCandidate[] } | { kind: 'ibb'; sid: string };
}

interface Waiter {
  pick: (e: SessionEvent) => boolean;
  resolve: (e: SessionEvent) => void;
  reject: (err: Error) => void;
  wantsTerminate: boolean;
}

export class JingleSession {
  readonly sid: string;
  readonly initiator: string;
  readonly responder: string;
  readonly contentName: string;
  private _state: SessionState = 'pending';
  /** the transport in use */
  private _transport: { kind: 's5b' | 'ibb'; sid: string };
  /** a transport-replace we sent, until transport-accept/-reject */
  private replacing: { kind: 'ibb' | 's5b'; sid: string } | undefined;
  private readonly ours: readonly S5bCandidate[];
  /** the responder sent candidate-used or candidate-error */
  private responderReported = false;
  /** the cid of the responder's proxy candidate we wait to see activated */
  private awaitingActivation: string | undefined;
  /** a proxy candidate was nominated, so proxy-error may come */
  private proxyNominated = false;
  private endReason: Reason | undefined;
  private readonly queue: SessionEvent[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly observers = new Set<(e: SessionEvent) => void>();
  private failure: Error | undefined;
  /** set by the first event that ends the session (session-terminate, content-remove) */
  private ending: Reason | undefined;
  /** Requests the responder made that need an answer of ours (transport-replace, content-add); not queued. */
  onRequest: ((e: SessionEvent) => void) | undefined;

  constructor(o: SessionOptions) {
    this.sid = o.sid;
    this.initiator = o.initiator;
    this.responder = o.responder;
    this.contentName = o.contentName;
    this._transport = { kind: o.transport.kind, sid: o.transport.sid };
    this.ours = o.transport.kind === 's5b' ? o.transport.candidates : [];
  }

  get state(): SessionState {
    return this._state;
  }

  get transport(): { kind: 's5b' | 'ibb'; sid: string } {
    return this._transport;
  }

  /** Our transport-replace that awaits its answer, if any. */
  get pendingReplace(): { kind: 'ibb' | 's5b'; sid: string } | undefined {
    return this.replacing;
  }

  /** We sent a transport-replace (XEP-0260 §3 fallback): its transport-accept or -reject is now expected. */
  replaceTransport(t: { kind: 'ibb' | 's5b'; sid: string }): void {
    this.replacing = t;
  }

  /** One of our proxy candidates was nominated: the responder may answer with proxy-error (XEP-0260 §2.4). */
  nominateProxy(): void {
    this.proxyNominated = true;
  }

  /** The responder's proxy candidate was nominated: it activates it and says so (XEP-0260 §2.4). */
  awaitActivation(cid: string): void {
    this.proxyNominated = true;
    this.awaitingActivation = cid;
  }

  /**
   * Judges one action from the responder and updates the state. Pure but
   * for the state change: the event, if any, is for the caller to emit().
   */
  handle(j: Jingle, raw: Element): Verdict {
    if (this._state === 'ended') return fail(jingleErrorOf('unknown-session', 'the session has ended'));
    switch (j.action) {
      case 'session-initiate':
        // The same sid from the other side: a collision (XEP-0166 §7.2.10).
        return fail(jingleErrorOf('tie-break', 'this session already exists'));
      case 'session-accept': {
        if (this._state !== 'pending') return outOfOrder('the session was already accepted');
        const c = j.contents.find((x) => x.name === this.contentName);
        if (!c) return badRequest(`no content named ${this.contentName}`);
        if (c.transport && (c.transport.kind !== this.transport.kind || c.transport.sid !== this.transport.sid))
          return badRequest('session-accept with another transport');
        this._state = 'active';
        return ok({ kind: 'session-accept', jingle: j });
      }
      case 'session-info': {
        if (!j.info) return ok(); // a ping (XEP-0166 §7.2.9)
        if (j.info.attrs.xmlns === NS.JINGLE_FT && j.info.name === 'received') return ok({ kind: 'received' });
        if (j.info.attrs.xmlns === NS.JINGLE_FT && j.info.name === 'checksum') return ok();
        return fail(jingleErrorOf('unsupported-info', `session-info <${j.info.name}/> not understood`));
      }
      case 'session-terminate': {
        const reason = j.reason ?? { condition: 'general-error', text: 'no reason given' };
        this._state = 'ended';
        this.endReason = reason;
        return ok({ kind: 'session-terminate', reason });
      }
      case 'transport-info':
        return this.transportInfo(raw);
      case 'transport-accept':
      case 'transport-reject': {
        if (!this.replacing) return outOfOrder(`${j.action} without a transport-replace`);
        const c = j.contents.find((x) => x.name === this.contentName);
        if (!c) return badRequest(`no content named ${this.contentName}`);
        if (j.action === 'transport-reject') {
          this.replacing = undefined;
          return ok({ kind: 'transport-reject' });
        }
        const t = c.transport;
        if (!t || t.kind !== this.replacing.kind || t.sid !== this.replacing.sid)
          return badRequest('transport-accept for another transport');
        this._transport = this.replacing;
        this.replacing = undefined;
        return ok({ kind: 'transport-accept', transport: t });
      }
      case 'transport-replace':
        // Both sides replacing at once: a tie-break (XEP-0166 §7.2.15); else we answer with transport-reject.
        if (this.replacing) return fail(jingleErrorOf('tie-break', 'a transport-replace of ours is pending'));
        return ok({ kind: 'transport-replace', transport: contentTransportElement(raw, this.contentName) });
      case 'content-accept':
      case 'content-reject':
        return outOfOrder(`${j.action} without a content-add`);
      case 'content-add':
        return ok({ kind: 'content-add', content: raw.getChild('content') });
      case 'content-modify':
        return fail(errorElement('cancel', 'not-acceptable', 'the file offer cannot be modified'));
      case 'content-remove': {
        if (!j.contents.some((x) => x.name === this.contentName))
          return badRequest(`no content named ${this.contentName}`);
        return ok(j.reason ? { kind: 'content-remove', reason: j.reason } : { kind: 'content-remove' });
      }
      case 'description-info':
        return ok(); // informational (XEP-0166 §7.2.7); nothing in it for a sender
      case 'security-info':
        return fail(errorElement('cancel', 'feature-not-implemented', 'no security precondition was negotiated'));
    }
  }

  private transportInfo(raw: Element): Verdict {
    const t = contentTransportElement(raw, this.contentName);
    if (!t) return badRequest(`no transport in content ${this.contentName}`);
    const ns = t.attrs.xmlns;
    if (ns === NS.JINGLE_IBB)
      return fail(errorElement('cancel', 'feature-not-implemented', 'in-band transports have no transport-info'));
    if (ns !== NS.JINGLE_S5B) return badRequest(`unknown transport ${ns ?? ''}`);
    if (this.transport.kind !== 's5b' || t.attrs.sid !== this.transport.sid)
      return outOfOrder('that SOCKS5 transport is not in use');
    let info: S5bInfo | undefined;
    try {
      info = parseS5bInfo(t);
    } catch (err) {
      return badRequest((err as Error).message);
    }
    if (!info) return ok(); // candidates only: nothing XEP-0260 does after the session-accept
    switch (info.kind) {
      case 'candidate-used': {
        if (this.responderReported) return outOfOrder('candidate-used or candidate-error was already sent');
        const cid = info.cid;
        const candidate = this.ours.find((c) => c.cid === cid);
        if (!candidate) return badRequest(`unknown candidate ${cid}`);
        this.responderReported = true;
        return ok({ kind: 's5b', info, candidate });
      }
      case 'candidate-error':
        if (this.responderReported) return outOfOrder('candidate-used or candidate-error was already sent');
        this.responderReported = true;
        return ok({ kind: 's5b', info });
      case 'activated':
        if (this.awaitingActivation !== info.cid) return outOfOrder('no activation of that candidate was expected');
        this.awaitingActivation = undefined;
        return ok({ kind: 's5b', info });
      case 'proxy-error':
        if (!this.proxyNominated) return outOfOrder('no proxy candidate was nominated');
        this.awaitingActivation = undefined;
        return ok({ kind: 's5b', info });
    }
  }

  // ---------------------------------------------------------------- events

  /**
   * Queues an event for wait(). A session-terminate (or the removal of our
   * only content) also fails every wait that did not ask for it.
   */
  emit(e: SessionEvent): void {
    for (const o of [...this.observers]) o(e);
    if (e.kind === 'transport-replace' || e.kind === 'content-add') {
      this.onRequest?.(e);
      return;
    }
    const end = endOf(e);
    if (end) this.ending ??= end;
    let taken = false;
    for (const w of this.waiters) {
      if (w.pick(e)) {
        this.waiters.delete(w);
        w.resolve(e);
        taken = true;
        break;
      }
    }
    if (end) {
      for (const w of [...this.waiters]) {
        if (w.wantsTerminate) continue;
        this.waiters.delete(w);
        w.reject(new SessionEnded(end));
      }
    }
    if (!taken) this.queue.push(e);
  }

  /** Sees every event as it comes, without taking it from the queue; returns the unsubscribe. */
  observe(fn: (e: SessionEvent) => void): () => void {
    this.observers.add(fn);
    return () => this.observers.delete(fn);
  }

  /** Ends every wait now with this error (shutdown, lost server connection). */
  abort(err: Error): void {
    this.failure ??= err;
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      w.reject(err);
    }
  }

  /**
   * Waits for the first event `pick` accepts (queued or future), at most
   * timeoutMs. A session-terminate ends it early with SessionEnded unless
   * `pick` accepts session-terminate itself.
   */
  wait(pick: (e: SessionEvent) => boolean, timeoutMs: number, what: string): Promise<SessionEvent> {
    if (this.failure) return Promise.reject(this.failure);
    const i = this.queue.findIndex(pick);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
    const wantsTerminate = pick({ kind: 'session-terminate', reason: { condition: 'success' } });
    if (this.ending && !wantsTerminate) return Promise.reject(new SessionEnded(this.ending));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new SessionTimeout(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const w: Waiter = {
        pick,
        wantsTerminate,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.waiters.add(w);
    });
  }

  /** A queued event without waiting (or undefined). */
  take(pick: (e: SessionEvent) => boolean): SessionEvent | undefined {
    const i = this.queue.findIndex(pick);
    return i >= 0 ? this.queue.splice(i, 1)[0] : undefined;
  }

  /** Why the responder ended the session, once it did. */
  get terminatedBy(): Reason | undefined {
    return this._state === 'ended' ? this.endReason : undefined;
  }
}

/** The end a session event means: a terminate, or the removal of our only content (XEP-0166 §7.2.6). */
function endOf(e: SessionEvent): Reason | undefined {
  if (e.kind === 'session-terminate') return e.reason;
  if (e.kind === 'content-remove')
    return {
      condition: e.reason?.condition ?? 'cancel',
      text: e.reason?.text ?? 'the receiver removed the file from the session',
    };
  return undefined;
}

/**
 * Every running session of the component, by responder and sid: routes
 * incoming <jingle/> IQs to their session (or answers unknown-session),
 * emits the events after the IQ's answer has been sent.
 */
export class JingleSessions {
  private readonly sessions = new Map<string, JingleSession>();

  constructor(private readonly defer: (fn: () => void) => void = (fn) => setImmediate(fn)) {}

  private static key(responder: string, sid: string): string {
    return `${parseJid(responder)?.full ?? responder} ${sid}`;
  }

  get size(): number {
    return this.sessions.size;
  }

  add(s: JingleSession): void {
    this.sessions.set(JingleSessions.key(s.responder, s.sid), s);
  }

  remove(s: JingleSession): void {
    const k = JingleSessions.key(s.responder, s.sid);
    if (this.sessions.get(k) === s) this.sessions.delete(k);
  }

  get(responder: string, sid: string): JingleSession | undefined {
    return this.sessions.get(JingleSessions.key(responder, sid));
  }

  all(): JingleSession[] {
    return [...this.sessions.values()];
  }

  /** The IqRouter handler for set urn:xmpp:jingle:1 jingle. */
  handle(iq: Element, payload: Element, from: Jid): IqReply {
    let j: Jingle;
    try {
      j = parseJingle(payload);
    } catch (err) {
      if (err instanceof JingleParseError) return errorElement('modify', 'bad-request', err.message);
      throw err;
    }
    const s = this.sessions.get(JingleSessions.key(from.full, j.sid));
    // A session belongs to one pair of full JIDs: from another address, or to another project, it does not exist.
    if (!s || parseJid(iq.attrs.to)?.full !== parseJid(s.initiator)?.full) {
      if (j.action === 'session-initiate')
        return errorElement('cancel', 'service-unavailable', 'this address sends files but does not take any');
      return jingleErrorOf('unknown-session', 'no such session');
    }
    const v = s.handle(j, payload);
    if (!v.ok) return v.error;
    if (v.event) {
      const e = v.event;
      this.defer(() => s.emit(e));
    }
    if (s.state === 'ended') this.remove(s);
    return true;
  }
}
