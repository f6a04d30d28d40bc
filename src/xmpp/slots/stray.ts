// Answers for transfers this instance never started. After a slot takeover
// or a give-back, a user's answers reach another instance than the one that
// made the offer: an SI accept or decline, a bytestreams result, IBB
// acknowledgements or a close, a Jingle session-accept, each with an id or
// sid this instance never sent. They must not vanish: the caller tells the
// user (and offers the report again where the project is known). Pure; the
// clock is given.
import type { Element } from '@xmpp/component';
import { conditionOf } from '../errors.js';
import { NS } from '../namespaces.js';

export interface Stray {
  /** the user's full JID */
  user: string;
  /** the project, when the answer went to a project JID */
  project: string | undefined;
  /** what the user's client answered */
  what: 'si-accept' | 'bytestreams' | 'ack' | 'refusal' | 'ibb-close' | 'jingle-accept' | 'jingle-end' | 'jingle';
  /** the user wanted the file: offer it again */
  wanted: boolean;
}

export interface StrayOptions {
  /** ids and sids this instance sent are remembered this long (default 30 min) */
  rememberMs?: number;
  /** at most this many remembered (default 50000; the oldest go first) */
  maxRemembered?: number;
  /** one notice per user and project in this long (default 60 s) */
  noticeEveryMs?: number;
  /** the project of a JID of ours (its local part), or undefined for the domain or a foreign JID */
  projectOf: (jid: string | undefined) => string | undefined;
}

export class StrayAnswers {
  private readonly known = new Map<string, number>();
  private readonly noticed = new Map<string, number>();

  constructor(
    private readonly opts: StrayOptions,
    private readonly now: () => number,
  ) {}

  /** An IQ this instance sends: its id and the sids it names are ours. */
  sent(iq: Element): void {
    const t = this.now();
    if (iq.attrs.id) this.remember(iq.attrs.id, t);
    for (const c of iq.getChildElements()) {
      const sid = c.name === 'si' ? c.attrs.id : c.attrs.sid;
      if (sid) this.remember(sid, t);
    }
  }

  private remember(key: string, t: number): void {
    this.known.delete(key);
    this.known.set(key, t);
    const max = this.opts.maxRemembered ?? 50000;
    for (const [k, at] of this.known) {
      if (this.known.size <= max && t - at <= (this.opts.rememberMs ?? 1_800_000)) break;
      this.known.delete(k);
    }
  }

  private knows(key: string | undefined): boolean {
    return key !== undefined && this.known.has(key);
  }

  /**
   * An IQ result or error that no pending request of ours took (the
   * library's caller matched none): a stray when it answers a project JID or
   * the domain with an id this instance never sent.
   */
  answer(iq: Element): Stray | undefined {
    const type = iq.attrs.type;
    if ((type !== 'result' && type !== 'error') || this.knows(iq.attrs.id)) return undefined;
    const payload = iq.getChildElements().find((c) => c.name !== 'error');
    let what: Stray['what'];
    if (type === 'error') {
      // a decline (XEP-0095 §3.2: forbidden), or any refusal of an offer or a block
      what = 'refusal';
      if (!conditionOf(iq.getChild('error'))) return undefined;
    } else if (payload?.name === 'si' && payload.attrs.xmlns === NS.SI) what = 'si-accept';
    else if (payload?.name === 'query' && payload.attrs.xmlns === NS.BYTESTREAMS) what = 'bytestreams';
    else if (!payload && iq.attrs.id?.startsWith('xr-'))
      what = 'ack'; // IBB data or Jingle acknowledgement, ids like ours
    else return undefined;
    return this.notice(iq, what, what !== 'refusal');
  }

  /**
   * An IQ set this instance answered with item-not-found (IBB and Jingle
   * answer so for a sid they do not know): a stray when we never sent that sid.
   */
  query(iq: Element, reply: Element | true | undefined): Stray | undefined {
    if (iq.attrs.type !== 'set' || reply === true || reply === undefined) return undefined;
    if (conditionOf(reply.name === 'error' ? reply : reply.getChild('error')) !== 'item-not-found') return undefined;
    const p = iq.getChildElements()[0];
    if (!p) return undefined;
    if (p.attrs.xmlns === NS.IBB && (p.name === 'close' || p.name === 'data')) {
      if (this.knows(p.attrs.sid)) return undefined;
      return this.notice(iq, p.name === 'close' ? 'ibb-close' : 'ack', p.name !== 'close');
    }
    if (p.attrs.xmlns === NS.JINGLE && p.name === 'jingle') {
      if (this.knows(p.attrs.sid)) return undefined;
      const action = p.attrs.action ?? '';
      if (action === 'session-accept') return this.notice(iq, 'jingle-accept', true);
      if (action === 'session-terminate') return this.notice(iq, 'jingle-end', false);
      return this.notice(iq, 'jingle', true);
    }
    return undefined;
  }

  private notice(iq: Element, what: Stray['what'], wanted: boolean): Stray | undefined {
    const user = iq.attrs.from;
    // users only: a server service (a proxy, the server's ping answer) has no local part, and the
    // answers of services reach the instance their JID is balanced to, not the one that asked
    if (!user || !/^[^@/]+@[^@/]+\/.+$/.test(user)) return undefined;
    const project = this.opts.projectOf(iq.attrs.to);
    const key = `${user.split('/')[0].toLowerCase()} ${project ?? ''}`;
    const t = this.now();
    const last = this.noticed.get(key);
    if (last !== undefined && t - last < (this.opts.noticeEveryMs ?? 60000)) return undefined;
    this.noticed.delete(key);
    this.noticed.set(key, t);
    if (this.noticed.size > 10000) this.noticed.delete(this.noticed.keys().next().value as string);
    return { user, project, what, wanted };
  }
}
