// XEP-0261 Jingle in-band bytestreams: the transport we offer, and the block
// size both sides settle on. The data itself goes through ibb/streams.ts.
import type { IbbTransport } from './stanzas.js';

/** The IBB transport offered (XEP-0261 §2): IQ-carried data, our configured block size (at most 65535). */
export function ibbOffer(sid: string, blockSize: number): IbbTransport {
  return { kind: 'ibb', sid, blockSize: Math.max(1, Math.min(65535, blockSize)), stanza: 'iq' };
}

/** XEP-0261 §2: the responder may lower the block size in its accept, never raise it. */
export function agreedBlockSize(offered: number, accepted: IbbTransport | undefined): number {
  if (!accepted || !Number.isInteger(accepted.blockSize) || accepted.blockSize < 1) return offered;
  return Math.min(offered, accepted.blockSize);
}
