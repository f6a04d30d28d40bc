// The SOCKS5 client side of XEP-0065: connecting to a streamhost (a proxy, or
// a responder's Jingle candidate) with the session's DST.ADDR hash, and
// asking a proxy to relay (§6.3.5).
import type { Socket } from 'node:net';
import type { Element } from '@xmpp/component';
import { SocksClient } from 'socks';
import { requestFailure } from '../../xmpp/errors.js';
import { newId } from '../../xmpp/ids.js';
import { buildActivate, type StreamhostInfo } from './stanzas.js';

/** SOCKS5 CONNECT with DST.ADDR = the hash, port 0 (XEP-0065 §5.3.2). */
export async function socksConnect(host: string, port: number, dstaddr: string, timeoutMs: number): Promise<Socket> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host, port, type: 5 },
    command: 'connect',
    destination: { host: dstaddr, port: 0 },
    timeout: timeoutMs,
    set_tcp_nodelay: true,
  });
  return socket;
}

class ProxyError extends Error {
  override name = 'ProxyError';
}

export interface ProxySession {
  proxy: StreamhostInfo;
  /** DST.ADDR: SHA1(sid + initiator full JID + target full JID) */
  hash: string;
  sid: string;
  /** the initiator's full JID, `from` of the activation */
  from: string;
  target: string;
  timeoutMs: number;
  request: (iq: Element, timeoutMs: number) => Promise<Element>;
  /** gets the socket as soon as it is connected, before the activation (to close it on shutdown) */
  track?: (socket: Socket) => void;
}

/** Connects to the proxy and has it activate the session; the socket is destroyed when either step fails. */
export async function connectProxy(o: ProxySession): Promise<Socket> {
  let socket: Socket;
  try {
    socket = await socksConnect(o.proxy.host, o.proxy.port, o.hash, o.timeoutMs);
  } catch (err) {
    throw new ProxyError(`cannot reach proxy ${o.proxy.jid}: ${(err as Error).message}`);
  }
  o.track?.(socket);
  try {
    await o.request(
      buildActivate({ id: newId(), from: o.from, proxy: o.proxy.jid, sid: o.sid, target: o.target }),
      o.timeoutMs,
    );
  } catch (err) {
    socket.destroy();
    throw new ProxyError(`proxy ${o.proxy.jid} refused activation: ${requestFailure(err)}`);
  }
  return socket;
}
