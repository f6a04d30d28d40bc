// SI file transfer end to end: the real ejabberd, the component, and two
// independent receiving clients (Pidgin's libpurple and slixmpp). Every
// transfer is checked by the bytes that landed on the receiver's disk.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { spoolContents } from '../support/reports.js';
import { freePort, getEjabberd, getIntranet, sleep, startComponent, user, type RunningComponent } from './harness.js';
import {
  expectDelivered,
  finalMessage,
  isEnd,
  projectIds,
  requestReport,
  startReceiver as startReceiverOn,
  stopReceiver,
  type Kind,
  type Rx,
} from './receivers.js';

const { fresh, publish } = projectIds(700000);
const startReceiver = async (kind: Kind, name: string, extra: Parameters<typeof startReceiverOn>[3] = {}) =>
  startReceiverOn(await getEjabberd(), kind, name, extra);
const request = async (rx: Rx, project: string, timeoutMs?: number) =>
  requestReport(await getEjabberd(), rx, project, timeoutMs);

for (const kind of ['purple', 'slix'] as const) {
  const label = kind === 'purple' ? 'libpurple (Pidgin)' : 'slixmpp';

  describe(`integration: SI file transfer to ${label}`, function () {
    this.timeout(300000);
    let rx: Rx;

    before(async function () {
      this.timeout(120000);
      rx = await startReceiver(kind, kind === 'purple' ? 'pat' : 'sam');
    });
    after(async () => {
      await stopReceiver(rx);
    });

    describe('with the built-in streamhost', () => {
      let comp: RunningComponent;
      before(async () => {
        comp = await startComponent({
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
          XR_IBB_BLOCK_SIZE: '4096',
        });
      });
      after(async () => {
        await comp.stop();
      });

      for (const size of [1, 4096, 4097, 50 * 1000 * 1000]) {
        it(`delivers ${size} bytes by SOCKS5 through the component's own streamhost, byte-exact`, async () => {
          const body = randomBytes(size);
          const project = await publish(body);
          const r = await request(rx, project);
          expectDelivered(r, body, 's5b');
          const log = comp.logged('delivered').find((l) => l.project === project);
          expect(log).to.include({ method: 's5b', bytes: size });
          expect(await spoolContents(comp.spoolDir)).to.deep.equal([]);
        });
      }

      for (const coding of ['chunked', 'gzip'] as const)
        it(`delivers a report the intranet sends ${coding === 'gzip' ? 'gzip-compressed, ' : ''}chunked without a size, byte-exact`, async () => {
          const body = Buffer.concat([randomBytes(700 * 1024), Buffer.alloc(300 * 1024, 'status ')]);
          const project = fresh();
          (await getIntranet()).projects.set(project, { kind: 'file', body, coding });
          const r = await request(rx, project);
          expectDelivered(r, body, 's5b');
          expect(comp.logged('delivered').find((l) => l.project === project)).to.include({ bytes: body.length });
          expect(await spoolContents(comp.spoolDir)).to.deep.equal([]);
        });

      // only the slixmpp receiver reports the streamhost list it was offered
      if (kind === 'slix')
        it("advertises its own streamhost under the project's full JID", async () => {
          const body = randomBytes(10);
          const project = await publish(body);
          await request(rx, project);
          const ej = await getEjabberd();
          const hosts = rx.proc.events.filter((e) => e.event === 'streamhosts').pop()!.hosts as Array<{
            jid: string;
            host: string;
            port: number;
          }>;
          expect(hosts[0].jid).to.equal(`${project}@${ej.componentDomain}/reports`);
          expect(hosts[0].host).to.equal('127.0.0.1');
          expect(hosts[0].port).to.equal(comp.app.streamhost!.port);
        });

      it('serves several requests at the same time', async () => {
        const bodies = [randomBytes(3_000_000), randomBytes(2_000_000), randomBytes(1_000_000)];
        const projects = await Promise.all(bodies.map(publish));
        const results = await Promise.all(projects.map((p) => request(rx, p)));
        results.forEach((r, i) => expectDelivered(r, bodies[i], 's5b'));
      });
    });

    describe('when the advertised streamhost is unreachable', () => {
      let comp: RunningComponent;
      before(async () => {
        comp = await startComponent({
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
          XR_PROXY_ADVERTISE_PORT: String(await freePort()),
          XR_DISCOVER_PROXIES: 'false', // no proxy: S5B has nowhere else to go
          XR_IBB_BLOCK_SIZE: '4096',
        });
      });
      after(async () => {
        await comp.stop();
      });

      it('falls back to in-band bytestreams with the same sid', async () => {
        const body = randomBytes(100_000);
        const project = await publish(body);
        const r = await request(rx, project);
        expectDelivered(r, body, 'ibb');
        expect(comp.logged(/falling back to in-band/).some((l) => l.project === project)).to.equal(true);
      });
    });

    describe('when only IBB is offered', () => {
      let comp: RunningComponent;
      before(async () => {
        comp = await startComponent({
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
          XR_TRANSFER_METHODS: 'ibb',
          XR_IBB_BLOCK_SIZE: '4096',
        });
      });
      after(async () => {
        await comp.stop();
      });

      for (const size of [1, 4096, 4097, 1_000_000]) {
        it(`delivers ${size} bytes in-band, byte-exact`, async () => {
          const body = randomBytes(size);
          const project = await publish(body);
          expectDelivered(await request(rx, project), body, 'ibb');
        });
      }
    });

    // The server's own proxy (ejabberd mod_proxy65, Prosody proxy65) as an external proxy: servers.test.ts, on both servers.

    describe('when the intranet breaks under an in-band transfer', () => {
      let ibbOnly: RunningComponent;
      before(async () => {
        ibbOnly = await startComponent({
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
          XR_REPORTS_TIMEOUT_MS: '2000',
          XR_TRANSFER_METHODS: 'ibb',
          XR_IBB_BLOCK_SIZE: '32768',
        });
      });
      after(async () => {
        await ibbOnly.stop();
      });

      it('tells it as the intranet stopping part-way, counting what the receiver had acknowledged', async () => {
        const body = randomBytes(6 * 1024 * 1024);
        const project = fresh();
        (await getIntranet()).projects.set(project, { kind: 'stall', body, after: 4 * 1024 * 1024 });
        const r = await request(rx, project);
        expect(r.end.event, JSON.stringify(r.end)).to.equal('failed');
        expect(String(r.final.body)).to.equal(
          `The intranet stopped sending the report of project ${project} part-way, so status-${project}.pdf did not arrive complete. Please try again later.`,
        );
        const broke = ibbOnly.logged('report download broke during the transfer').filter((l) => l.project === project);
        expect(broke).to.have.length(1);
        expect(broke[0].method).to.equal('ibb');
        expect(Number(broke[0].bytes)).to.be.greaterThan(1024 * 1024);
        expect(ibbOnly.logged('delivered').filter((l) => l.project === project)).to.have.length(0);
      });
    });

    describe('when things go wrong', () => {
      let comp: RunningComponent;
      before(async () => {
        comp = await startComponent({
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
          XR_REPORTS_TIMEOUT_MS: '3000',
        });
      });
      after(async () => {
        await comp.stop();
      });

      it('offers a report while the intranet is still sending it, and delivers it byte-exact', async () => {
        const body = randomBytes(3_000_000);
        const project = fresh();
        let rest!: () => void;
        (await getIntranet()).projects.set(project, {
          kind: 'split',
          body,
          at: 1_000_000,
          rest: new Promise<void>((r) => (rest = r)),
        });
        const ej = await getEjabberd();
        rx.proc.send(`${project}@${ej.componentDomain}`, 'report');
        // The offer arrives while two thirds of the report are still held back by the intranet.
        const offer = await rx.proc.waitFor((e) => e.event === 'offer' && e.name === `status-${project}.pdf`, 60000);
        expect(offer.size).to.equal(body.length);
        rest();
        const end = await rx.proc.waitFor(isEnd(project), 120000);
        const final = await rx.proc.waitFor(finalMessage(project), 60000);
        expectDelivered({ end, final }, body, 's5b');
      });

      it('shares one intranet download with a second user who asks while it is still arriving; both get it byte-exact', async () => {
        const other = await startReceiver(kind, kind === 'purple' ? 'paula' : 'sid');
        try {
          const body = randomBytes(2_000_000);
          const project = fresh();
          const intranet = await getIntranet();
          let rest!: () => void;
          intranet.projects.set(project, {
            kind: 'split',
            body,
            at: 500_000,
            rest: new Promise<void>((r) => (rest = r)),
          });
          const ej = await getEjabberd();
          const to = `${project}@${ej.componentDomain}`;
          rx.proc.send(to, 'report');
          await rx.proc.waitFor((e) => e.event === 'offer' && e.name === `status-${project}.pdf`, 60000);
          other.proc.send(to, 'report'); // the first download is still held back by the intranet
          await other.proc.waitFor((e) => e.event === 'offer' && e.name === `status-${project}.pdf`, 60000);
          rest();
          for (const r of [rx, other]) {
            const end = await r.proc.waitFor(isEnd(project), 120000);
            const final = await r.proc.waitFor(finalMessage(project), 60000);
            expectDelivered({ end, final }, body, 's5b');
          }
          expect(intranet.requests.filter((q) => q.url === `/projects/${project}/status.pdf`)).to.have.length(1);
        } finally {
          await stopReceiver(other);
        }
      });

      if (kind === 'purple')
        it('streams a large report on without writing it to the spool; a user who asks once it is past gets a download of their own; both byte-exact', async () => {
          const other = await startReceiver(kind, 'paula');
          try {
            const body = randomBytes(12 << 20);
            const project = fresh();
            const intranet = await getIntranet();
            let rest!: () => void;
            let last!: () => void;
            intranet.projects.set(project, {
              kind: 'split',
              body,
              at: 1 << 20,
              rest: new Promise<void>((r) => (rest = r)),
              more: { at: 10 << 20, rest: new Promise<void>((r) => (last = r)) },
            });
            const ej = await getEjabberd();
            const to = `${project}@${ej.componentDomain}`;
            // the file libpurple writes as the bytes come (the folder has earlier tests' files too)
            const received = async (dir: string, atLeast: number) => {
              const deadline = Date.now() + 30000;
              for (;;) {
                for (const name of (await readdir(dir)).filter((n) => n.includes(`status-${project}`))) {
                  if (((await stat(join(dir, name)).catch(() => undefined))?.size ?? -1) >= atLeast) return;
                }
                if (Date.now() > deadline) expect.fail(`no file of ${atLeast} bytes in ${dir} within 30 s`);
                await new Promise((r) => setTimeout(r, 20));
              }
            };
            rx.proc.send(to, 'report');
            await rx.proc.waitFor((e) => e.event === 'offer' && e.name === `status-${project}.pdf`, 60000);
            await received(rx.outDir, 1); // libpurple writes the first bytes: the bytestream reads
            rest();
            // the reader is well past 4 MiB (libpurple's writes lag a little); the intranet holds the rest after 10 MiB
            await received(rx.outDir, 8 << 20);
            // the spool has only the first MiB, which came before the bytestream did
            const inSpool = await readdir(comp.spoolDir);
            const spooled = inSpool.filter((n) => n.startsWith('spool-'));
            expect(
              spooled,
              `${comp.spoolDir}: ${inSpool.join(' ')} ${JSON.stringify(comp.logged('transfer failed'))} ${JSON.stringify(comp.logged('report download broke during the transfer'))}`,
            ).to.have.length(1);
            expect((await stat(join(comp.spoolDir, spooled[0]))).size).to.equal(1 << 20);
            other.proc.send(to, 'report'); // what the first download passed is gone: a download of its own
            await other.proc.waitFor((e) => e.event === 'offer' && e.name === `status-${project}.pdf`, 60000);
            last();
            for (const r of [rx, other]) {
              const end = await r.proc.waitFor(isEnd(project), 120000);
              const final = await r.proc.waitFor(finalMessage(project), 60000);
              expectDelivered({ end, final }, body, 's5b');
            }
            expect(intranet.requests.filter((q) => q.url === `/projects/${project}/status.pdf`)).to.have.length(2);
          } finally {
            await stopReceiver(other);
          }
        });

      it('cuts the transfer when the intranet stalls mid-report, and tells the user it did not arrive complete', async () => {
        const body = randomBytes(2_000_000);
        const project = fresh();
        (await getIntranet()).projects.set(project, { kind: 'stall', body, after: 300_000 });
        const r = await request(rx, project);
        expect(r.end.event, JSON.stringify(r.end)).to.equal('failed');
        expect(String(r.final.body)).to.equal(
          `The intranet stopped sending the report of project ${project} part-way, so status-${project}.pdf did not arrive complete. Please try again later.`,
        );
        expect(comp.logged('delivered').filter((l) => l.project === project)).to.have.length(0);
        expect(
          comp.logged('report download broke during the transfer').filter((l) => l.project === project),
        ).to.have.length(1);
        expect(await spoolContents(comp.spoolDir)).to.deep.equal([]);
      });

      it('tells the user who declined, and reports no delivery', async () => {
        const decliner = await startReceiver(kind, kind === 'purple' ? 'dora' : 'dan', { decline: true });
        try {
          const project = await publish(randomBytes(1000));
          const r = await request(decliner, project);
          expect(r.end.event).to.not.equal('received');
          expect(String(r.final.body)).to.equal(
            `You declined status-${project}.pdf; send me another message if you want it after all.`,
          );
          expect(comp.logged('delivered').filter((l) => l.project === project)).to.have.length(0);
        } finally {
          await stopReceiver(decliner);
        }
      });

      it('survives a receiver that vanishes mid-transfer, never calling it delivered', async () => {
        const vanisher = await startReceiver(kind, kind === 'purple' ? 'vera' : 'vic', {
          disconnectAfterBytes: 1_000_000,
        });
        const project = await publish(randomBytes(20_000_000));
        const ej = await getEjabberd();
        try {
          vanisher.proc.send(`${project}@${ej.componentDomain}`, 'report');
          await vanisher.proc.waitFor((e) => e.event === 'vanishing', 60000);
          await vanisher.proc.exited;
          // the component notices (socket reset or stall) and logs a failure, not a delivery
          const deadline = Date.now() + 90000;
          while (!comp.logged('transfer failed').some((l) => l.project === project) && Date.now() < deadline)
            await new Promise((r) => setTimeout(r, 200));
          expect(comp.logged('transfer failed').some((l) => l.project === project)).to.equal(true);
          expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
        } finally {
          await stopReceiver(vanisher);
        }
        // still running: the next request is served
        const body = randomBytes(5000);
        const next = await publish(body);
        expectDelivered(await request(rx, next), body, 's5b');
      });
    });
  });
}

