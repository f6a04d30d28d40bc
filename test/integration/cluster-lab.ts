// An ejabberd cluster on the network lab (issue 14): two ejabberd nodes on two
// hosts (`xmpp` and `xmpp2`) joined into one cluster, Erlang distribution
// between them on a fixed port with a cookie of their own (no epmd), and two
// component instances on two more hosts (`component`, `component2`), each
// connected to "its" node first and to the other node second, with one
// cluster-wide domain_balancing (bare_source, component_number 2).
//
// The two extra LAN hosts are added here with netlab's own recipe (a veth pair
// into the company router's bridge, created inside the namespaces), under the
// lab's prefix: Netlab.down() removes them with the rest.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { LAB_ADDRESSES, Netlab } from '../support/netlab.js';
import { startPurpleReceiver } from '../support/purple.js';
import { ReceiverProcess } from '../support/receiver.js';
import { startSlixReceiver } from '../support/slix.js';
import { ComponentProcess } from './harness.js';
import { LAB_PORTS, LabIntranet, labComponentEnv, type LabReceiver, type LabWorld } from './lab.js';

/** The cluster's hosts: the lab's `xmpp` and `component`, and two more on the company LAN. */
export const CLUSTER_ADDRESSES = {
  xmpp: LAB_ADDRESSES.xmpp as { v4: string; v6: string },
  xmpp2: { v4: '192.0.2.11', v6: '2001:db8:1::11' },
  component: LAB_ADDRESSES.component as { v4: string; v6: string },
  component2: { v4: '192.0.2.21', v6: '2001:db8:1::21' },
} as const;

/** Erlang node names, on the hosts' lab addresses (long names). */
export const NODE_NAMES = [`ej1@${CLUSTER_ADDRESSES.xmpp.v4}`, `ej2@${CLUSTER_ADDRESSES.xmpp2.v4}`] as const;

const BALANCING = 'bare_source:2';

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 20000, encoding: 'utf8' }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(stdout),
    ),
  );
}

/** Adds a host to the company LAN (bridge br0 in `corp`), as netlab does for its own LAN hosts. */
async function addLanHost(lab: Netlab, host: 'xmpp2' | 'component2'): Promise<void> {
  const ns = `${lab.prefix}-${host}`;
  const a = CLUSTER_ADDRESSES[host];
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const corp = lab.ns('corp');
  await run('ip', ['-n', corp, 'link', 'add', `p-${host}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await run('ip', ['-n', corp, 'link', 'set', `p-${host}`, 'up']);
  await run('ip', ['-n', corp, 'link', 'set', `p-${host}`, 'master', 'br0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', ns, 'addr', 'add', `${a.v4}/24`, 'dev', 'eth0']);
  await run('ip', ['-n', ns, 'addr', 'add', `${a.v6}/64`, 'dev', 'eth0', 'nodad']);
  await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', '192.0.2.1']);
  await run('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', '2001:db8:1::1']);
}

export interface ClusterWorld {
  lab: Netlab;
  /** ej1 on `xmpp`, ej2 on `xmpp2` (joined to ej1's cluster). */
  nodes: [EjabberdInstance, EjabberdInstance];
  intranet: LabIntranet;
  runDir: string;
  /** both nodes load mod_xr_failover */
  failover: boolean;
}

function nodeOptions(lab: Netlab, runDir: string, i: 0 | 1, cookieFile: string, failover: boolean) {
  const host = i === 0 ? 'xmpp' : 'xmpp2';
  return {
    runDir: join(runDir, `ejabberd${i + 1}`),
    portBase: LAB_PORTS.c2s,
    nodeName: NODE_NAMES[i],
    listenIp: '::',
    proxy65Ip: '::',
    proxy65Host: CLUSTER_ADDRESSES[host].v4,
    netns: `${lab.prefix}-${host}`,
    distIp: CLUSTER_ADDRESSES[host].v4,
    cookieFile,
    domainBalancing: BALANCING,
    failover,
    ...(i === 1 ? { join: NODE_NAMES[0] } : {}),
  };
}

/**
 * The lab with its two extra hosts, the two-node cluster and the intranet; stop with stopClusterWorld.
 * `failover`: both nodes load mod_xr_failover (scripts/ejabberd/mod_xr_failover.erl).
 */
export async function startClusterWorld(o: { failover?: boolean } = {}): Promise<ClusterWorld> {
  const failover = o.failover ?? false;
  const lab = await Netlab.up();
  const runDir = join(process.cwd(), '.run', `cluster-lab-${lab.prefix}`);
  try {
    await addLanHost(lab, 'xmpp2');
    await addLanHost(lab, 'component2');
    await mkdir(runDir, { recursive: true });
    // The cluster's own cookie: a file only the nodes read (never on a command line).
    const cookieFile = join(runDir, 'cookie');
    await writeFile(cookieFile, randomBytes(24).toString('hex') + '\n', { mode: 0o600 });
    const ej1 = await startEjabberd(nodeOptions(lab, runDir, 0, cookieFile, failover));
    const ej2 = await startEjabberd(nodeOptions(lab, runDir, 1, cookieFile, failover));
    const intranet = await LabIntranet.start(lab);
    return { lab, nodes: [ej1, ej2], intranet, runDir, failover };
  } catch (err) {
    await lab.down(); // also ends the nodes started so far (every process in the lab's namespaces)
    await rm(runDir, { recursive: true, force: true });
    throw err;
  }
}

/** Starts node i again (same run dir, spool and settings: it rejoins the cluster by itself). */
export function restartNode(w: ClusterWorld, i: 0 | 1): Promise<EjabberdInstance> {
  return startEjabberd(nodeOptions(w.lab, w.runDir, i, join(w.runDir, 'cookie'), w.failover));
}

export async function stopClusterWorld(w: ClusterWorld | undefined): Promise<void> {
  if (!w) return;
  try {
    await ReceiverProcess.stopAll();
    await w.intranet.stop().catch(() => {});
    for (const ej of [...w.nodes].reverse()) await ej.stop().catch(() => {});
  } finally {
    await w.lab.down();
    await rm(w.runDir, { recursive: true, force: true });
  }
}

/** A LabWorld view of the cluster as seen through node i (for lab.ts's helpers). */
export function viaNode(w: ClusterWorld, i: 0 | 1): LabWorld {
  return { lab: w.lab, ej: w.nodes[i], intranet: w.intranet, runDir: w.runDir };
}

/** Component instance i (0 on `component`, 1 on `component2`): its own node first, the other second. */
export function startClusterComponent(
  w: ClusterWorld,
  i: 0 | 1,
  env: Record<string, string> = {},
): Promise<ComponentProcess> {
  const nodes = [CLUSTER_ADDRESSES.xmpp.v4, CLUSTER_ADDRESSES.xmpp2.v4];
  const own = i === 0 ? nodes : [nodes[1], nodes[0]];
  const host = i === 0 ? 'component' : 'component2';
  return ComponentProcess.spawn(
    labComponentEnv(viaNode(w, 0), {
      XR_XMPP_SERVICE: own.map((a) => `xmpp://${a}:${w.nodes[0].componentPort}`).join(','),
      XR_PROXY_ADVERTISE_HOST: CLUSTER_ADDRESSES[host].v4,
      ...env,
    }),
    { ejabberd: w.nodes[0], netns: `${w.lab.prefix}-${host}` },
  );
}

