// Faults end to end: SIGTERM with transfers running, and ejabberd restarting
// under an in-band transfer. Receivers are slixmpp clients; the component runs
// as its own process where signals and exit codes matter.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReceiverProcess } from '../support/receiver.js';
import { startPurpleReceiver } from '../support/purple.js';
import { startSlixReceiver } from '../support/slix.js';
import { ComponentProcess, getEjabberd, getIntranet, sleep, startComponent, user } from './harness.js';
import { siAnswer } from '../support/si.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let counter = 610000 + Math.floor(Math.random() * 80000);

async function publish(body: Buffer): Promise<string> {
  const project = String(counter++);
  (await getIntranet()).projects.set(project, { kind: 'file', body });
  return project;
}

async function receiver(name: string, resource = 'slix'): Promise<{ rx: ReceiverProcess; outDir: string }> {
  const ej = await getEjabberd();
  const u = await user(name);
  const outDir = await mkdtemp(join(tmpdir(), 'xr-rx-faults-'));
  const rx = await startSlixReceiver({
    jid: `${u.jid}/${resource}`,
    password: u.password,
    host: '127.0.0.1',
    port: ej.c2sPort,
    outDir,
    timeoutSec: 300,
  });
  return { rx, outDir };
}

// Slow in-band settings: 64-byte blocks, one in flight, so a transfer lasts long enough to interrupt.
const slowIbb = { XR_TRANSFER_METHODS: 'ibb', XR_IBB_BLOCK_SIZE: '64', XR_IBB_WINDOW: '1' };

describe('integration: graceful shutdown (SIGTERM)', function () {
  this.timeout(120000);

  it('lets a running transfer finish, then exits 0 with nothing left in the spool', async () => {
    const intranet = await getIntranet();
    const comp = await ComponentProcess.spawn({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      ...slowIbb,
      XR_SHUTDOWN_GRACE_MS: '60000',
    });
    const { rx, outDir } = await receiver('gina');
    try {
      const body = randomBytes(200_000);
      const project = await publish(body);
      rx.send(`${project}@${(await getEjabberd()).componentDomain}`, 'report');
      await comp.waitForLog((l) => l.msg === 'offer accepted' && l.project === project, 30000);
      comp.proc.kill('SIGTERM');
      const got = await rx.waitFor((e) => e.event === 'received' || e.event === 'failed', 90000);
      expect(got.event).to.equal('received');
      expect(got.sha256).to.equal(sha256(body));
      await rx.waitFor((e) => e.event === 'message' && /^Delivered status-\d+\.pdf/.test(String(e.body)), 30000);
      expect(await comp.exited).to.equal(0);
      expect(comp.logs.some((l) => l.msg === 'waiting for running requests')).to.equal(true);
      expect(await readdir(comp.spoolDir)).to.deep.equal([]);
    } finally {
      await comp.stop();
      await rx.quit();
      await rm(outDir, { recursive: true, force: true });
      await rm(comp.spoolDir, { recursive: true, force: true });
    }
  });

  it('cuts transfers still running after the grace period, tells the user, and exits 0', async () => {
    const intranet = await getIntranet();
    const comp = await ComponentProcess.spawn({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      ...slowIbb,
      XR_SHUTDOWN_GRACE_MS: '0',
    });
    const { rx, outDir } = await receiver('hank');
    try {
      const project = await publish(randomBytes(2_000_000));
      rx.send(`${project}@${(await getEjabberd()).componentDomain}`, 'report');
      await comp.waitForLog((l) => l.msg === 'offer accepted' && l.project === project, 30000);
      await sleep(300);
      comp.proc.kill('SIGTERM');
      const msg = await rx.waitFor((e) => e.event === 'message' && /shutting down/.test(String(e.body)), 30000);
      expect(msg.body).to.equal(
        `The report service is shutting down, so the transfer of status-${project}.pdf was stopped. Please ask again in a minute.`,
      );
      expect(await comp.exited).to.equal(0);
      expect(comp.logs.some((l) => l.msg === 'delivered')).to.equal(false);
      expect(rx.events.some((e) => e.event === 'received')).to.equal(false);
      expect(await readdir(comp.spoolDir)).to.deep.equal([]);
    } finally {
      await comp.stop();
      await rx.quit();
      await rm(outDir, { recursive: true, force: true });
      await rm(comp.spoolDir, { recursive: true, force: true });
    }
  });
});

