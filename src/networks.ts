// Networks the component may open connections to on a peer's word (a Jingle
// responder's own SOCKS5 candidates): CIDR allow and deny lists.
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

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
