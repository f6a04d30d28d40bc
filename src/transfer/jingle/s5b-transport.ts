// XEP-0260 Jingle SOCKS5 bytestreams: our candidates, the responder's
// candidates tried with the `socks` package (only where the configured
// networks allow), and the nomination rules of §2.4. The component's own
// streamhost (streamhost.ts) is our `direct` candidate; configured
// XEP-0065 proxies are `proxy` candidates.
import { lookup } from 'node:dns/promises';
import { BlockList, isIP, type Socket } from 'node:net';
import { SocksClient } from 'socks';
import type { StreamhostInfo } from '../bytestreams.js';
import { dstAddr } from '../socks5.js';
import type { CandidateType, S5bCandidate } from './jingle.js';

/** XEP-0260 §2.2 type preferences. */
export const TYPE_PREFERENCE: Record<CandidateType, number> = { direct: 126, assisted: 120, tunnel: 110, proxy: 10 };

/** priority = 2^16 * type preference + local preference (0..65535). */
export function candidatePriority(type: CandidateType, localPreference: number): number {
  return TYPE_PREFERENCE[type] * 65536 + Math.max(0, Math.min(65535, Math.floor(localPreference)));
}

/**
 * Our candidates: the built-in streamhost as a direct candidate with the
 * highest local preference (so a tie with a responder's candidate is rare),
 * then each configured proxy in config order.
 */
export function ourCandidates(o: {
  from: string;
  streamhost?: { host: string; port: number };
  proxies: readonly StreamhostInfo[];
  newCid: () => string;
}): S5bCandidate[] {
  const out: S5bCandidate[] = [];
  if (o.streamhost)
    out.push({
      cid: o.newCid(),
      host: o.streamhost.host,
      jid: o.from,
      port: o.streamhost.port,
      priority: candidatePriority('direct', 65535),
      type: 'direct',
    });
  o.proxies.forEach((p, i) =>
    out.push({
      cid: o.newCid(),
      host: p.host,
      jid: p.jid,
      port: p.port,
      priority: candidatePriority('proxy', 65535 - i),
      type: 'proxy',
    }),
  );
  return out;
}

/**
 * DST.ADDR for each direction (XEP-0260 §2.2): our candidates carry
 * SHA1(tsid + initiator + responder); the responder's carry
 * SHA1(tsid + responder + initiator) unless its transport names a dstaddr.
 */
export function dstAddrs(
  tsid: string,
  initiator: string,
  responder: string,
  responderDstaddr?: string,
): { ours: string; theirs: string } {
  return { ours: dstAddr(tsid, initiator, responder), theirs: responderDstaddr ?? dstAddr(tsid, responder, initiator) };
}

/** The outcome of the candidate exchange (XEP-0260 §2.4). */
export type Nomination =
  { kind: 'none' } | { kind: 'ours'; candidate: S5bCandidate } | { kind: 'theirs'; candidate: S5bCandidate };

/**
 * Nominates from what each side reported: `responderUsed` is the candidate
 * of ours the responder connected to (null: it sent candidate-error),
 * `initiatorUsed` the responder's candidate we connected to (null: we sent
 * candidate-error). Both used: the higher priority wins; on a tie, the
 * candidate chosen by the initiator (us), as XEP-0260 §2.4 rule 4 says.
 */
export function nominate(responderUsed: S5bCandidate | null, initiatorUsed: S5bCandidate | null): Nomination {
  if (!responderUsed && !initiatorUsed) return { kind: 'none' };
  if (responderUsed && !initiatorUsed) return { kind: 'ours', candidate: responderUsed };
  if (!responderUsed && initiatorUsed) return { kind: 'theirs', candidate: initiatorUsed };
  const r = responderUsed!;
  const i = initiatorUsed!;
  if (r.priority > i.priority) return { kind: 'ours', candidate: r };
  return { kind: 'theirs', candidate: i };
}

/**
 * Which of the responder's candidates are still worth trying, highest
 * priority first (XEP-0260 §2.3: once the peer reported a candidate-used,
 * only candidates of a higher priority than that one).
 */
export function candidatesToTry(theirs: readonly S5bCandidate[], peerUsedPriority?: number): S5bCandidate[] {
  return [...theirs]
    .filter((c) => peerUsedPriority === undefined || c.priority > peerUsedPriority)
    .sort((a, b) => b.priority - a.priority);
}

/**
 * Networks the component may connect to for a responder's candidates:
 * CIDR entries, "!" excludes (e.g. `0.0.0.0/0, ::/0, !127.0.0.0/8`). An
 * address is allowed when some entry includes it and none excludes it. An
 * empty list (or "none") allows nothing: the responder's candidates are never tried.
 */
