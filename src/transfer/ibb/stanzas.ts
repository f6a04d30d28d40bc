// XEP-0047 in-band bytestreams, the stanzas a sender sends: open, IQ-carried
// data, close. Pure.
import { xml, type Element } from '@xmpp/component';
import { NS } from '../../xmpp/namespaces.js';

/** XEP-0047 §2.2: seq is a 16-bit counter that wraps to 0 after 65535. */
export function nextSeq(seq: number): number {
  return (seq + 1) & 0xffff;
}

export function buildOpen(o: { id: string; from: string; to: string; sid: string; blockSize: number }): Element {
  return xml(
    'iq',
    { type: 'set', id: o.id, from: o.from, to: o.to },
    xml('open', { xmlns: NS.IBB, sid: o.sid, 'block-size': String(o.blockSize), stanza: 'iq' }),
  );
}

export function buildData(o: {
  id: string;
  from: string;
  to: string;
  sid: string;
  seq: number;
  data: string;
}): Element {
  return xml(
    'iq',
    { type: 'set', id: o.id, from: o.from, to: o.to },
    xml('data', { xmlns: NS.IBB, sid: o.sid, seq: String(o.seq) }, o.data),
  );
}

export function buildClose(o: { id: string; from: string; to: string; sid: string }): Element {
  return xml('iq', { type: 'set', id: o.id, from: o.from, to: o.to }, xml('close', { xmlns: NS.IBB, sid: o.sid }));
}

/** The smallest block size XEP-0047 §2.1 suggests; offered again when a receiver refuses a larger one. */
export const FALLBACK_BLOCK_SIZE = 4096;