describe('integration: SIGTERM during an in-band transfer whose download is still arriving (libpurple)', function () {
  this.timeout(120000);

  it('tells the user the service is shutting down, not that the intranet failed', async () => {
    const intranet = await getIntranet();
    const comp = await ComponentProcess.spawn({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_TRANSFER_METHODS: 'ibb',
      XR_IBB_BLOCK_SIZE: '4096',
      XR_IBB_WINDOW: '1',
      XR_SHUTDOWN_GRACE_MS: '0',
    });
    const ej = await getEjabberd();
    const u = await user('quentin');
    const outDir = await mkdtemp(join(tmpdir(), 'xr-rx-faults-'));
    const rx = await startPurpleReceiver({
      jid: `${u.jid}/purple`,
      password: u.password,
      host: '127.0.0.1',
      port: ej.c2sPort,
      outDir,
      timeoutSec: 300,
    });
    let rest!: () => void;
    try {
      const body = randomBytes(4_000_000);
      const project = String(counter++);
      // the headers and 1 MB at once (the offer goes out), the rest only after the test
      intranet.projects.set(project, {
        kind: 'split',
        body,
        at: 1_000_000,
        rest: new Promise<void>((r) => (rest = r)),
      });
      rx.send(`${project}@${ej.componentDomain}`, 'report');
      await comp.waitForLog((l) => l.msg === 'offer accepted' && l.project === project, 30000);
      await sleep(300);
      comp.proc.kill('SIGTERM'); // past the grace period at once: cuts the transfer and the download
      const msg = await rx.waitFor(
        (e) => e.event === 'message' && /status-\d+\.pdf/.test(String(e.body)) && !/^Sending/.test(String(e.body)),
        30000,
      );
      expect(msg.body).to.equal(
        `The report service is shutting down, so the transfer of status-${project}.pdf was stopped. Please ask again in a minute.`,
      );
      expect(await comp.exited).to.equal(0);
      expect(comp.logs.some((l) => l.msg === 'delivered')).to.equal(false);
      expect(rx.events.some((e) => e.event === 'received')).to.equal(false);
    } finally {
      rest?.();
      await comp.stop();
      await rx.quit();
      await rm(outDir, { recursive: true, force: true });
      await rm(comp.spoolDir, { recursive: true, force: true });
    }
  });
});

describe('integration: ejabberd restarts under an in-band transfer', function () {
  this.timeout(180000);

  it('fails the transfer cleanly, tells the user once reachable, and never reports it delivered', async () => {
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      ...slowIbb,
    });
    const first = await receiver('ivan');
    let second: { rx: ReceiverProcess; outDir: string } | undefined;
    try {
      const project = await publish(randomBytes(2_000_000));
      first.rx.send(`${project}@${ej.componentDomain}`, 'report');
      const deadline = Date.now() + 30000;
      while (!comp.logged('offer accepted').some((l) => l.project === project) && Date.now() < deadline)
        await sleep(50);
      await sleep(300);
      await ej.restart(); // drops the component's link and the user's session alike
      await first.rx.exited;
      const back = Date.now() + 60000;
      while (comp.logged('connected to the XMPP server').length < 2 && Date.now() < back) await sleep(100);
      // ejabberd's shutdown ends the user's session and the component's link in an
      // order of its own: the component sees either its link drop first (it says it
      // will offer again, then finds the user gone) or the user's unavailable presence
      // first (the offer ends as "went offline"). Each is logged exactly once, and the
      // user learns the file did not arrive either way.
      const interrupted = comp.logged(/interrupted by a server disconnect/).filter((l) => l.project === project);
      const gone = comp
        .logged('requester went offline; ending its offers')
        .filter((l) => String(l.jid).startsWith('ivan@'));
      expect(interrupted.length + gone.length, 'one cause logged').to.be.at.least(1);
      expect(interrupted.length, 'interrupted at most once').to.be.at.most(1);
      // The user logs in again: what the component said meanwhile waits in offline storage.
      second = await receiver('ivan', 'again');
      const final = await second.rx.waitFor(
        (e) => e.event === 'message' && /^Could not send/.test(String(e.body)),
        60000,
      );
      expect(String(final.body)).to.match(new RegExp(`^Could not send status-${project}\\.pdf: `));
      expect(second.rx.events.some((e) => e.event === 'message' && /offering it again/.test(String(e.body)))).to.equal(
        interrupted.length === 1,
      );
      expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
      // and it still serves: a new request to the new session is delivered
      const body = randomBytes(3000);
      const next = await publish(body);
      second.rx.send(`${next}@${ej.componentDomain}`, 'report');
      const got = await second.rx.waitFor((e) => e.event === 'received' && e.name === `status-${next}.pdf`, 60000);
      expect(got.sha256).to.equal(sha256(body));
    } finally {
      await first.rx.quit();
      if (second) {
        await second.rx.quit();
        await rm(second.outDir, { recursive: true, force: true });
      }
      await rm(first.outDir, { recursive: true, force: true });
      await comp.stop();
    }
  });
});