describe('integration: an offer nobody answers', function () {
  this.timeout(60000);

  it('tells the user the file was not accepted in time', async () => {
    const ej = await getEjabberd();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
      XR_TRANSFER_OFFER_TIMEOUT_MS: '1500',
    });
    const u = await user('olga');
    const { XmppUser } = await import('../support/xmpp-user.js');
    const olga = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: u.username,
      password: u.password,
      resource: 'silent',
    });
    // A client that shows the offer and waits for a person who never clicks:
    // the SI request stays unanswered (the middleware never resolves).
    olga.xmpp.middleware.use((ctx, next) =>
      ctx.stanza.getChild('si', 'http://jabber.org/protocol/si') ? new Promise(() => {}) : next(),
    );
    try {
      const project = await publish(randomBytes(100));
      await olga.say(`${project}@${ej.componentDomain}`, 'report');
      const m = await olga.waitForMessage(`${project}@${ej.componentDomain}`, /not accepted in time/, 20000);
      expect(m.getChildText('body')).to.equal(
        `status-${project}.pdf was not accepted in time, so I stopped offering it. Send me another message to try again.`,
      );
      expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
    } finally {
      await olga.logout();
      await comp.stop();
    }
  });
});

describe('integration: a requester who goes offline while an offer waits', function () {
  this.timeout(90000);

  it('ends the offer when its presence goes unavailable, frees the slot at once, and tells the user why', async () => {
    const ej = await getEjabberd();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
      XR_TRANSFER_OFFER_TIMEOUT_MS: '600000', // far beyond this test: only the presence can end the offer
      XR_LIMITS_MAX_CONCURRENT_PER_USER: '1',
    });
    const u = await user('paula');
    const { XmppUser } = await import('../support/xmpp-user.js');
    const login = (resource: string) =>
      XmppUser.login({ port: ej.c2sPort, domain: ej.domain, username: u.username, password: u.password, resource });
    const paula = await login('silent');
    let again: Awaited<ReturnType<typeof login>> | undefined;
    try {
      const project = await publish(randomBytes(1000));
      const contact = `${project}@${ej.componentDomain}`;
      // A contact in the roster: the component accepts and subscribes back, paula approves, so it gets her presence.
      await paula.presence(contact, 'subscribe');
      await paula.waitFor((e) => e.name === 'presence' && e.attrs.type === 'subscribe', 10000, 'subscribe back');
      await paula.presence(contact, 'subscribed');
      // The offer shows, and nobody clicks.
      paula.xmpp.middleware.use((ctx, next) =>
        ctx.stanza.getChild('si', 'http://jabber.org/protocol/si') ? new Promise(() => {}) : next(),
      );
      await paula.say(contact, 'report');
      await paula.waitForMessage(contact, /^Sending status-/, 20000);
      await paula.logout(); // unavailable presence reaches the project JID
      const deadline = Date.now() + 20000;
      while (comp.logged('requester went offline; ending its offers').length === 0 && Date.now() < deadline)
        await sleep(50);
      expect(comp.logged('requester went offline; ending its offers').map((l) => l.jid)).to.deep.equal([
        `${u.jid}/silent`,
      ]);
      while (comp.app.requests.list().length > 0 && Date.now() < deadline) await sleep(50);
      expect(comp.app.requests.list()).to.deep.equal([]); // the slot is free long before the offer timeout
      expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
      // Back online: the reason waits in offline storage, and a new request is served at once.
      again = await login('again');
      const final = await again.waitForMessage(contact, /^Could not send/, 20000);
      expect(final.getChildText('body')).to.equal(
        `Could not send status-${project}.pdf: your chat client went offline. Send me another message to try again.`,
      );
      await again.say(contact, 'report');
      await again.waitForMessage(contact, /^Sending status-/, 20000);
    } finally {
      await again?.logout();
      await paula.logout();
      await comp.stop();
    }
  });
});