/**
 * Which of the two balancing slots a user's stanzas go to: ejabberd_router
 * (23.01, balancing_route/4) takes erlang:phash2 of the sender's bare JID,
 * lowercased as {User, Server, <<>>}, modulo component_number, over the routes
 * sorted by slot; slot 0 is the connection that registered the domain first.
 * Computed by Erlang itself (erl comes with ejabberd).
 */
export async function balancingSlot(user: string, domain: string): Promise<number> {
  const expr = `io:format("~b", [erlang:phash2({<<"${user}">>, <<"${domain}">>, <<>>}, 2)]), halt().`;
  const out = await run('erl', ['-noshell', '-eval', expr]);
  const n = Number(out.trim());
  if (n !== 0 && n !== 1) throw new Error(`erl said ${JSON.stringify(out)} for the slot of ${user}`);
  return n;
}

/** A user whose name starts with prefix and whose stanzas go to balancing slot `slot` (bounded search). */
export async function userInSlot(prefix: string, domain: string, slot: number): Promise<string> {
  for (let k = 1; k <= 32; k++) {
    const name = `${prefix}${k}`;
    if ((await balancingSlot(name, domain)) === slot) return name;
  }
  throw new Error(`no user ${prefix}1..32 falls in slot ${slot}`);
}

/** A receiving user on a user host, logged in to node i of the cluster (registered once, through ej1). */
export async function startClusterReceiver(
  w: ClusterWorld,
  kind: 'purple' | 'slix',
  host: 'office' | 'home',
  node: 0 | 1,
  name: string,
  extra: { methods?: string[] } = {},
): Promise<LabReceiver> {
  const password = `pw-${name}`;
  await w.nodes[0].register(name, password);
  const outDir = await mkdtemp(join(tmpdir(), `xr-clab-rx-${name}-`));
  const jid = `${name}@${w.nodes[0].domain}/${kind}`;
  const common = {
    jid,
    password,
    host: node === 0 ? CLUSTER_ADDRESSES.xmpp.v4 : CLUSTER_ADDRESSES.xmpp2.v4,
    port: w.nodes[node].c2sPort,
    outDir,
    timeoutSec: 600,
    netns: w.lab.ns(host),
    ...extra,
  };
  const proc = kind === 'purple' ? await startPurpleReceiver(common) : await startSlixReceiver(common);
  return { proc, outDir, jid };
}
