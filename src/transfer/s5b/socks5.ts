// The SOCKS5 subset XEP-0065 uses (RFC 1928 without auth, CONNECT only, the
// address a domain name carrying SHA1(SID + initiator JID + target JID)),
// as pure functions over bytes.
import { createHash } from 'node:crypto';

const SOCKS_VERSION = 0x05;
export const METHOD_NO_AUTH = 0x00;
export const METHOD_NONE_ACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_DOMAIN = 0x03;

export const REPLY = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  HOST_UNREACHABLE: 0x04,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

export type Parse<T> =
  { status: 'need-more' } | { status: 'bad'; reason: string } | ({ status: 'ok'; consumed: number } & T);

/** XEP-0065 §5.3.2: DST.ADDR = hex SHA1 of SID + initiator full JID + target full JID. */
export function dstAddr(sid: string, initiator: string, target: string): string {
  return createHash('sha1')
    .update(sid + initiator + target, 'utf8')
    .digest('hex');
}

/** Client greeting: VER NMETHODS METHODS... */
export function parseGreeting(buf: Buffer): Parse<{ methods: number[] }> {
  if (buf.length < 1) return { status: 'need-more' };
  if (buf[0] !== SOCKS_VERSION) return { status: 'bad', reason: `not SOCKS5 (version byte ${buf[0]})` };
  if (buf.length < 2) return { status: 'need-more' };
  const n = buf[1];
  if (n === 0) return { status: 'bad', reason: 'no authentication methods offered' };
  if (buf.length < 2 + n) return { status: 'need-more' };
  return { status: 'ok', consumed: 2 + n, methods: [...buf.subarray(2, 2 + n)] };
}

export function greetingReply(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, method]);
}

/** Request: VER CMD RSV ATYP DST.ADDR DST.PORT; XEP-0065 allows only CONNECT to a domain name. */
export function parseConnect(buf: Buffer): Parse<{ addr: string; port: number }> {
  if (buf.length < 1) return { status: 'need-more' };
  if (buf[0] !== SOCKS_VERSION) return { status: 'bad', reason: `not SOCKS5 (version byte ${buf[0]})` };
  if (buf.length < 2) return { status: 'need-more' };
  if (buf[1] !== CMD_CONNECT) return { status: 'bad', reason: `command ${buf[1]} not supported` };
  if (buf.length < 4) return { status: 'need-more' };
  if (buf[2] !== 0x00) return { status: 'bad', reason: 'reserved byte not zero' };
  if (buf[3] !== ATYP_DOMAIN) return { status: 'bad', reason: `address type ${buf[3]} not supported` };
  if (buf.length < 5) return { status: 'need-more' };
  const len = buf[4];
  if (len === 0) return { status: 'bad', reason: 'empty address' };
  if (buf.length < 5 + len + 2) return { status: 'need-more' };
  const addr = buf.subarray(5, 5 + len).toString('latin1');
  const port = buf.readUInt16BE(5 + len);
  return { status: 'ok', consumed: 5 + len + 2, addr, port };
}

/** Reply: VER REP RSV ATYP BND.ADDR BND.PORT, echoing the domain address as XEP-0065 §5.3.3 shows. */
export function connectReply(rep: number, addr: string): Buffer {
  const a = Buffer.from(addr, 'latin1').subarray(0, 255);
  const out = Buffer.alloc(5 + a.length + 2);
  out[0] = SOCKS_VERSION;
  out[1] = rep;
  out[2] = 0;
  out[3] = ATYP_DOMAIN;
  out[4] = a.length;
  a.copy(out, 5);
  out.writeUInt16BE(0, 5 + a.length);
  return out;
}

/** The longest handshake a well-behaved client sends: greeting (2+255) plus request (5+255+2). */
export const MAX_HANDSHAKE_BYTES = 257 + 262;
