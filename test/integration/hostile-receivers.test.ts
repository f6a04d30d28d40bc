// Receivers that misbehave on purpose, scripted on @xmpp/client against the
// real ejabberd: one connects to the streamhost and never reads (zero
// window), one closes the in-band stream early. Each transfer must end as
// failed, never "delivered", with its resources freed.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { xml } from '@xmpp/client';
import { dstAddr } from '../../src/transfer/s5b/socks5.js';
import { NS } from '../../src/xmpp/namespaces.js';
import { XmppUser } from '../support/xmpp-user.js';
import { getEjabberd, getIntranet, sleep, startComponent, user } from './harness.js';
import { siAnswer } from '../support/si.js';

let counter = 330000 + Math.floor(Math.random() * 80000);

/** SOCKS5 handshake as a XEP-0065 target; resolves with the socket once the streamhost answered. */
function socksConnect(host: string, port: number, addr: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    s.once('error', reject);
    s.once('connect', () => {
      const a = Buffer.from(addr);
      s.write(Buffer.concat([Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 3, a.length]), a, Buffer.from([0, 0])]));
    });
    let got = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (got.length >= 2 + 5 + a40 + 2) {
        s.removeListener('data', onData);
        s.pause(); // from here on, never read: the window closes
        resolve(s);
      }
    };
    const a40 = addr.length;
    s.on('data', onData);
  });
}

describe('integration: receivers that misbehave', function () {
  this.timeout(120000);

  it('a receiver that connects and never reads (zero window) fails the transfer after the stall timeout', async () => {
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_TRANSFER_METHODS: 's5b',
      XR_TRANSFER_STALL_TIMEOUT_MS: '2000',
    });
    const u = await user('zed');
    const zed = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: u.username,
      password: u.password,
      resource: 'zero',
    });
    let socket: Socket | undefined;
    const sids = new Map<string, string>();
    zed.xmpp.middleware.use(async (ctx, next) => {
      const si = ctx.stanza.getChild('si', NS.SI);
      if (si) {
        sids.set(ctx.stanza.attrs.from!, si.attrs.id!);
        return siAnswer(NS.BYTESTREAMS);
      }
      const q = ctx.stanza.getChild('query', NS.BYTESTREAMS);
      if (q && ctx.stanza.attrs.type === 'set') {
        const host = q.getChildren('streamhost')[0];
        socket = await socksConnect(
          host.attrs.host!,
          Number(host.attrs.port),
          dstAddr(q.attrs.sid!, ctx.stanza.attrs.from!, zed.jid),
        );
        return xml(
          'query',
          { xmlns: NS.BYTESTREAMS, sid: q.attrs.sid },
          xml('streamhost-used', { jid: host.attrs.jid }),
        );
      }
      return next();
    });
    try {
      const project = String(counter++);
      intranet.projects.set(project, { kind: 'file', body: randomBytes(30_000_000) });
      await zed.say(`${project}@${ej.componentDomain}`, 'report');
      const m = await zed.waitForMessage(`${project}@`, /broke off after/, 60000);
      expect(m.getChildText('body')).to.match(
        new RegExp(
          `^The transfer of status-${project}\\.pdf broke off after .+ of 28\\.6 MiB; the file did not arrive\\.`,
        ),
      );
      const failed = comp.logged('transfer failed').find((l) => l.project === project);
      expect(failed).to.include({ method: 's5b' });
      expect(String(failed!.err)).to.match(/no progress for 2000 ms/);
      expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
      for (let i = 0; i < 50 && comp.app.streamhost!.connections > 0; i++) await sleep(50);
      expect(comp.app.streamhost!.connections).to.equal(0);
    } finally {
      socket?.destroy();
      await zed.logout();
      await comp.stop();
    }
  });

  it('a receiver that closes the in-band stream early ends the transfer as broken off', async () => {
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_TRANSFER_METHODS: 'ibb',
      XR_IBB_BLOCK_SIZE: '4096',
      XR_IBB_WINDOW: '1',
    });
    const u = await user('cleo');
    const cleo = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: u.username,
      password: u.password,
      resource: 'closer',
    });
    let blocks = 0;
    cleo.xmpp.middleware.use(async (ctx, next) => {
      const st = ctx.stanza;
      if (st.getChild('si', NS.SI)) return siAnswer(NS.IBB);
      if (st.getChild('open', NS.IBB)) return true;
      const data = st.getChild('data', NS.IBB);
      if (data) {
        if (++blocks === 3) {
          // ack this one, then close from our side (XEP-0047 §2.4: either party may close)
          setTimeout(
            () => void cleo.iq(st.attrs.from!, 'set', xml('close', { xmlns: NS.IBB, sid: data.attrs.sid })),
            0,
          );
        }
        return true;
      }
      return next();
    });
    try {
      const project = String(counter++);
      intranet.projects.set(project, { kind: 'file', body: randomBytes(2_000_000) });
      await cleo.say(`${project}@${ej.componentDomain}`, 'report');
      const m = await cleo.waitForMessage(`${project}@`, /broke off after/, 60000);
      expect(m.getChildText('body')).to.match(
        new RegExp(`^The transfer of status-${project}\\.pdf broke off after \\d+(\\.\\d)? KiB of 1\\.9 MiB`),
      );
      const failed = comp.logged('transfer failed').find((l) => l.project === project);
      expect(failed).to.include({ method: 'ibb' });
      expect(String(failed!.err)).to.match(/receiver closed the in-band stream early/);
      expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
      // our close answer was a result, not an error
      const closeReply = cleo.received.find(
        (e) =>
          e.name === 'iq' &&
          e.attrs.from === `${project}@${ej.componentDomain}/reports` &&
          e.attrs.type === 'result' &&
          !e.getChildElements().length,
      );
      expect(closeReply, 'result to our <close/>').to.not.equal(undefined);
    } finally {
      await cleo.logout();
      await comp.stop();
    }
  });
});