/** Idle and half-greeting connections to the streamhost from 127.0.0.1, refilled as they are closed, bounded in count. */
function slowloris(port: number, o: { idle: number; slow: number; maxTotal: number }) {
  const live = new Set<Socket>();
  let opened = 0;
  let stopped = false;
  const open = (slow: boolean) => {
    if (stopped || opened >= o.maxTotal) return;
    opened++;
    const s = connect({ host: '127.0.0.1', port });
    live.add(s);
    s.on('error', () => {});
    s.on('connect', () => (slow ? s.write(Buffer.from([5, 1])) : undefined)); // a greeting cut short
    s.on('close', () => {
      live.delete(s);
      setTimeout(() => open(slow), 10); // keep the pressure up
    });
  };
  for (let i = 0; i < o.idle; i++) open(false);
  for (let i = 0; i < o.slow; i++) open(true);
  return {
    get opened() {
      return opened;
    },
    stop() {
      stopped = true;
      for (const s of live) s.destroy();
    },
  };
}

describe('integration: the streamhost under a slowloris flood from the receiver’s own address', function () {
  this.timeout(180000);

  it('500 idle and 60 slow connections from 127.0.0.1 do not keep libpurple from its direct transfer', async () => {
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: (await getIntranet()).urlTemplate,
      XR_TRANSFER_METHODS: 's5b,ibb',
    });
    const rx = await startReceiver('purple', 'loris');
    const attack = slowloris(comp.app.streamhost!.port, { idle: 500, slow: 60, maxTotal: 4000 });
    try {
      await sleep(500); // the flood is in place before the request
      const body = randomBytes(5_000_000);
      const project = await publish(body);
      const r = await request(rx, project);
      expectDelivered(r, body, 's5b'); // by the direct connection, not the in-band fallback
      expect(attack.opened).to.be.greaterThan(560);
      expect(comp.logged('streamhost at its cap: oldest unfinished handshake closed').length).to.be.at.least(1);
    } finally {
      attack.stop();
      await stopReceiver(rx);
      await comp.stop();
    }
  });
});
