/**
 * The network lab: separate hosts as Linux network namespaces, joined by veth
 * pairs and a bridge, with NAT and a company firewall in nftables. Root only.
 * Every name starts with a per-run prefix (`xrl<pid>-` by default), so labs of
 * other runs on the same machine never collide; the root namespace gets no
 * address, link or rule: the bridge lives inside the company router's namespace,
 * and each veth pair is created with both ends already inside their namespaces.
 *
 *                              ┌──────────── corp (router, bridge br0) ───────────┐
 *   xmpp       192.0.2.10      │ br0 192.0.2.1  2001:db8:1::1                      │
 *   component  192.0.2.20   ───┤   (company LAN 192.0.2.0/24, 2001:db8:1::/64)      │
 *   office     192.0.2.30      │ wan0 198.51.100.1  ("internet", 198.51.100.0/24)   ├── homegw ── home
 *   intranet   192.0.2.40      │ v6   2001:db8:2::1 (an IPv6-only user network)     ├── v6
 *   (each also ::<n> on the LAN)└─────────────────────────────────────────────────────┘
 *
 *   homegw: wan0 198.51.100.2 (masquerades 203.0.113.0/24), lan0 203.0.113.1
 *   home:   203.0.113.10, default route via homegw
 *   v6:     2001:db8:2::10 only (no IPv4 address)
 *
 * The company network is routed (not NATed) towards the internet segment, as
 * if 192.0.2.0/24 were the company's public block, so a home user can reach
 * every company host; the company firewall decides what gets through
 * (dropFromOutside, forward). A developer builds the same lab by hand with
 * scripts/netlab.sh (which runs this module through netlab-cli.js).
 *
 * Only documentation addresses are used, and no namespace has a route out of
 * the lab: nothing is ever sent to any other address.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export type HostName = 'xmpp' | 'component' | 'office' | 'intranet' | 'home' | 'v6';
type NsName = HostName | 'corp' | 'homegw';

/** Every host's addresses (`v4` is undefined for the IPv6-only user). */
export const LAB_ADDRESSES: Record<HostName, { v4?: string; v6?: string }> = {
  xmpp: { v4: '192.0.2.10', v6: '2001:db8:1::10' },
  component: { v4: '192.0.2.20', v6: '2001:db8:1::20' },
  office: { v4: '192.0.2.30', v6: '2001:db8:1::30' },
  intranet: { v4: '192.0.2.40', v6: '2001:db8:1::40' },
  home: { v4: '203.0.113.10' },
  v6: { v6: '2001:db8:2::10' },
};
/** The company router's address on the internet segment (the target of forward()). */
export const CORP_PUBLIC_V4 = '198.51.100.1';
/** The home router's public address: what the company sees of the home user (masquerade). */
export const HOME_PUBLIC_V4 = '198.51.100.2';

const LAN_HOSTS: HostName[] = ['xmpp', 'component', 'office', 'intranet'];
const ALL_NS: NsName[] = ['corp', 'xmpp', 'component', 'office', 'intranet', 'homegw', 'home', 'v6'];
const CMD_TIMEOUT_MS = 20_000;

export class LabError extends Error {
  override name = 'LabError';
}

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: CMD_TIMEOUT_MS, encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new LabError(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
        else resolve(stdout);
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Why a lab cannot be built on this machine, or undefined when it can. */
export async function labPrerequisites(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the network lab needs root (ip netns, veth, nftables)';
  for (const [cmd, args, pkg] of [
    ['ip', ['-V'], 'iproute2'],
    ['nft', ['--version'], 'nftables'],
  ] as const) {
    try {
      await run(cmd, [...args]);
    } catch {
      return `\`${cmd}\` is missing (Debian package ${pkg}; scripts/deps.sh test installs it)`;
    }
  }
  return undefined;
}

const live = new Set<Netlab>();
let exitHookInstalled = false;

/** On any exit of this process, the labs still up are removed (synchronously: nothing async runs at exit). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const lab of live) lab.downSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const lab of live) lab.downSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

export interface LabOptions {
  /** Prefix of every namespace name (default `xrl<pid>`); letters, digits, at most 9 characters. */
  prefix?: string;
  /** Keep the lab when this process exits (the hand-built lab of scripts/netlab.sh). */
  keep?: boolean;
}

export class Netlab {
  private constructor(
    readonly prefix: string,
    private readonly keep: boolean,
  ) {}

  /** The namespace name of a host (or of the routers `corp` and `homegw`). */
  ns(host: NsName): string {
    return `${this.prefix}-${host}`;
  }

