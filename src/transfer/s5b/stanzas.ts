// XEP-0065 SOCKS5 bytestreams, the IQ side: the streamhost offer, the
// receiver's choice, and proxy activation. Pure.
import { xml, type Element } from '@xmpp/component';
import { NS } from '../../xmpp/namespaces.js';

export interface StreamhostInfo {
  jid: string;
  host: string;
  port: number;
}

export function buildStreamhostOffer(o: {
  id: string;
  from: string;
  to: string;
  sid: string;
  hosts: readonly StreamhostInfo[];
}): Element {
  return xml(
    'iq',
    { type: 'set', id: o.id, from: o.from, to: o.to },
    xml(
      'query',
      { xmlns: NS.BYTESTREAMS, sid: o.sid, mode: 'tcp' },
      ...o.hosts.map((h) => xml('streamhost', { jid: h.jid, host: h.host, port: String(h.port) })),
    ),
  );
}

/** XEP-0065 §5.3.3: the jid of <streamhost-used/> in the target's result. */
export function streamhostUsed(result: Element): string | undefined {
  return result.getChild('query', NS.BYTESTREAMS)?.getChild('streamhost-used')?.attrs.jid;
}

/** XEP-0065 §6.3.5: ask a proxy to start relaying. */
export function buildActivate(o: { id: string; from: string; proxy: string; sid: string; target: string }): Element {
  return xml(
    'iq',
    { type: 'set', id: o.id, from: o.from, to: o.proxy },
    xml('query', { xmlns: NS.BYTESTREAMS, sid: o.sid }, xml('activate', {}, o.target)),
  );
}

/** Parses "jid@host:port" from the config into a streamhost. */
export function parseProxySpec(spec: string): StreamhostInfo {
  const m = /^([^@\s]+)@([^\s:]+):(\d{1,5})$/.exec(spec);
  if (!m) throw new Error(`bad proxy spec ${spec}`);
  return { jid: m[1], host: m[2], port: Number(m[3]) };
}
