// Method choice by capabilities: SI where advertised, else Jingle, else the
// link, in the configured order (transfer.order); what failure leads where.
import { expect } from 'chai';
import { Writable } from 'node:stream';
import { loadConfig, ConfigError } from '../../../src/config.js';
import { createLogger } from '../../../src/log.js';
import type { Report } from '../../../src/reports/source.js';
import { stubReport } from '../../support/reports.js';
import { replies } from '../../../src/chat/replies.js';
import {
  DeliveryError,
  offerRefusal,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryProgress,
  type DeliveryRequest,
} from '../../../src/transfer/delivery.js';
import { ChoosingDelivery, type TransferMethod } from '../../../src/transfer/choose.js';
import type { LinkPublisher } from '../../../src/transfer/links/publishers.js';
import { xml, type Element } from '@xmpp/component';
import { Capabilities, type ClientInfo } from '../../../src/xmpp/caps.js';
import { LinkDownError } from '../../../src/xmpp/errors.js';
import { NS } from '../../../src/xmpp/namespaces.js';

const SI = [NS.SI, NS.SI_FILE, NS.BYTESTREAMS, NS.IBB];
const JINGLE = [
  'urn:xmpp:jingle:1',
  'urn:xmpp:jingle:apps:file-transfer:5',
  'urn:xmpp:jingle:transports:s5b:1',
  'urn:xmpp:jingle:transports:ibb:1',
];
const clients: Record<string, ClientInfo | 'unknown'> = {
  pidgin: { features: new Set(SI), identities: [{ category: 'client', type: 'pc', name: 'Pidgin' }] },
  psi: { features: new Set([...SI, ...JINGLE]), identities: [{ category: 'client', type: 'pc', name: 'Psi' }] },
  dino: { features: new Set(JINGLE), identities: [{ category: 'client', type: 'pc', name: 'Dino' }] },
  conversations: {
    features: new Set([...JINGLE, 'urn:xmpp:http:upload:0']),
    identities: [{ category: 'client', type: 'phone', name: 'Conversations' }],
  },
  gajim: {
    features: new Set(['urn:xmpp:http:upload:0']),
    identities: [{ category: 'client', type: 'pc', name: 'Gajim' }],
  },
  // Debian bookworm's Gajim advertises Jingle file transfer, and crashes on every offer
  gajim17: {
    features: new Set([...JINGLE, 'urn:xmpp:http:upload:0']),
    identities: [{ category: 'client', type: 'pc', name: 'Gajim' }],
  },
  profanity: {
    features: new Set(['http://jabber.org/protocol/chatstates']),
    identities: [{ category: 'client', type: 'console', name: 'Profanity' }],
  },
  silent: 'unknown',
};

const report: Report = stubReport('1', 10, { name: 'r.pdf' });

function fake(
  name: string,
  calls: string[],
  result: () => Promise<DeliveryOutcome>,
): Delivery & { seen: DeliveryRequest[] } {
  const seen: DeliveryRequest[] = [];
  return {
    seen,
    deliver: async (req) => {
      calls.push(name);
      seen.push(req);
      return result();
    },
  };
}

function setup(
  client: string,
  o: {
    order?: TransferMethod[];
    version?: string;
    si?: () => Promise<DeliveryOutcome>;
    jingle?: () => Promise<DeliveryOutcome>;
    links?: boolean;
  } = {},
) {
  const calls: string[] = [];
  const progress: DeliveryProgress[] = [];
  const ok = (m: 's5b' | 'ibb') => async (): Promise<DeliveryOutcome> => ({ kind: 'delivered', method: m, bytes: 10 });
  const si = fake('si', calls, o.si ?? ok('s5b'));
  const jingle = fake('jingle', calls, o.jingle ?? ok('s5b'));
  const links: LinkPublisher | undefined =
    o.links === false
      ? undefined
      : {
          kind: 'link',
          publish: async () => {
            calls.push('link');
            return { url: 'http://l/x', expiresAt: undefined, logId: 'x' };
          },
        };
  const caps = { info: async () => clients[client] };
  const versions: string[] = [];
  const choosing = new ChoosingDelivery(si, links, caps, {
    jingle,
    ...(o.order ? { order: o.order } : {}),
    brokenJingle: ['Gajim 1'],
    version: async (_from, to) => {
      versions.push(to);
      return o.version;
    },
  });
  const req: DeliveryRequest = {
    report,
    to: 'u@e/r',
    from: 'p@r/x',
    log: createLogger('silent'),
    progress: async (p) => void progress.push(p),
  };
  return { choosing, calls, progress, req, si, jingle, versions };
}

