// mod_xr_failover (scripts/ejabberd/mod_xr_failover.erl), end to end on
// loopback: one private ejabberd with domain_balancing (bare_source,
// component_number 2) and the module loaded, two component processes without
// xmpp.balancing.slots. SIGKILL the instance holding slot 1: a request its user
// sends once ejabberd has seen the connection close is not dropped (as ejabberd 23.01 alone does, see
// takeover.test.ts) but served at once by the other instance, byte-exact; the
// other slot's users are not moved. Start the killed one again: it takes its
// slot back and serves that user's next request.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { userInSlot } from './cluster-lab.js';
import { ComponentProcess, getIntranet } from './harness.js';
import { expectDelivered, projectIds, requestReport, startReceiver, stopReceiver, type Rx } from './receivers.js';

// its own ejabberd, clear of the harness's (base … +4), takeover.test.ts's (+60) and Prosody's (+1000)
const PORT_BASE = Number(process.env.XR_TEST_PORT_BASE ?? 25222) + 70;

const { publish } = projectIds(890000);

describe('integration: mod_xr_failover hands a dead balancing slot to a live connection (ejabberd)', function () {
  this.timeout(600000);
  let ej: EjabberdInstance;
  const comps: ComponentProcess[] = [];
  const all: ComponentProcess[] = [];
  let victim: Rx; // libpurple, slot 1
  let other: Rx; // slixmpp, slot 0

  const spawn = async () => {
    const c = await ComponentProcess.spawn(
      {
        XR_REPORTS_SOURCE: 'http',
        XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
        XR_DISCOVER_PROXIES: 'false',
      },
      { ejabberd: ej },
    );
    all.push(c);
    return c;
  };
  const byWho = (project: string) =>
    all.map((c) => c.logs.filter((l) => l.msg === 'report requested' && l.project === project).length);
  async function ask(rx: Rx, body: Buffer) {
    const project = await publish(body);
    expectDelivered(await requestReport(ej, rx, project, 120000), body, 's5b');
    return project;
  }

  before(async function () {
    this.timeout(300000);
    ej = await startEjabberd({
      runDir: join(process.cwd(), '.run', 'failover-ejabberd'),
      portBase: PORT_BASE,
      nodeName: 'xrfailover@localhost',
      domainBalancing: 'bare_source:2',
      failover: true,
    });
    // the first to connect holds slot 0, the second slot 1 (ejabberd_router_mnesia fills them in order)
    comps.push(await spawn());
    comps.push(await spawn());
    victim = await startReceiver(ej, 'purple', await userInSlot('fov', ej.domain, 1));
    other = await startReceiver(ej, 'slix', await userInSlot('foo', ej.domain, 0));
  });

  after(async function () {
    this.timeout(120000);
    for (const rx of [victim, other]) await stopReceiver(rx).catch(() => {});
    for (const c of all) await c.stop().catch(() => {});
    await ej?.stop();
  });

  it('with every instance up, each slot is served by its own instance', async () => {
    expect(byWho(await ask(victim, randomBytes(200_000)))).to.deep.equal([0, 1]);
    expect(byWho(await ask(other, randomBytes(200_000)))).to.deep.equal([1, 0]);
  });

  it("SIGKILL: the dead slot user's next request is served at once by the other instance", async () => {
    const killedAt = Date.now();
    comps[1].proc.kill('SIGKILL');
    await comps[1].exited;
    // ejabberd's connection process must see the TCP close first (a stanza handed to it before that
    // is lost with the connection, module or not); then the slot is free and the module moves its stanzas
    await sleep(1000);
    const p = await ask(victim, randomBytes(300_000));
    expect(byWho(p), 'served by the survivor').to.deep.equal([1, 0]);
    expect(comps[0].logs.filter((l) => l.msg === 'delivered' && l.project === p)).to.have.length(1);
    // the live slot's user stays where it was
    expect(byWho(await ask(other, randomBytes(100_000)))).to.deep.equal([1, 0]);
    process.stderr.write(`      (SIGKILL → the dead slot's user has the report ${Date.now() - killedAt} ms later)\n`);
  });

  it('restart: the killed instance takes its slot again and serves its user', async () => {
    comps[1] = await spawn();
    expect(byWho(await ask(victim, randomBytes(200_000)))).to.deep.equal([0, 0, 1]);
    expect(byWho(await ask(other, randomBytes(200_000)))).to.deep.equal([1, 0, 0]);
  });
});
