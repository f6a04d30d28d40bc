// Which addresses the built-in streamhost offers (XEP-0065 §5.3.1 lets an
// initiator list several <streamhost/>s; the target tries them in document
// order, libpurple 15 s each when packets are dropped, so the order matters).
// Pure: the caller passes the host's interfaces (os.networkInterfaces()).
import { isIP } from 'node:net';

export interface InterfaceAddress {
  address: string;
  family: string | number; // 'IPv4' | 'IPv6' (Node 18+), 4 | 6 (some Node 18 builds)
  internal: boolean;
}

export interface AdvertisedHosts {
  /** What the streamhost offers, best first: advertiseHost, then the host's own addresses. */
  hosts: string[];
  /** True when only loopback can be offered: users on other hosts cannot reach the streamhost. */
  loopbackOnly: boolean;
}

export function isWildcard(bindHost: string): boolean {
  return bindHost === '' || bindHost === '0.0.0.0' || bindHost === '::';
}

function v4Octets(a: string): number[] {
  return a.split('.').map(Number);
}

export function isLoopback(a: string): boolean {
  const f = isIP(a);
  if (f === 4) return v4Octets(a)[0] === 127;
  if (f === 6) return a === '::1' || /^::ffff:127\./i.test(a);
  return a.toLowerCase() === 'localhost';
}

function isLinkLocal(a: string): boolean {
  const f = isIP(a);
  if (f === 4) {
    const [x, y] = v4Octets(a);
    return x === 169 && y === 254;
  }
  return f === 6 && /^fe[89ab]/i.test(a);
}

/** RFC 1918 and shared (RFC 6598) IPv4 space: reachable from the LAN, usually not from outside. */
function isPrivateV4(a: string): boolean {
  const [x, y] = v4Octets(a);
  return (
    x === 10 || (x === 172 && y >= 16 && y <= 31) || (x === 192 && y === 168) || (x === 100 && y >= 64 && y <= 127)
  );
}

/** Unique local IPv6 (fc00::/7), the IPv6 counterpart of private space. */
function isUla(a: string): boolean {
  return /^f[cd]/i.test(a);
}

function familyOf(i: InterfaceAddress): 4 | 6 {
  return i.family === 'IPv6' || i.family === 6 ? 6 : 4;
}

/**
 * The streamhost's offered hosts. Bound to one address: advertiseHost (when
 * set) then that address (unless it is loopback behind an advertiseHost).
 * Bound to all addresses: advertiseHost first (it may be a DNS name), then
 * every address of the host that is neither loopback nor link-local (an
 * IPv4 wildcard offers IPv4 only; `::` is dual-stack and offers both):
 * public IPv4, private IPv4, global IPv6, unique-local IPv6, each in
 * interface order. Loopback only when nothing else exists.
 */
export function advertisedHosts(o: {
  bindHost: string;
  advertiseHost: string;
  interfaces: Record<string, InterfaceAddress[] | undefined>;
}): AdvertisedHosts {
  const out: string[] = [];
  const add = (h: string) => {
    if (h !== '' && !out.includes(h)) out.push(h);
  };
  add(o.advertiseHost);
  if (!isWildcard(o.bindHost)) {
    if (!(o.advertiseHost && isLoopback(o.bindHost))) add(o.bindHost);
  } else {
    const v6 = o.bindHost !== '0.0.0.0';
    const rank = (a: string, f: 4 | 6) => (f === 4 ? (isPrivateV4(a) ? 1 : 0) : isUla(a) ? 3 : 2);
    const found: Array<{ a: string; r: number; i: number }> = [];
    let i = 0;
    for (const list of Object.values(o.interfaces)) {
      for (const ifa of list ?? []) {
        const f = familyOf(ifa);
        const a = ifa.address;
        if (ifa.internal || isLoopback(a) || isLinkLocal(a) || (f === 6 && !v6)) continue;
        if (a === '0.0.0.0' || a === '::') continue;
        found.push({ a, r: rank(a, f), i: i++ });
      }
    }
    found.sort((x, y) => x.r - y.r || x.i - y.i);
    for (const f of found) add(f.a);
    if (out.length === 0) add('127.0.0.1');
  }
  return { hosts: out, loopbackOnly: out.every(isLoopback) };
}

/** host:port, with an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
