// What the kernel holds for a process's TCP connections, read with iproute2's ss:
// for tests that must know a peer has written bytes a stopped process has not read.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

const run = promisify(execFile);

/** Bytes waiting unread in the receive queues of `pid`'s established connections to `remotePort` (in network namespace `netns`). */
export async function unreadBytes(pid: number, remotePort: number, netns?: string): Promise<number> {
  const ss = ['ss', '-tnpH', 'state', 'established', 'dport', '=', `:${remotePort}`];
  const [cmd, ...args] = netns ? ['ip', 'netns', 'exec', netns, ...ss] : ss;
  const { stdout } = await run(cmd, args, { timeout: 10000 });
  let total = 0;
  for (const line of stdout.split('\n')) {
    // Recv-Q Send-Q Local Peer Process (the state column is left out under a state filter)
    if (!line.includes(`pid=${pid},`)) continue;
    total += Number(line.trim().split(/\s+/)[0]);
  }
  return total;
}

/** Waits (bounded) until `pid` has unread bytes from `remotePort`; throws with what it saw if none come. */
export async function waitForUnread(
  pid: number,
  remotePort: number,
  o: { netns?: string; timeoutMs?: number } = {},
): Promise<number> {
  const timeoutMs = o.timeoutMs ?? 10000;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const n = await unreadBytes(pid, remotePort, o.netns);
    if (n > 0) return n;
    if (Date.now() > end) throw new Error(`no unread bytes from port ${remotePort} at pid ${pid} in ${timeoutMs} ms`);
    await sleep(20);
  }
}