export class NetworkPolicy {
  private readonly allow = new BlockList();
  private readonly deny = new BlockList();
  private readonly any: boolean;

  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      if (raw.trim().toLowerCase() === 'none') continue;
      const neg = raw.startsWith('!');
      const spec = (neg ? raw.slice(1) : raw).trim();
      const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(spec);
      const family = m ? isIP(m[1]) : 0;
      if (!m || family === 0)
        throw new Error(
          `bad network ${JSON.stringify(raw)}: expected an address or CIDR such as 10.0.0.0/8, optionally with a leading "!"`,
        );
      const type = family === 6 ? 'ipv6' : 'ipv4';
      const prefix = m[2] === undefined ? (family === 6 ? 128 : 32) : Number(m[2]);
      if (prefix > (family === 6 ? 128 : 32)) throw new Error(`bad network ${JSON.stringify(raw)}: prefix too long`);
      (neg ? this.deny : this.allow).addSubnet(m[1], prefix, type);
    }
    this.any = entries.some((e) => !e.startsWith('!') && e.trim().toLowerCase() !== 'none');
  }

  static validate(entries: readonly string[]): string | undefined {
    try {
      new NetworkPolicy(entries);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  get allowsAnything(): boolean {
    return this.any;
  }

  allows(address: string): boolean {
    const family = isIP(address);
    if (family === 0) return false;
    const type = family === 6 ? 'ipv6' : 'ipv4';
    return this.allow.check(address, type) && !this.deny.check(address, type);
  }

  /** The address to connect to for a candidate host (resolved when it is a name), or why not. */
  async resolve(host: string, timeoutMs: number): Promise<{ address: string } | { refused: string }> {
    if (!this.any) return { refused: 'no networks allowed' };
    let address = host;
    if (isIP(host) === 0) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const r = await Promise.race([
          lookup(host),
          new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error('DNS timeout')), timeoutMs))),
        ]);
        address = r.address;
      } catch (err) {
        return { refused: `cannot resolve ${host}: ${(err as Error).message}` };
      } finally {
        clearTimeout(timer);
      }
    }
    return this.allows(address) ? { address } : { refused: `${address} is outside transfer.jingle.peerNetworks` };
  }
}

export interface PeerConnection {
  candidate: S5bCandidate;
  socket: Socket;
}

export interface TryOptions {
  dstaddr: string;
  policy: NetworkPolicy;
  /** per candidate: SOCKS5 connect and handshake */
  timeoutMs: number;
  /** XEP-0260 §4: stagger attempts (200 ms apart, proxies later) */
  staggerMs?: number;
  /** stops trying (e.g. the responder's candidate-used made lower ones pointless); checked before each attempt */
  stillWanted?: (c: S5bCandidate) => boolean;
  onSkip?: (c: S5bCandidate, why: string) => void;
  connect?: (host: string, port: number, dstaddr: string, timeoutMs: number) => Promise<Socket>;
}

/** SOCKS5 CONNECT to a candidate with DST.ADDR = the hash, port 0 (XEP-0065 §5.3.2). */
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

/**
 * Tries the responder's candidates in priority order, each once, staggered
 * as XEP-0260 §4 suggests, and resolves with the first that connects (any
 * later one is closed), or undefined once every attempt failed or was skipped.
 */
export function tryPeerCandidates(
  candidates: readonly S5bCandidate[],
  o: TryOptions,
): Promise<PeerConnection | undefined> {
  const connect = o.connect ?? socksConnect;
  const ordered = candidatesToTry(candidates);
  const stagger = o.staggerMs ?? 200;
  let winner: PeerConnection | undefined;
  return new Promise((resolve) => {
    let left = ordered.length;
    if (left === 0) return resolve(undefined);
    const done = () => {
      if (--left === 0 && !winner) resolve(undefined);
    };
    ordered.forEach((c, i) => {
      const attempt = async (): Promise<void> => {
        const delay = i * stagger + (c.type === 'proxy' ? 2 * stagger : 0);
        if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        if (winner) return;
        if (o.stillWanted && !o.stillWanted(c)) return o.onSkip?.(c, 'no longer needed');
        const where = await o.policy.resolve(c.host, o.timeoutMs);
        if ('refused' in where) return o.onSkip?.(c, where.refused);
        if (winner) return;
        let socket: Socket;
        try {
          socket = await connect(where.address, c.port, o.dstaddr, o.timeoutMs);
        } catch (err) {
          return o.onSkip?.(c, (err as Error).message);
        }
        if (winner || (o.stillWanted && !o.stillWanted(c))) {
          socket.destroy();
          return;
        }
        winner = { candidate: c, socket };
        resolve(winner);
      };
      attempt().then(done, done);
    });
  });
}