describe('integration: ejabberd restarts under a direct (S5B) transfer', function () {
  this.timeout(180000);

  it('lets the transfer finish over its own TCP connection and reports it once', async () => {
    const { XmppUser } = await import('../support/xmpp-user.js');
    const { xml } = await import('@xmpp/client');
    const { connect } = await import('node:net');
    const { dstAddr } = await import('../../src/transfer/s5b/socks5.js');
    const { NS } = await import('../../src/xmpp/namespaces.js');
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_TRANSFER_METHODS: 's5b',
    });
    const u = await user('sloane');
    const slow = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: u.username,
      password: u.password,
      resource: 'slow',
    });
    const body = randomBytes(20_000_000);
    let received: Promise<string> | undefined;
    // A receiver that reads slowly (a pause after each chunk), so the restart lands mid-stream.
    slow.xmpp.middleware.use(async (ctx, next) => {
      const st = ctx.stanza;
      if (st.getChild('si', NS.SI)) {
        return siAnswer(NS.BYTESTREAMS);
      }
      const q = st.getChild('query', NS.BYTESTREAMS);
      if (!q || st.attrs.type !== 'set') return next();
      const host = q.getChildren('streamhost')[0];
      const addr = dstAddr(q.attrs.sid!, st.attrs.from!, slow.jid);
      const sock = connect({ host: host.attrs.host!, port: Number(host.attrs.port) });
      await new Promise((r) => sock.once('connect', r));
      sock.write(
        Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 3, addr.length]), Buffer.from(addr), Buffer.from([0, 0])]),
      );
      let header = 2 + 5 + addr.length + 2;
      const hash = createHash('sha256');
      let total = 0;
      received = new Promise<string>((resolve) => {
        sock.on('data', (c: Buffer) => {
          const skip = Math.min(header, c.length);
          header -= skip;
          const data = c.subarray(skip);
          hash.update(data);
          total += data.length;
          if (total >= body.length) {
            sock.end();
            resolve(hash.digest('hex'));
            return;
          }
          sock.pause();
          setTimeout(() => sock.resume(), 30);
        });
      });
      return xml('query', { xmlns: NS.BYTESTREAMS, sid: q.attrs.sid }, xml('streamhost-used', { jid: host.attrs.jid }));
    });
    try {
      const project = await publish(body);
      await slow.say(`${project}@${ej.componentDomain}`, 'report');
      const deadline = Date.now() + 30000;
      while (!comp.logged('bytestream connected').some((l) => l.project === project) && Date.now() < deadline)
        await sleep(50);
      await ej.restart();
      expect(await received).to.equal(sha256(body));
      const done = Date.now() + 60000;
      while (!comp.logged('delivered').some((l) => l.project === project) && Date.now() < done) await sleep(100);
      expect(comp.logged('delivered').filter((l) => l.project === project)).to.have.length(1);
      // the server link dropped while the bytes were flowing
      const lost = comp.logged(/^disconnected from the XMPP server; reconnecting/)[0];
      expect(comp.logged('bytestream connected').find((l) => l.project === project)!.time).to.be.below(
        lost.time as number,
      );
      expect(comp.logged('delivered').find((l) => l.project === project)!.time).to.be.above(lost.time as number);
      expect(comp.logged('transfer failed').some((l) => l.project === project)).to.equal(false);
      // the user's session died with the restart: the closing line waits in offline storage, once
      const again = await XmppUser.login({
        port: ej.c2sPort,
        domain: ej.domain,
        username: u.username,
        password: u.password,
        resource: 'back',
      });
      try {
        await again.waitForMessage(
          `${project}@`,
          /^Delivered status-\d+\.pdf \(19\.1 MiB\) by direct connection\.$/,
          30000,
        );
        await sleep(500);
        expect(again.messagesFrom(`${project}@`).filter((t) => t.startsWith('Delivered'))).to.have.length(1);
      } finally {
        await again.logout();
      }
    } finally {
      await slow.logout();
      await comp.stop();
    }
  });
});

