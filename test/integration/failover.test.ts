// mod_xr_failover (scripts/ejabberd/mod_xr_failover.erl), end to end on
// loopback: one private ejabberd with domain_balancing (bare_source,
// component_number 2) and the module loaded, two component processes without
// xmpp.balancing.slots.
// - A request ejabberd wrote to the slot-1 instance's socket, which the
//   instance never read (stopped, then SIGKILLed), is routed again when the
//   connection goes down and served by the other instance, byte-exact, once.
// - Restarted, the instance takes its slot back. SIGKILLed again, its user's
//   request sent at once is not dropped (as ejabberd 23.01 alone does, see
//   takeover.test.ts) but served by the other instance; the other slot's
//   users are not moved.
// - With every instance gone, a request is answered with an error the
//   libpurple user reads, not silence.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startEjabberd, type EjabberdInstance } from '../support/ejabberd.js';
import { field } from '../support/receiver.js';
import { waitForUnread } from '../support/sockets.js';
import { userInSlot } from './cluster-lab.js';
import { expectOwnIqAnswers, newReplayLines, replayLines } from './failover-checks.js';
import { ComponentProcess, getIntranet } from './harness.js';
import { expectDelivered, projectIds, requestReport, startReceiver, stopReceiver, type Rx } from './receivers.js';

// its own ejabberd, clear of the harness's (base … +4), takeover.test.ts's (+60) and Prosody's (+1000)
const PORT_BASE = Number(process.env.XR_TEST_PORT_BASE ?? 25222) + 70;

const { publish } = projectIds(890000);

// Once as the module alone, once beside the component's own slot probes (xmpp.balancing.slots):
// with the module the probes never see a dead slot, so nothing is taken over and nothing changes.
for (const slots of [0, 2])
  describe(`integration: mod_xr_failover hands a dead balancing slot to a live connection (ejabberd${slots ? ', with xmpp.balancing.slots' : ''})`, function () {
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
          // both instances ping the server and discover its proxy: the answers come from the server's
          // domain and the proxy's JID, which domain_balancing alone hands to one instance
          XR_XMPP_KEEPALIVE_MS: '500',
          XR_XMPP_BALANCING_SLOTS: String(slots),
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

    const runDir = join(process.cwd(), '.run', 'failover-ejabberd');
    const ejLog = join(runDir, 'logs', 'ejabberd.log');

    before(async function () {
      this.timeout(300000);
      ej = await startEjabberd({
        runDir,
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

    it("each instance gets the answers to its own IQs: the server's pongs, its disco items, the proxy's streamhost", async () => {
      for (const c of comps) await expectOwnIqAnswers(c, `proxy.${ej.domain}`, 3);
    });

    it('a request written to an instance that died without reading it is served by the other instance', async () => {
      const before = (await replayLines(ejLog)).length;
      const victimProc = comps[1].proc;
      victimProc.kill('SIGSTOP');
      const body = randomBytes(250_000);
      const project = await publish(body);
      const asked = requestReport(ej, victim, project, 120000);
      // ejabberd has handed the request to the stopped instance's connection: the bytes wait in its socket
      await waitForUnread(victimProc.pid!, ej.componentPort);
      victimProc.kill('SIGKILL');
      await comps[1].exited;
      expectDelivered(await asked, body, 's5b');
      expect(byWho(project), 'served once, by the survivor').to.deep.equal([1, 0]);
      // the log line is written in the background: it may follow the user's "Delivered"
      await comps[0].waitForLog((l) => l.msg === 'delivered' && l.project === project, 30000);
      expect(comps[0].logs.filter((l) => l.msg === 'delivered' && l.project === project)).to.have.length(1);
      const lines = await newReplayLines(ejLog, before);
      expect(lines, 'ejabberd logged the request routed again').to.have.length(1);
      expect(lines[0]).to.match(/ 1 unanswered request\(s\) held by a component connection that went down/);
    });

    it('restart: the instance takes its slot again and serves its user', async () => {
      comps[1] = await spawn();
      expect(byWho(await ask(victim, randomBytes(200_000)))).to.deep.equal([0, 0, 1]);
      expect(byWho(await ask(other, randomBytes(200_000)))).to.deep.equal([1, 0, 0]);
    });

    it("SIGKILL: the dead slot user's request, sent at once, is served by the other instance", async () => {
      const killedAt = Date.now();
      comps[1].proc.kill('SIGKILL');
      await comps[1].exited;
      // sent while ejabberd may not yet have seen the TCP close: kept and routed again, or routed past the freed slot
      const p = await ask(victim, randomBytes(300_000));
      expect(byWho(p), 'served by the survivor').to.deep.equal([1, 0, 0]);
      await comps[0].waitForLog((l) => l.msg === 'delivered' && l.project === p, 30000);
      expect(comps[0].logs.filter((l) => l.msg === 'delivered' && l.project === p)).to.have.length(1);
      // the live slot's user stays where it was
      expect(byWho(await ask(other, randomBytes(100_000)))).to.deep.equal([1, 0, 0]);
      process.stderr.write(`      (SIGKILL → the dead slot's user has the report ${Date.now() - killedAt} ms later)\n`);
    });

    it('restart again: the killed instance takes its slot back and serves its user', async () => {
      comps[1] = await spawn();
      expect(byWho(await ask(victim, randomBytes(200_000)))).to.deep.equal([0, 0, 0, 1]);
      expect(byWho(await ask(other, randomBytes(200_000)))).to.deep.equal([1, 0, 0, 0]);
      // the module kept every slot alive for the probes: nobody took one over
      expect(all.flatMap((c) => c.logs.filter((l) => l.msg === 'balancing slot taken over'))).to.deep.equal([]);
    });

    it('every instance gone: the user reads that the service is not connected, and nothing is served', async () => {
      for (const c of comps) {
        c.proc.kill('SIGKILL');
        await c.exited;
      }
      const project = await publish(randomBytes(10_000));
      victim.proc.send(`${project}@${ej.componentDomain}`, 'report');
      // libpurple shows a message's delivery error in a dialog: "Message delivery to JID failed: TEXT"
      const err = await victim.proc.waitFor(
        (e) => e.event === 'notice' && field(e, 'secondary').startsWith(`Message delivery to ${project}@`),
        60000,
      );
      expect(field(err, 'secondary')).to.equal(
        `Message delivery to ${project}@${ej.componentDomain} failed: ` +
          'The service is not connected at the moment (it is restarting); please ask again in a minute.',
      );
      expect(byWho(project)).to.deep.equal([0, 0, 0, 0]);
    });
  });
