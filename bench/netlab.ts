// Bench item 8: the network lab (test/support/netlab.ts). The home user's
// internet link is limited by tbf to 20 Mbit/s (netem is not in this
// kernel); the office LAN is not limited. Request → file saved (the receiver's
// `received` event) for: office S5B direct through our streamhost, home S5B
// through ejabberd's proxy65 (the company firewall drops our streamhost port
// from outside), home IBB (no proxy), and the home user's first against its
// second request (the streamhost memory offers the proxy first the second time).
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import {
  LAB_PORTS,
  requestReport,
  sha256,
  startLabComponent,
  startLabReceiver,
  startLabWorld,
  stopLabWorld,
  type LabReceiver,
  type LabWorld,
} from '../test/integration/lab.js';
import type { ComponentProcess } from '../test/integration/harness.js';
import { field } from '../test/support/receiver.js';
import { fmt, fmtSummary, MB, MiB, summarize } from './lib.js';

export const HOME_MBIT = 20;

export interface LabBenchOut {
  row: (r: { item: string; figure: string; value: string; baseline?: string; ratio?: string }) => void;
  log: (s: string) => void;
  quick: boolean;
}

let log: (s: string) => void = () => {};
let projectCounter = 990000 + Math.floor(Math.random() * 5000);

async function timed(w: LabWorld, rx: LabReceiver, size: number, method: string): Promise<number> {
  const body = randomBytes(size);
  const project = String(projectCounter++);
  await w.intranet.publish(project, body);
  const t0 = performance.now();
  const end = await requestReport(w, rx, project, 180000);
  const ms = performance.now() - t0;
  log(`item 8: ${rx.jid} ${size / MiB} MiB by ${method} in ${ms.toFixed(0)} ms`);
  if (end.event !== 'received' || end.method !== method || field(end, 'sha256') !== sha256(body))
    throw new Error(`project ${project}: expected ${method} byte-exact, got ${JSON.stringify(end)}`);
  return ms;
}

export async function benchLab(o: LabBenchOut): Promise<void> {
  log = o.log;
  const runs = o.quick ? 1 : 3;
  // office at most 64 MiB: reports.maxBytes (100 MB by default) refuses more
  const sizes = { office: (o.quick ? 32 : 64) * MiB, proxy: (o.quick ? 8 : 16) * MiB, ibb: (o.quick ? 2 : 4) * MiB };
  const linkMBs = (HOME_MBIT * 1e6) / 8 / MB;
  let w: LabWorld | undefined;
  let component: ComponentProcess | undefined;
  const rxs: LabReceiver[] = [];
  const stopAll = async () => {
    for (const rx of rxs.splice(0)) {
      await rx.proc.quit();
      await rm(rx.outDir, { recursive: true, force: true });
    }
    await component?.stop();
    component = undefined;
  };
  try {
    w = await startLabWorld();
    await w.lab.dropFromOutside('component', LAB_PORTS.streamhost);
    await w.lab.limitHome(HOME_MBIT);
    o.log(`item 8: lab ${w.lab.prefix} up, home link ${HOME_MBIT} Mbit/s (tbf), office unlimited`);
    const rate = (size: number, ms: number) => size / MB / (ms / 1000);

    // The default component: our streamhost on every address, ejabberd's proxy65 found at connect.
    component = await startLabComponent(w);
    const office = await startLabReceiver(w, 'purple', 'office', 'benchoffice');
    rxs.push(office);
    const officeR: number[] = [];
    const homeFirst: number[] = [];
    const homeSecond: number[] = [];
    for (let i = 0; i < runs; i++) {
      officeR.push(rate(sizes.office, await timed(w, office, sizes.office, 's5b')));
      // a new home user each run: its first request waits out the dropped streamhost, its second does not
      const home = await startLabReceiver(w, 'purple', 'home', `benchhome${i}`);
      rxs.push(home);
      homeFirst.push(rate(sizes.proxy, await timed(w, home, sizes.proxy, 's5b')));
      homeSecond.push(rate(sizes.proxy, await timed(w, home, sizes.proxy, 's5b')));
    }
    await stopAll();

    // No proxy: the home user gets it in-band.
    component = await startLabComponent(w, { XR_DISCOVER_PROXIES: 'false' });
    const homeIbb = await startLabReceiver(w, 'purple', 'home', 'benchhomeibb');
    rxs.push(homeIbb);
    const ibbR: number[] = [];
    for (let i = 0; i < runs; i++) ibbR.push(rate(sizes.ibb, await timed(w, homeIbb, sizes.ibb, 'ibb')));
    await stopAll();

    const office_ = summarize(officeR);
    o.row({
      item: '8',
      figure: `office, S5B direct (unlimited LAN), ${sizes.office / MiB} MiB, request → saved`,
      value: `${fmtSummary(office_)} MB/s`,
    });
    for (const [name, xs, size] of [
      ['home, S5B through proxy65, second request', homeSecond, sizes.proxy],
      ['home, S5B through proxy65, first request (waits out the dropped streamhost)', homeFirst, sizes.proxy],
      ['home, IBB (no proxy)', ibbR, sizes.ibb],
    ] as const) {
      const s = summarize([...xs]);
      o.row({
        item: '8',
        figure: `${name}, ${size / MiB} MiB, request → saved`,
        value: `${fmtSummary(s)} MB/s`,
        baseline: `home link ${fmt(linkMBs, 2)} MB/s (${HOME_MBIT} Mbit/s)`,
        ratio: `${fmt(s.median / linkMBs, 2)}×`,
      });
    }
    const f = summarize(homeFirst);
    const sec = summarize(homeSecond);
    o.row({
      item: '8',
      figure: 'home, second request against first (same user, same size)',
      value: `${fmt(sec.median / f.median, 2)}× the first's rate`,
    });
  } finally {
    await stopAll().catch(() => {});
    await stopLabWorld(w);
  }
}