  /** Builds the whole lab; on any failure removes what was built and throws why. */
  static async up(o: LabOptions = {}): Promise<Netlab> {
    const why = await labPrerequisites();
    if (why) throw new LabError(why);
    const prefix = o.prefix ?? `xrl${process.pid}`;
    if (!/^[a-z][a-z0-9]{0,8}$/.test(prefix)) throw new LabError(`bad lab prefix ${JSON.stringify(prefix)}`);
    const lab = new Netlab(prefix, o.keep === true);
    const existing = await Netlab.namespaces();
    if (existing.some((n) => n.startsWith(`${prefix}-`)))
      throw new LabError(`a lab with prefix ${prefix} is already up (scripts/netlab.sh down removes it)`);
    if (!lab.keep) {
      live.add(lab);
      installExitHook();
    }
    try {
      await lab.build();
    } catch (err) {
      await lab.down();
      throw err;
    }
    return lab;
  }

  /** Namespace names on this machine. */
  static async namespaces(): Promise<string[]> {
    const out = await run('ip', ['netns', 'list']);
    return out
      .split('\n')
      .map((l) => l.split(' ')[0])
      .filter((n) => n !== '');
  }

  private ip(ns: NsName, ...args: string[]): Promise<string> {
    return run('ip', ['-n', this.ns(ns), ...args]);
  }

  private sysctl(ns: NsName, kv: string): Promise<string> {
    return run('ip', ['netns', 'exec', this.ns(ns), 'sysctl', '-q', '-w', kv]);
  }

  /** Loads nftables rules into a namespace (`nft -f -`). */
  nft(ns: NsName, rules: string): Promise<string> {
    return run('ip', ['netns', 'exec', this.ns(ns), 'nft', '-f', '-'], rules);
  }

  /** A veth pair with one end in each namespace, created there (never in the root namespace). */
  private async veth(a: NsName, aName: string, b: NsName, bName: string): Promise<void> {
    await this.ip(a, 'link', 'add', aName, 'type', 'veth', 'peer', 'name', bName, 'netns', this.ns(b));
    await this.ip(a, 'link', 'set', aName, 'up');
    await this.ip(b, 'link', 'set', bName, 'up');
  }

  private async build(): Promise<void> {
    for (const n of ALL_NS) {
      await run('ip', ['netns', 'add', this.ns(n)]);
      await this.ip(n, 'link', 'set', 'lo', 'up'); // ejabberd's control commands talk to its node on localhost
    }
    // corp: the router, the LAN bridge, the internet segment, the IPv6-only network.
    await this.sysctl('corp', 'net.ipv4.ip_forward=1');
    await this.sysctl('corp', 'net.ipv6.conf.all.forwarding=1');
    await this.ip('corp', 'link', 'add', 'br0', 'type', 'bridge');
    await this.ip('corp', 'link', 'set', 'br0', 'up');
    await this.ip('corp', 'addr', 'add', '192.0.2.1/24', 'dev', 'br0');
    await this.ip('corp', 'addr', 'add', '2001:db8:1::1/64', 'dev', 'br0', 'nodad');
    for (const h of LAN_HOSTS) {
      const a = LAB_ADDRESSES[h];
      await this.veth('corp', `p-${h}`, h, 'eth0');
      await this.ip('corp', 'link', 'set', `p-${h}`, 'master', 'br0');
      await this.ip(h, 'addr', 'add', `${a.v4}/24`, 'dev', 'eth0');
      await this.ip(h, 'addr', 'add', `${a.v6}/64`, 'dev', 'eth0', 'nodad');
      await this.ip(h, 'route', 'add', 'default', 'via', '192.0.2.1');
      await this.ip(h, '-6', 'route', 'add', 'default', 'via', '2001:db8:1::1');
    }
    // The internet segment: corp's wan0 to the home router's wan0.
    await this.veth('corp', 'wan0', 'homegw', 'wan0');
    await this.ip('corp', 'addr', 'add', `${CORP_PUBLIC_V4}/24`, 'dev', 'wan0');
    await this.ip('homegw', 'addr', 'add', `${HOME_PUBLIC_V4}/24`, 'dev', 'wan0');
    // The home router: the home LAN, masqueraded to its public address; its default route is the internet segment.
    await this.sysctl('homegw', 'net.ipv4.ip_forward=1');
    await this.veth('homegw', 'lan0', 'home', 'eth0');
    await this.ip('homegw', 'addr', 'add', '203.0.113.1/24', 'dev', 'lan0');
    await this.ip('homegw', 'route', 'add', 'default', 'via', CORP_PUBLIC_V4);
    await this.ip('home', 'addr', 'add', `${LAB_ADDRESSES.home.v4}/24`, 'dev', 'eth0');
    await this.ip('home', 'route', 'add', 'default', 'via', '203.0.113.1');
    await this.nft(
      'homegw',
      `table ip xrlab_nat {
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "wan0" masquerade; }
}`,
    );
    // The IPv6-only user network.
    await this.veth('corp', 'v6', 'v6', 'eth0');
    await this.ip('corp', 'addr', 'add', '2001:db8:2::1/64', 'dev', 'v6', 'nodad');
    await this.ip('v6', 'addr', 'add', `${LAB_ADDRESSES.v6.v6}/64`, 'dev', 'eth0', 'nodad');
    await this.ip('v6', '-6', 'route', 'add', 'default', 'via', '2001:db8:2::1');
    // The company firewall and port forwards: empty chains that dropFromOutside() and forward() fill.
    await this.nft(
      'corp',
      `table inet xrlab_fw {
  chain forward { type filter hook forward priority filter; policy accept; }
}
table ip xrlab_nat {
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; }
}`,
    );
  }

