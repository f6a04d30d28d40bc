// XEP-0260 Jingle SOCKS5 bytestreams: our candidates, the responder's
// candidates tried with the `socks` package (only where the configured
// networks allow), and the nomination rules of §2.4. The component's own
// streamhost (streamhost.ts) is our `direct` candidate; configured
// XEP-0065 proxies are `proxy` candidates.
import type { Socket } from 'node:net';
import type { NetworkPolicy } from '../../networks.js';
import { socksConnect } from '../s5b/proxy.js';
import type { StreamhostInfo } from '../s5b/stanzas.js';
import { dstAddr } from '../s5b/socks5.js';
import type { CandidateType, S5bCandidate } from './stanzas.js';

/** XEP-0260 §2.2 type preferences. */
const TYPE_PREFERENCE: Record<CandidateType, number> = { direct: 126, assisted: 120, tunnel: 110, proxy: 10 };

/** priority = 2^16 * type preference + local preference (0..65535). */
export function candidatePriority(type: CandidateType, localPreference: number): number {
  return TYPE_PREFERENCE[type] * 65536 + Math.max(0, Math.min(65535, Math.floor(localPreference)));
}

/**
 * Our candidates: the built-in streamhost as direct candidates (one per
 * offered address) with the highest local preferences (so a tie with a responder's candidate is rare),
 * then each configured proxy in config order.
 */
export function ourCandidates(o: {
  from: string;
  streamhost?: { hosts: readonly string[]; port: number };
  proxies: readonly StreamhostInfo[];
  newCid: () => string;
}): S5bCandidate[] {
  const out: S5bCandidate[] = [];
  // one direct candidate per offered address, best first (s5b/addresses.ts)
  o.streamhost?.hosts.forEach((host, i) =>
    out.push({
      cid: o.newCid(),
      host,
      jid: o.from,
      port: o.streamhost!.port,
      priority: candidatePriority('direct', 65535 - i),
      type: 'direct',
    }),
  );
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
 * Our candidates in the order the streamhost memory prefers for this user:
 * the same priority values, handed out again in that order, so a responder
 * that tries by priority (XEP-0260 §2.3) starts with the one that worked
 * last time. §2.2's type preferences are a recommendation; a proxy that is
 * known to work for this user outranks a direct candidate that is not.
 */
export function inPreferredOrder(defaults: readonly S5bCandidate[], ordered: readonly S5bCandidate[]): S5bCandidate[] {
  if (ordered.every((c, i) => c === defaults[i])) return [...defaults];
  const priorities = defaults.map((c) => c.priority).sort((a, b) => b - a);
  return ordered.map((c, i) => ({ ...c, priority: priorities[i] }));
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
