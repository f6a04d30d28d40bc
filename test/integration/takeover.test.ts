// Slot takeover (issue 14, the SIGKILL fault), end to end on loopback: one
// private ejabberd with domain_balancing (bare_source, component_number 2)
// and two component processes with xmpp.balancing.slots = 2. SIGKILL the one
// holding slot 1: the survivor finds the slot dead by its probes, takes it
// with a spare connection, and a user of that slot (libpurple) gets the
// report byte-exact from it. Start the killed one again: it finds itself
// slotless, asks, the survivor gives the slot back once the transfer running
// through the spare has ended, and the user's next request is served by the
// restarted instance. Nobody is served twice; every "Delivered" is true.
// Figures (kill → taken over → served, the handover window) are printed, not asserted.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { field, type ReceiverEvent } from '../support/receiver.js';
import { userInSlot } from './cluster-lab.js';
import { xml } from '@xmpp/client';
import { NS } from '../../src/xmpp/namespaces.js';
import { XmppUser } from '../support/xmpp-user.js';
import { ComponentProcess, freePort, getIntranet, user, type LogLine } from './harness.js';
import { expectDelivered, projectIds, requestReport, startReceiver, stopReceiver, type Rx } from './receivers.js';

// its own ejabberd, clear of the harness's (XR_TEST_PORT_BASE … +4) and Prosody's (+1000)
const PORT_BASE = Number(process.env.XR_TEST_PORT_BASE ?? 25222) + 60;

const { publish } = projectIds(880000);