describe('transfer/ChoosingDelivery', () => {
  it('gives each well-known client its method by default (si, jingle, link)', async () => {
    const want: Record<string, string[]> = {
      pidgin: ['si'],
      psi: ['si'],
      dino: ['jingle'],
      conversations: ['jingle'],
      gajim: ['link'],
      silent: ['si'],
    };
    for (const [c, calls] of Object.entries(want)) {
      const s = setup(c);
      await s.choosing.deliver(s.req);
      expect(s.calls, c).to.deep.equal(calls);
    }
  });

  it('never tries a method transfer.order leaves out or the client does not advertise; says so when none is left', async () => {
    const s = setup('profanity', { order: ['si'] });
    const err = await s.choosing.deliver(s.req).then(
      () => undefined,
      (e: unknown) => e as DeliveryError,
    );
    expect(s.calls).to.deep.equal([]); // no SI offer to a client without SI
    expect(err?.reason).to.equal('no-method');
    const withLink = setup('profanity', { order: ['si', 'link'] });
    expect((await withLink.choosing.deliver(withLink.req)).kind).to.equal('linked');
    expect(withLink.calls).to.deep.equal(['link']);
  });

  it('sends known-broken Jingle clients (Gajim 1.x, by identity and XEP-0092 version) the link straight away', async () => {
    const old = setup('gajim17', { version: '1.7.3' });
    expect((await old.choosing.deliver(old.req)).kind).to.equal('linked');
    expect(old.calls).to.deep.equal(['link']);
    expect(old.versions).to.deep.equal(['u@e/r']);
    const fixed = setup('gajim17', { version: '2.0.1' });
    await fixed.choosing.deliver(fixed.req);
    expect(fixed.calls).to.deep.equal(['jingle']);
    // Gajim 1.7 tells its version only to contacts it shares presence with: unknown counts as broken
    const unknownVersion = setup('gajim17', {});
    await unknownVersion.choosing.deliver(unknownVersion.req);
    expect(unknownVersion.calls).to.deep.equal(['link']);
    const dino = setup('dino');
    await dino.choosing.deliver(dino.req);
    expect(dino.versions).to.deep.equal([]); // nobody else is asked their version
  });

  it("hands the client's disco#info to the delivery (Jingle needs its identity)", async () => {
    const s = setup('dino');
    await s.choosing.deliver(s.req);
    expect(s.jingle.seen[0].client).to.equal(clients.dino);
  });

  it('follows transfer.order', async () => {
    const psi = setup('psi', { order: ['jingle', 'si', 'link'] });
    await psi.choosing.deliver(psi.req);
    expect(psi.calls).to.deep.equal(['jingle']);
    const linkFirst = setup('psi', { order: ['link', 'si'] });
    expect((await linkFirst.choosing.deliver(linkFirst.req)).kind).to.equal('linked');
    expect(linkFirst.calls).to.deep.equal(['link']);
    const noJingle = setup('dino', { order: ['si', 'link'] });
    await noJingle.choosing.deliver(noJingle.req);
    expect(noJingle.calls).to.deep.equal(['link']);
  });

  it('moves on to the next method when the client turns out not to support one', async () => {
    const s = setup('psi', {
      si: async () => Promise.reject(new DeliveryError({ reason: 'unsupported', message: 'service-unavailable' })),
    });
    await s.choosing.deliver(s.req);
    expect(s.calls).to.deep.equal(['si', 'jingle']);
  });

  describe('a service-unavailable offer after a failed disco#info to the same full JID', () => {
    // What Prosody answers, to the disco#info as to the SI offer, for a resource whose session is gone:
    // a bare <service-unavailable/>, no text (ejabberd says "User session not found").
    const bare = Object.assign(new Error('service-unavailable'), { condition: 'service-unavailable' });
    const refusal = () =>
      offerRefusal(
        bare,
        createLogger('silent'),
        'SI offer',
        new DeliveryError({ reason: 'offer-timeout', message: 't' }),
      );

    it('reads as "went offline": the link says so', async () => {
      const s = setup('silent', { si: async () => Promise.reject(refusal()) });
      const out = await s.choosing.deliver(s.req);
      expect(s.calls).to.deep.equal(['si', 'link']);
      expect(out).to.include({ kind: 'linked', why: 'went-offline' });
      expect(s.progress).to.deep.equal([{ kind: 'link-instead', why: 'went-offline' }]);
      expect(replies.linkInstead('r.pdf', 'went-offline')).to.equal(
        'Your chat client went offline before it took r.pdf, so here is a download link instead.',
      );
    });

    it('without a link, fails as "your chat client went offline"', async () => {
      const s = setup('silent', { links: false, si: async () => Promise.reject(refusal()) });
      const err = await s.choosing.deliver(s.req).then(
        () => undefined,
        (e: unknown) => e as DeliveryError,
      );
      expect(err).to.include({ reason: 'failed', message: 'your chat client went offline' });
      expect(replies.failed('r.pdf', err!.message)).to.equal(
        'Could not send r.pdf: your chat client went offline. Send me another message to try again.',
      );
    });

    it('is still "no file transfer" when the client answered its disco#info', async () => {
      const s = setup('psi', { order: ['si', 'link'], si: async () => Promise.reject(refusal()) });
      const out = await s.choosing.deliver(s.req);
      expect(out).to.include({ kind: 'linked', why: 'no-file-transfer' });
    });

    it('is not "went offline" for another refusal (feature-not-implemented)', async () => {
      const other = Object.assign(new Error('x'), { condition: 'feature-not-implemented' });
      const s = setup('silent', {
        si: async () =>
          Promise.reject(
            offerRefusal(
              other,
              createLogger('silent'),
              'SI offer',
              new DeliveryError({ reason: 'offer-timeout', message: 't' }),
            ),
          ),
      });
      const out = await s.choosing.deliver(s.req);
      expect(out).to.include({ kind: 'linked', why: 'no-file-transfer' });
    });
  });

  it('an offer that could not go out (our server link down) is interrupted, not refused: no link instead, the error goes up', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push((JSON.parse(l) as { msg: string }).msg);
        cb();
      },
    });
    const log = createLogger('info', sink);
    const err = offerRefusal(
      new LinkDownError(),
      log,
      'SI offer',
      new DeliveryError({ reason: 'offer-timeout', message: 't' }),
    );
    expect(err).to.include({ reason: 'interrupted', message: 'the connection to the XMPP server was lost' });
    expect(lines).to.deep.equal(['SI offer not sent: not connected to the XMPP server']);
    const s = setup('silent', { si: async () => Promise.reject(err) });
    const out = await s.choosing.deliver(s.req).then(
      () => undefined,
      (e: unknown) => e as DeliveryError,
    );
    expect(out).to.equal(err);
    expect(s.calls).to.deep.equal(['si']);
  });

  it('after a failed transfer goes straight to the link, with why', async () => {
    const s = setup('psi', {
      si: async () => Promise.reject(new DeliveryError({ reason: 'failed', message: 'no streamhost worked' })),
    });
    const out = await s.choosing.deliver(s.req);
    expect(s.calls).to.deep.equal(['si', 'link']);
    expect(out).to.include({ kind: 'linked', why: 'transfer-failed' });
    expect(s.progress).to.deep.equal([{ kind: 'link-instead', why: 'transfer-failed' }]);
  });

  it('sends the link with "no-direct-connection" when Jingle could not be confirmed (Dino without S5B)', async () => {
    const s = setup('dino', {
      jingle: async () =>
        Promise.reject(
          new DeliveryError({ reason: 'failed', message: 'x', method: 's5b', linkWhy: 'no-direct-connection' }),
        ),
    });
    const out = await s.choosing.deliver(s.req);
    expect(out).to.include({ kind: 'linked', why: 'no-direct-connection' });
    expect(s.progress).to.deep.equal([{ kind: 'link-instead', why: 'no-direct-connection' }]);
  });

  it('sends the link ("no-answer") when a client that answered no disco#info never answers the blind SI offer', async () => {
    const timeout = async () => Promise.reject(new DeliveryError({ reason: 'offer-timeout', message: 'not in time' }));
    const silent = setup('silent', { si: timeout });
    const out = await silent.choosing.deliver(silent.req);
    expect(silent.calls).to.deep.equal(['si', 'link']);
    expect(out).to.include({ kind: 'linked', why: 'no-answer' });
    expect(silent.progress).to.deep.equal([{ kind: 'link-instead', why: 'no-answer' }]);
    // A client that advertises SI and lets the offer time out is a user who did not accept: no link.
    const psi = setup('psi', { si: timeout });
    let err: unknown;
    await psi.choosing.deliver(psi.req).catch((e: unknown) => (err = e));
    expect(psi.calls).to.deep.equal(['si']);
    expect((err as DeliveryError).reason).to.equal('offer-timeout');
  });

  it('passes declines, timeouts and failures without a link on to the user', async () => {
    const declined = setup('dino', {
      jingle: async () => Promise.reject(new DeliveryError({ reason: 'declined', message: 'declined' })),
    });
    let err: unknown;
    await declined.choosing.deliver(declined.req).catch((e: unknown) => (err = e));
    expect((err as DeliveryError).reason).to.equal('declined');
    expect(declined.calls).to.deep.equal(['jingle']);
    const noLinks = setup('dino', {
      links: false,
      jingle: async () =>
        Promise.reject(
          new DeliveryError({ reason: 'failed', message: 'x', method: 's5b', linkWhy: 'no-direct-connection' }),
        ),
    });
    await noLinks.choosing.deliver(noLinks.req).catch((e: unknown) => (err = e));
    expect((err as DeliveryError).linkWhy).to.equal('no-direct-connection');
    // No link, no SI, no Jingle: nothing is offered, and the user reads that no way fits.
    const gajim = setup('gajim', { links: false });
    await gajim.choosing.deliver(gajim.req).catch((e: unknown) => (err = e));
    expect(gajim.calls).to.deep.equal([]);
    expect((err as DeliveryError).reason).to.equal('no-method');
  });
});

