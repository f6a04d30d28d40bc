// The component's one registry of open in-band streams (SI and Jingle alike),
// keyed by the receiver's full JID and the stream's sid, and the IQ routes of
// XEP-0047 a sender answers: a receiver's <close/> ends its stream (§2.3);
// an <open/> towards us is refused, since we only send (§2.2).
import type { Element } from '@xmpp/component';
import { errorElement } from '../../xmpp/errors.js';
import { NS } from '../../xmpp/namespaces.js';
import type { ComponentModule, IqReply, IqRoute } from '../../xmpp/router.js';
import { IbbSender, type IbbSendOptions } from './sender.js';

export type IqRequest = (iq: Element, timeoutMs: number) => Promise<Element>;

export class IbbStreams implements ComponentModule {
  readonly features = [NS.IBB];
  readonly routes: readonly IqRoute[] = [
    { type: 'set', ns: NS.IBB, name: 'close', handler: (_iq, payload, from) => this.closed(from.full, payload) },
    { type: 'set', ns: NS.IBB, name: 'open', handler: () => errorElement('cancel', 'not-acceptable') },
  ];
  private readonly senders = new Map<string, IbbSender>();

  constructor(private readonly request: IqRequest) {}

  get size(): number {
    return this.senders.size;
  }

  /** Sends the report in-band; resolves with the bytes acknowledged, rejects with IbbError. */
  async send(o: Omit<IbbSendOptions, 'request'>): Promise<number> {
    const key = `${o.to} ${o.sid}`;
    if (this.senders.has(key)) throw new Error(`in-band stream ${o.sid} to ${o.to} is already open`);
    const sender = new IbbSender({ ...o, request: this.request });
    this.senders.set(key, sender);
    try {
      return await sender.send();
    } finally {
      this.senders.delete(key);
    }
  }

  abort(to: string, sid: string, reason: string): void {
    this.senders.get(`${to} ${sid}`)?.abort(reason);
  }

  /** Every stream ends now (the server connection dropped). */
  abortAll(reason: string): void {
    for (const s of this.senders.values()) s.abort(reason);
  }

  private closed(from: string, close: Element): IqReply {
    const sender = this.senders.get(`${from} ${close.attrs.sid ?? ''}`);
    if (!sender) return errorElement('cancel', 'item-not-found');
    sender.abort('receiver closed the in-band stream early');
    return true;
  }
}