  /**
   * The company firewall drops (never refuses) what comes from the internet
   * segment to host:port over TCP: a connection from home just times out.
   */
  async dropFromOutside(host: HostName, port: number): Promise<void> {
    const a = LAB_ADDRESSES[host];
    if (a.v4)
      await this.nft('corp', `add rule inet xrlab_fw forward iifname "wan0" ip daddr ${a.v4} tcp dport ${port} drop`);
    if (a.v6)
      await this.nft('corp', `add rule inet xrlab_fw forward iifname "wan0" ip6 daddr ${a.v6} tcp dport ${port} drop`);
  }

  /** A port forward on the company router: CORP_PUBLIC_V4:publicPort → host:port (DNAT). */
  async forward(publicPort: number, host: HostName, port: number): Promise<void> {
    const to = LAB_ADDRESSES[host].v4;
    if (!to) throw new LabError(`${host} has no IPv4 address to forward to`);
    await this.nft(
      'corp',
      `add rule ip xrlab_nat prerouting ip daddr ${CORP_PUBLIC_V4} tcp dport ${publicPort} dnat to ${to}:${port}`,
    );
  }

  /**
   * Limits the home user's internet link to `mbit` Mbit/s in both directions
   * (tc tbf on both ends of the internet segment; netem is not in every kernel).
   */
  async limitHome(mbit: number): Promise<void> {
    for (const ns of ['corp', 'homegw'] as const)
      await run('ip', [
        'netns',
        'exec',
        this.ns(ns),
        'tc',
        'qdisc',
        'replace',
        'dev',
        'wan0',
        'root',
        'tbf',
        'rate',
        `${mbit}mbit`,
        'burst',
        '64kb',
        'latency',
        '50ms',
      ]);
  }

  /** argv that runs cmd inside a host's namespace. */
  argv(host: NsName, cmd: string, args: readonly string[] = []): [string, string[]] {
    return ['ip', ['netns', 'exec', this.ns(host), cmd, ...args]];
  }

  /** Spawns a process inside a host (`ip netns exec` execs it: the child's pid is the process itself). */
  spawn(host: NsName, cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): ChildProcess {
    const [c, a] = this.argv(host, cmd, args);
    return spawn(c, a, opts);
  }

  /** Runs a command inside a host and resolves with its stdout (bounded in time). */
  exec(host: NsName, cmd: string, args: readonly string[] = [], input?: string): Promise<string> {
    const [c, a] = this.argv(host, cmd, args);
    return run(c, a, input);
  }

  /** Removes the lab: stops what still runs in its namespaces (by pid), then deletes them (links and rules go with them). */
  async down(): Promise<void> {
    this.downSync();
  }

  /** down(), synchronously (also used from the process-exit hook). */
  downSync(): void {
    live.delete(this);
    Netlab.removeSync(this.prefix);
  }

  /** Removes every namespace of the lab with this prefix (after a crash, or a lab built by scripts/netlab.sh). */
  static removeSync(prefix: string): void {
    let names: string[] = [];
    try {
      names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS })
        .split('\n')
        .map((l) => l.split(' ')[0])
        .filter((n) => n.startsWith(`${prefix}-`));
    } catch {
      return;
    }
    for (const n of names) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', n], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS })
          .split('\n')
          .filter((p) => /^\d+$/.test(p));
        for (const p of pids) {
          try {
            process.kill(Number(p), 'SIGKILL');
          } catch {
            // already gone
          }
        }
      } catch {
        // no pids to list
      }
      try {
        execFileSync('ip', ['netns', 'del', n], { timeout: CMD_TIMEOUT_MS, stdio: 'ignore' });
      } catch {
        // removed meanwhile
      }
    }
  }
}