describe('integration: a component secret ejabberd refuses', function () {
  this.timeout(60000);

  it('exits 2 at start-up (which systemd does not restart) with what ejabberd said, never logging the secret', async () => {
    const comp = await ComponentProcess.spawn({ XR_XMPP_SECRET: 'not-the-listener-secret' }, { online: false });
    try {
      expect(await comp.exited).to.equal(2);
      const fatal = comp.logs.filter((l) => l.level === 60);
      expect(fatal, 'one fatal line').to.have.length(1);
      expect(fatal[0].msg).to.match(/^the XMPP server refused the component \S+ \(not-authorized\): /);
      expect(comp.logs.filter((l) => l.msg === 'connected to the XMPP server')).to.have.length(0);
      expect(JSON.stringify(comp.logs)).to.not.include('not-the-listener-secret');
    } finally {
      await comp.stop();
      await rm(comp.spoolDir, { recursive: true, force: true });
    }
  });
});

describe('integration: kill -9 during a transfer, then a restart', function () {
  this.timeout(120000);

  it('the restarted component tells the user the file did not arrive, once, and how to get it', async () => {
    const intranet = await getIntranet();
    const ej = await getEjabberd();
    const env = {
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      ...slowIbb,
    };
    const first = await ComponentProcess.spawn(env);
    const { rx, outDir } = await receiver('rita');
    let second: ComponentProcess | undefined;
    try {
      const project = await publish(randomBytes(2_000_000));
      rx.send(`${project}@${ej.componentDomain}`, 'report');
      await first.waitForLog((l) => l.msg === 'offer accepted' && l.project === project, 30000);
      await sleep(300);
      first.proc.kill('SIGKILL');
      await first.exited;
      // the same spool folder, as a restarted service has
      second = await ComponentProcess.spawn({ ...env, XR_REPORTS_SPOOL_DIR: first.spoolDir }, { online: true });
      const told = await rx.waitFor(
        (e) => e.event === 'message' && String(e.body).startsWith('The report service restarted'),
        30000,
      );
      expect(told.body).to.equal(
        `The report service restarted while sending status-${project}.pdf, so it did not arrive. Send me any message to get it again.`,
      );
      expect(told.from).to.equal(`${project}@${ej.componentDomain}/reports`);
      expect(second.logs.filter((l) => l.msg === 'request cut by a restart; telling its user')).to.have.length(1);
      expect(rx.events.some((e) => e.event === 'received')).to.equal(false);
      // nothing is left to tell a third time
      expect((await readdir(first.spoolDir)).filter((n) => n.startsWith('inflight-'))).to.deep.equal([]);
    } finally {
      await second?.stop();
      await first.stop();
      await rx.quit();
      await rm(outDir, { recursive: true, force: true });
      await rm(first.spoolDir, { recursive: true, force: true });
      if (second) await rm(second.spoolDir, { recursive: true, force: true });
    }
  });
});
