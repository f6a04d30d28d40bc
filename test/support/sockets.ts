// What the kernel holds for a process's TCP connections, read with iproute2's ss:
// for tests that must know a peer has written bytes a stopped process has not read.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

const run = promisify(execFile);

/** Bytes waiting unread in the receive queues of `pid`'s established connections to `remotePort`. */
export async function unreadBytes(pid: number, remotePort: number): Promise<number> {
  const { stdout } = await run('ss', ['-tnpH', 'state', 'established', 'dport', '=', `:${remotePort}`]);
  let total = 0;
  for (const line of stdout.split('\n')) {
    // Recv-Q Send-Q Local Peer Process (the state column is left out under a state filter)
    if (!line.includes(`pid=${pid},`)) continue;
    total += Number(line.trim().split(/\s+/)[0]);
  }
  return total;
}

/** Waits (bounded) until `pid` has unread bytes from `remotePort`; throws with what it saw if none come. */
export async function waitForUnread(pid: number, remotePort: number, timeoutMs = 10000): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const n = await unreadBytes(pid, remotePort);
    if (n > 0) return n;
    if (Date.now() > end) throw new Error(`no unread bytes from port ${remotePort} at pid ${pid} in ${timeoutMs} ms`);
    await sleep(20);
  }
}
