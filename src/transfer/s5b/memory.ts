// Which streamhost worked for whom. A user who cannot reach our own
// streamhost (a home NAT, a company firewall that drops packets) waits
// libpurple's 15 s per unreachable streamhost on every request before it
// tries the next one; once a streamhost has worked for that user (SI
// streamhost-used, XEP-0065 §5.3.3; Jingle candidate-used, XEP-0260 §2.3),
// it is offered first next time. Pure: the clock is passed in.
//
// Per bare JID only: what one user's network allows says nothing about
// another's, so one user's results never reorder another user's offer.
// Bounded: at most maxUsers users (least recently used dropped first) and
// maxHostsPerUser streamhosts per user; an observation counts for ttlMs.

export interface StreamhostMemoryOptions {
  /** users remembered at most; the least recently used is forgotten first */
  maxUsers: number;
  /** how long an observation counts */
  ttlMs: number;
  /** streamhosts remembered per user at most (the offer lists only a few) */
  maxHostsPerUser?: number;
  now?: () => number;
}

type Outcome = 'worked' | 'failed';

interface Observation {
  outcome: Outcome;
  at: number;
  /** observation order (timestamps can tie) */
  seq: number;
}

/** Ranks: a streamhost that worked last time first, untried ones next, ones that failed last. */
const RANK: Record<Outcome | 'unknown', number> = { worked: 0, unknown: 1, failed: 2 };

export class StreamhostMemory {
  /** bare JID -> streamhost key -> last observation; Map order = least recently used first */
  private readonly users = new Map<string, Map<string, Observation>>();
  private readonly now: () => number;
  private readonly maxHosts: number;
  private seq = 0;

  constructor(private readonly o: StreamhostMemoryOptions) {
    this.now = o.now ?? Date.now;
    this.maxHosts = o.maxHostsPerUser ?? 16;
  }

  /** Users remembered now (for tests and metrics). */
  get size(): number {
    return this.users.size;
  }

  /**
   * The hosts in the order to offer them to `user`: ones that worked (most
   * recent first), then ones never tried or forgotten (in the given order),
   * then ones that failed (in the given order). Without live observations
   * the given order is returned unchanged.
   */
  order<T>(user: string, hosts: readonly T[], key: (h: T) => string): T[] {
    const seen = this.live(user);
    if (!seen) return [...hosts];
    this.users.delete(user); // used: now the most recently used
    this.users.set(user, seen);
    const rankOf = (h: T) => {
      const ob = seen.get(key(h));
      return { rank: RANK[ob?.outcome ?? 'unknown'], recent: ob?.outcome === 'worked' ? ob.seq : 0 };
    };
    return hosts
      .map((h, i) => ({ h, i, ...rankOf(h) }))
      .sort((a, b) => a.rank - b.rank || b.recent - a.recent || a.i - b.i)
      .map((x) => x.h);
  }

  /** Notes that `key` carried a transfer for `user`. */
  worked(user: string, key: string): void {
    this.note(user, [key], 'worked');
  }

  /** Notes that `user` could not use these streamhosts (timed out, refused, activation failed). */
  failed(user: string, keys: readonly string[]): void {
    this.note(user, keys, 'failed');
  }

  /**
   * Notes what one transfer showed and returns the user's new order of
   * `offered` (the keys in their default order) when it differs from the
   * order before, else undefined: the caller logs the change.
   */
  learn(
    user: string,
    offered: readonly string[],
    seen: { worked?: string; failed?: readonly string[] },
  ): string[] | undefined {
    const same = (k: string) => k;
    const before = this.order(user, offered, same);
    if (seen.failed) this.failed(user, seen.failed);
    if (seen.worked !== undefined) this.worked(user, seen.worked);
    const after = this.order(user, offered, same);
    return after.some((k, i) => k !== before[i]) ? after : undefined;
  }

  private note(user: string, keys: readonly string[], outcome: Outcome): void {
    if (keys.length === 0) return;
    const at = this.now();
    const hosts = this.live(user) ?? new Map<string, Observation>();
    for (const k of keys) {
      hosts.delete(k); // re-inserted: Map order = least recently observed first
      hosts.set(k, { outcome, at, seq: ++this.seq });
    }
    while (hosts.size > this.maxHosts) hosts.delete(hosts.keys().next().value!);
    this.users.delete(user);
    this.users.set(user, hosts);
    while (this.users.size > this.o.maxUsers) this.users.delete(this.users.keys().next().value!);
  }

  /** The user's observations younger than ttlMs (older ones are dropped), or undefined. */
  private live(user: string): Map<string, Observation> | undefined {
    const hosts = this.users.get(user);
    if (!hosts) return undefined;
    const oldest = this.now() - this.o.ttlMs;
    for (const [k, ob] of hosts) if (ob.at <= oldest) hosts.delete(k);
    if (hosts.size === 0) {
      this.users.delete(user);
      return undefined;
    }
    return hosts;
  }
}

/**
 * How a streamhost is known to the memory: our own by its address (its JID is
 * the project's full JID, different for every project), a proxy by its JID.
 */
export function streamhostKey(h: { jid: string; host: string; port: number }, ownJid: string): string {
  return h.jid === ownJid ? `${h.host}:${h.port}` : h.jid;
}

/** Notes what a transfer showed, and logs the user's new order when it changed. */
export function remember(
  memory: StreamhostMemory,
  log: { info: (o: object, msg: string) => void },
  user: string,
  offered: readonly string[],
  seen: { worked?: string; failed?: readonly string[] },
): void {
  const changed = memory.learn(user, offered, seen);
  if (changed) log.info({ jid: user, streamhost: changed[0], order: changed }, 'streamhost order changed');
}
