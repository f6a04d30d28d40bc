// XEP-0261 Jingle in-band bytestreams: the transport we offer in a
// transport-replace, the block size both sides settle on, and the data
// itself through the component's XEP-0047 IbbSender. A receiver's early
// IBB <close/> ends the matching sender (the router's IBB close handler is
// shared with SI: ours is tried first, then the one that was there).
import type { Element } from '@xmpp/component';
import type { Jid, Target } from '../../xmpp/addresses.js';
import { errorElement } from '../../xmpp/errors.js';
import { NS } from '../../xmpp/namespaces.js';
import type { IqHandler, IqRouter } from '../../xmpp/router.js';
import { FALLBACK_BLOCK_SIZE, IbbSender, type IbbSendOptions } from '../ibb.js';
import type { IbbTransport } from './jingle.js';

/** The IBB transport offered (XEP-0261 §2): IQ-carried data, our configured block size (at most 65535). */
export function ibbOffer(sid: string, blockSize: number): IbbTransport {
  return { kind: 'ibb', sid, blockSize: Math.max(1, Math.min(65535, blockSize)), stanza: 'iq' };
}

/** XEP-0261 §2: the responder may lower the block size in its accept, never raise it. */
export function agreedBlockSize(offered: number, accepted: IbbTransport | undefined): number {
  if (!accepted || !Number.isInteger(accepted.blockSize) || accepted.blockSize < 1) return offered;
  return Math.min(offered, accepted.blockSize);
}

/** Jingle IBB senders by "<receiver full JID> <ibb sid>", for the receiver's <close/>. */
export class IbbSenders {
  private readonly senders = new Map<string, IbbSender>();

  /** Hooks into the router's IBB close: a close for one of ours aborts it; others go to the previous handler. */
  constructor(router: IqRouter) {
    const previous: IqHandler | undefined = router.handler('set', NS.IBB, 'close');
    router.on('set', NS.IBB, 'close', (iq: Element, payload: Element, from: Jid, target: Target) => {
      const sender = this.senders.get(`${from.full} ${payload.attrs.sid ?? ''}`);
      if (sender) {
        sender.abort('receiver closed the in-band stream early');
        return true;
      }
      return previous ? previous(iq, payload, from, target) : errorElement('cancel', 'item-not-found');
    });
  }

  get size(): number {
    return this.senders.size;
  }

  /** Sends the file; resolves with the bytes acknowledged, rejects with IbbError. */
  async send(o: IbbSendOptions, toFull: string): Promise<number> {
    const sender = new IbbSender(o);
    const key = `${toFull} ${o.sid}`;
    this.senders.set(key, sender);
    try {
      return await sender.send();
    } finally {
      this.senders.delete(key);
    }
  }

  abortAll(reason: string): void {
    for (const s of this.senders.values()) s.abort(reason);
  }

  abort(toFull: string, sid: string, reason: string): void {
    this.senders.get(`${toFull} ${sid}`)?.abort(reason);
  }
}

export { FALLBACK_BLOCK_SIZE };
