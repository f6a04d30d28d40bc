// What the mod_xr_failover tests (failover.test.ts on loopback, cluster-failover-lab.test.ts on
// the lab cluster) read the same way: ejabberd's log lines for requests routed again, and each
// instance's log for the answers to its own IQs.
import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ComponentProcess } from './harness.js';

/** mod_xr_failover's "routed again" lines in an ejabberd log file. */
export async function replayLines(logFile: string): Promise<string[]> {
  return (await readFile(logFile, 'utf8'))
    .split('\n')
    .filter((l) => l.includes('mod_xr_failover: ') && l.includes('routed again'));
}

/**
 * The "routed again" lines past the first `before`, once there is one (ejabberd's logger writes in
 * the background: the line may follow the delivery); waits at most 10 s, then returns what there is.
 */
export async function newReplayLines(logFile: string, before: number): Promise<string[]> {
  let lines: string[] = [];
  for (let i = 0; i < 100 && lines.length === 0; i++) {
    lines = (await replayLines(logFile)).slice(before);
    if (lines.length === 0) await sleep(100);
  }
  return lines;
}

/**
 * The instance got the answers to its own IQs: the server's disco (the proxy found and checked) and
 * at least `pongs` pongs, with no ping left unanswered (waits for them, bounded).
 */
export async function expectOwnIqAnswers(c: ComponentProcess, proxy: string, pongs: number): Promise<void> {
  const found = await c.waitForLog((l) => l.msg === 'proxies discovered', 30000);
  expect(found.discovered, 'disco#items and #info answered').to.deep.equal([proxy]);
  await c.waitForLog((l) => l.msg === 'proxy checked' && l.proxy === proxy, 30000);
  const answered = () => c.logs.filter((l) => l.msg === 'the XMPP server answered a ping').length;
  for (let i = 0; i < 100 && answered() < pongs; i++) await sleep(100);
  expect(answered(), 'pongs').to.be.at.least(pongs);
  expect(c.logs.filter((l) => l.msg === 'the XMPP server did not answer a ping')).to.deep.equal([]);
}