describe('integration: balancing slot takeover after SIGKILL, and give-back (ejabberd domain_balancing)', function () {
  this.timeout(600000);
  let ej: EjabberdInstance;
  const comps: ComponentProcess[] = [];
  /** every instance process ever started, the killed one included */
  const all: ComponentProcess[] = [];
  let victim: Rx; // libpurple, slot 1
  let ibbUser: Rx; // slixmpp, IBB only, slot 1: a transfer running through the spare at give-back
  let other: Rx; // slixmpp, slot 0
  const projects: string[] = [];

  const env = async (): Promise<Record<string, string>> => ({
    XR_REPORTS_SOURCE: 'http',
    XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
    XR_DISCOVER_PROXIES: 'false',
    XR_IBB_BLOCK_SIZE: '4096',
    XR_XMPP_BALANCING_SLOTS: '2',
    // The give-back must wait for the running IBB transfer however slow the machine is: under CI's
    // load that transfer once outlasted the default 30 s, and the slot was given back cut short.
    XR_XMPP_BALANCING_RELEASE_WAIT_MS: '170000',
  });
  const metricsPorts = new Map<ComponentProcess, number>();
  const spawn = async () => {
    const port = await freePort();
    const c = await ComponentProcess.spawn(
      { ...(await env()), XR_METRICS_BIND_HOST: '127.0.0.1', XR_METRICS_BIND_PORT: String(port) },
      { ejabberd: ej },
    );
    metricsPorts.set(c, port);
    all.push(c);
    return c;
  };
  /** what an operator reads: /healthz's balancing part and the two slot gauges */
  async function slotState(c: ComponentProcess) {
    const base = `http://127.0.0.1:${metricsPorts.get(c)}`;
    const h = (await (await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(10000) })).json()) as {
      balancing?: Record<string, unknown>;
    };
    const [held, dead] = await gauges(c, ['balancing_slots_held', 'balancing_dead_slot']);
    return { healthz: h.balancing, held, dead };
  }
  /** the named xmpp_reports_ gauges of one /metrics read, in order */
  async function gauges(c: ComponentProcess, names: string[]): Promise<number[]> {
    const res = await fetch(`http://127.0.0.1:${metricsPorts.get(c)}/metrics`, { signal: AbortSignal.timeout(10000) });
    const text = await res.text();
    return names.map((name) => Number(new RegExp(`^xmpp_reports_${name} (\\S+)$`, 'm').exec(text)?.[1]));
  }
  const requested = (c: ComponentProcess, project: string) =>
    c.logs.filter((l) => l.msg === 'report requested' && l.project === project);
  const byWho = (project: string) => all.map((c) => requested(c, project).length);
  const time = (l: LogLine) => Number(l.time);

  before(async function () {
    this.timeout(300000);
    ej = await startEjabberd({
      runDir: join(process.cwd(), '.run', 'takeover-ejabberd'),
      portBase: PORT_BASE,
      nodeName: 'xrtakeover@localhost',
      domainBalancing: 'bare_source:2',
    });
    // the first to connect holds slot 0, the second slot 1 (ejabberd_router_mnesia fills them in order)
    comps.push(await spawn());
    comps.push(await spawn());
    // each sees the other live in a probe round, and neither took the other's slot while it started
    for (const c of comps)
      await c.waitForLog((l) => l.msg === 'balancing probe round' && (l.peers as string[]).length === 1, 30000);
    for (const c of comps)
      expect(c.logs.filter((l) => /^balancing slot (dead|taken over|given back)/.test(l.msg))).to.deep.equal([]);
    victim = await startReceiver(ej, 'purple', await userInSlot('tkv', ej.domain, 1));
    ibbUser = await startReceiver(ej, 'slix', await userInSlot('tki', ej.domain, 1), { methods: ['ibb'] });
    other = await startReceiver(ej, 'slix', await userInSlot('tko', ej.domain, 0));
  });

  after(async function () {
    this.timeout(120000);
    for (const rx of [victim, ibbUser, other]) await stopReceiver(rx).catch(() => {});
    for (const c of all) await c.stop().catch(() => {});
    await ej?.stop();
  });

  async function ask(rx: Rx, body: Buffer, method: 's5b' | 'ibb') {
    const project = await publish(body);
    projects.push(project);
    const r = await requestReport(ej, rx, project, 120000);
    expectDelivered(r, body, method);
    return project;
  }

  it('serves each slot from the instance holding it', async () => {
    const p1 = await ask(victim, randomBytes(200_000), 's5b');
    const p0 = await ask(other, randomBytes(200_000), 's5b');
    expect(byWho(p1)).to.deep.equal([0, 1]);
    expect(byWho(p0)).to.deep.equal([1, 0]);
    for (const c of comps)
      expect(await slotState(c), 'each holds its own slot').to.deep.equal({
        healthz: { slots: 2, holdsSlot: true, spares: 0 },
        held: 1,
        dead: 0,
      });
  });

  it('SIGKILL: the survivor takes the dead slot over and serves its user; a request in the detection window is lost', async () => {
    const killedAt = Date.now();
    comps[1].proc.kill('SIGKILL');
    await comps[1].exited;
    // sent at once: ejabberd drops it (do_route/2 on a slot whose pid is undefined), nobody can see it
    const lost = await publish(randomBytes(1000));
    const n = victim.proc.events.length;
    victim.proc.send(`${lost}@${ej.componentDomain}`, 'report');
    const dead = await comps[0].waitForLog(
      (l) => time(l) >= killedAt && l.msg.startsWith('balancing slot dead'),
      30000,
    );
    const taken = await comps[0].waitForLog((l) => time(l) >= killedAt && l.msg === 'balancing slot taken over', 30000);
    const takenMs = Date.now() - killedAt;
    // the survivor's /healthz and gauges show the spare, and no dead slot, once a round has confirmed it
    // (healthz and the gauges are two reads: a round may end between them, so all of it is awaited)
    const want = { healthz: { slots: 2, holdsSlot: true, spares: 1 }, held: 2, dead: 0 };
    let st = await slotState(comps[0]);
    for (let i = 0; i < 100 && JSON.stringify(st) !== JSON.stringify(want); i++) {
      await sleep(100);
      st = await slotState(comps[0]);
    }
    expect(st).to.deep.equal(want);
    const p = await ask(victim, randomBytes(300_000), 's5b');
    const servedMs = Date.now() - killedAt;
    expect(byWho(p), 'served by the survivor').to.deep.equal([1, 0]);
    // the log line is written in the background: it may follow the user's "Delivered"
    await comps[0].waitForLog((l) => l.msg === 'delivered' && l.project === p, 30000);
    expect(
      comps[0].logs.filter((l) => l.msg === 'delivered' && l.project === p),
      'delivered by the survivor',
    ).to.have.length(1);
    // the dropped request never reached anyone
    expect(byWho(lost)).to.deep.equal([0, 0]);
    expect(
      victim.proc.events.slice(n).filter((e) => field(e, 'body').includes(lost) || field(e, 'name').includes(lost)),
    ).to.deep.equal([]);
    // An answer for an offer the killed instance made (an SI accept with an id the survivor never
    // sent) now reaches the survivor: the user is told, and the report is offered again.
    const u = await user(await userInSlot('tks', ej.domain, 1), ej);
    const client = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: u.username,
      password: u.password,
      resource: 'raw',
    });
    try {
      const again = await publish(randomBytes(1000));
      projects.push(again);
      await client.send(
        xml(
          'iq',
          { type: 'result', id: 'xr-fromthekilledone', to: `${again}@${ej.componentDomain}/reports` },
          xml('si', { xmlns: NS.SI }, xml('feature', { xmlns: NS.FEATURE_NEG })),
        ),
      );
      const told = await client.waitForMessage(`${again}@${ej.componentDomain}`, /no longer knows/, 30000);
      expect(told.getChildText('body')).to.match(/Offering the report again/);
      await comps[0].waitForLog((l) => l.msg === 'report requested' && l.project === again, 30000);
      const noted = comps[0].logs.filter((l) => l.msg === 'an answer for a transfer this instance did not start');
      expect(noted.map((l) => [l.project, l.what])).to.deep.equal([[again, 'si-accept']]);
      // The offer made again ends while this client is still online (its client library answers the
      // offer with an error): logged out first, an offer already on its way would be lost with the
      // session and keep the request, and so the spare's give-back in the next case, waiting.
      let active = NaN;
      for (let i = 0; i < 300 && active !== 0; i++) {
        if (i > 0) await sleep(100);
        [active] = await gauges(comps[0], ['active_requests']);
      }
      expect(active, 'the survivor ended the offer made again').to.equal(0);
    } finally {
      await client.logout();
    }
    process.stderr.write(
      `      (SIGKILL → slot seen dead ${time(dead) - killedAt} ms → taken over ${time(taken) - killedAt} ms (seen ${takenMs} ms) → report delivered ${servedMs} ms)\n`,
    );
  });

  it('restart: the restarted instance asks for its slot, gets it once the transfer through the spare is done, and serves the next request', async () => {
    // a transfer of a slot-1 user through the survivor's spare, running while the killed instance comes back
    const body = randomBytes(16 * 1024 * 1024); // 4096 IBB blocks: seconds, longer than the restart and the ask
    const running = await publish(body);
    projects.push(running);
    const runningEnd = requestReport(ej, ibbUser, running, 180000);
    await comps[0].waitForLog((l) => l.msg === 'offer accepted' && l.project === running, 60000);
    const restartedAt = Date.now();
    comps[1] = await spawn();
    const slotless = await comps[1].waitForLog((l) => l.msg.startsWith('this instance holds no balancing slot'), 30000);
    const given = await comps[0].waitForLog(
      (l) => time(l) >= restartedAt && l.msg.startsWith('balancing slot given back'),
      175000,
    );
    const taken = await comps[1].waitForLog((l) => l.msg === 'balancing slot taken over', 60000);
    // the give-back waited for the transfer, which finished byte-exact on the survivor
    expect(time(slotless), 'precondition: the ask came while the transfer ran').to.be.below(
      time(
        comps[0].logs.find((l) => l.msg === 'delivered' && l.project === running) ?? {
          level: 0,
          msg: '',
          time: Infinity,
        },
      ),
    );
    expect(given.msg).to.equal('balancing slot given back');
    expect(given.cutShort).to.equal(undefined);
    expectDelivered(await runningEnd, body, 'ibb');
    expect(byWho(running)).to.deep.equal([1, 0, 0]);
    const delivered = await comps[0]
      .waitForLog((l) => l.msg === 'delivered' && l.project === running, 30000)
      .catch(() => undefined);
    expect(delivered, 'the survivor logged the delivery').to.not.equal(undefined);
    expect(time(given)).to.be.at.least(time(delivered!));
    // the slot's users are the restarted instance's again
    const p = await ask(victim, randomBytes(300_000), 's5b');
    expect(byWho(p), 'served by the restarted instance').to.deep.equal([0, 0, 1]);
    // handover window: from the survivor closing its spare to the restarted instance's spare handshake
    const closing = comps[0].logs.find(
      (l) => l.msg === 'closing a spare connection' && l.why === 'a peer asked for its slot',
    );
    const online = comps[1].logs.find((l) => l.msg === 'spare connection online' && l.conn === taken.conn);
    expect(closing && online, 'the close and the handshake are logged').to.not.equal(undefined);
    process.stderr.write(
      `      (restart → slotless ${time(slotless) - restartedAt} ms; give-back waited ${String(given.waitedMs)} ms for the transfer; handover window (spare closed → new spare handshaken) ${time(online!) - time(closing!)} ms; taken over ${time(taken) - restartedAt} ms after the restart)\n`,
    );
  });

  it('nobody was served twice, and every "Delivered" the users read is true', () => {
    for (const project of projects)
      expect(
        byWho(project).reduce((a, b) => a + b, 0),
        project,
      ).to.equal(1);
    for (const rx of [victim, ibbUser, other]) {
      const said = rx.proc.events.filter(
        (e: ReceiverEvent) => e.event === 'message' && /^Delivered /.test(field(e, 'body')),
      );
      for (const m of said) {
        const name = /status-\d+\.pdf/.exec(field(m, 'body'))?.[0];
        expect(
          rx.proc.events.some((e) => e.event === 'received' && e.name === name),
          `"${field(m, 'body')}" with the file received`,
        ).to.equal(true);
      }
      const offers = rx.proc.events.filter((e) => e.event === 'offer').map((e) => field(e, 'name'));
      expect(new Set(offers).size, 'one offer per report').to.equal(offers.length);
    }
  });
});