describe('xmpp/caps: identities for the method choice', () => {
  it('reads features and identities from disco#info (Dino: client/pc "Dino")', async () => {
    const request = async (_iq: Element): Promise<Element> =>
      xml(
        'iq',
        { type: 'result' },
        xml(
          'query',
          { xmlns: NS.DISCO_INFO },
          xml('identity', { category: 'client', type: 'pc', name: 'Dino' }),
          ...JINGLE.map((v) => xml('feature', { var: v })),
        ),
      );
    const caps = new Capabilities(request, 1000);
    const info = await caps.info('p@r/x', 'dave@localhost/dino');
    expect(info).to.not.equal('unknown');
    expect((info as ClientInfo).identities).to.deep.equal([{ category: 'client', type: 'pc', name: 'Dino' }]);
    expect([...(info as ClientInfo).features]).to.deep.equal(JINGLE);
    expect(await caps.features('p@r/x', 'dave@localhost/dino')).to.deep.equal(new Set(JINGLE));
  });
});

describe('config: transfer.order and transfer.jingle.*', () => {
  const load = (env: Record<string, string>) => loadConfig({ env: { XR_XMPP_SECRET: 'x', ...env } });
  it("defaults to si, jingle, link; Dino's IBB untrusted; the receiver's candidates off loopback and link-local", () => {
    const c = load({});
    expect(c.transfer.order).to.deep.equal(['si', 'jingle', 'link']);
    expect(c.transfer.jingle.noIbbClients).to.deep.equal(['Dino']);
    expect(c.transfer.jingle.peerNetworks).to.include('!127.0.0.0/8');
    expect(load({ XR_TRANSFER_ORDER: 'jingle,link' }).transfer.order).to.deep.equal(['jingle', 'link']);
    expect(load({ XR_JINGLE_PEER_NETWORKS: 'none' }).transfer.jingle.peerNetworks).to.deep.equal(['none']);
  });
  it('refuses unknown methods, repeats and bad networks, naming the key', () => {
    expect(() => load({ XR_TRANSFER_ORDER: 'si,ftp' })).to.throw(ConfigError, /transfer\.order .*ftp/);
    expect(() => load({ XR_TRANSFER_ORDER: 'si,si' })).to.throw(ConfigError, /transfer\.order/);
    expect(() => load({ XR_JINGLE_PEER_NETWORKS: '10.0.0.0/99' })).to.throw(
      ConfigError,
      /transfer\.jingle\.peerNetworks/,
    );
  });
});
