import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { parseJid, type Jid, type Target } from '../../../src/xmpp/addresses.js';
import { conditionOf } from '../../../src/xmpp/errors.js';
import { NS } from '../../../src/xmpp/namespaces.js';
import { IqRouter, type IqReply } from '../../../src/xmpp/router.js';

const FROM: Jid = parseJid('alice@example.com/phone')!;
const TARGET: Target = { kind: 'project', project: '1234' };

function iq(type: string, ...children: Element[]): Element {
  return xml('iq', { type, id: 'q1', from: FROM.full, to: '1234@reports.example.com/reports' }, ...children);
}

/** The defined condition and type of an <error/> reply. */
function asError(reply: IqReply): { type: string | undefined; condition: string | undefined } {
  expect(reply, 'an element').to.be.an('object');
  const el = reply as Element;
  expect(el.name).to.equal('error');
  return { type: el.attrs.type, condition: conditionOf(el) };
}

describe('xmpp/router', () => {
  let calls: Array<{ iq: Element; payload: Element; from: Jid; target: Target }>;
  let router: IqRouter;
  const versionReply = xml('query', { xmlns: NS.VERSION }, xml('name', {}, 'x'));

  beforeEach(() => {
    calls = [];
    router = new IqRouter()
      .on('get', NS.VERSION, 'query', (i, payload, from, target) => {
        calls.push({ iq: i, payload, from, target });
        return versionReply;
      })
      .on('get', NS.PING, 'ping', () => true)
      .on('set', NS.IBB, 'open', async (): Promise<IqReply> => {
        await new Promise((r) => setTimeout(r, 5));
        return true;
      })
      .on('set', NS.IBB, 'close', () => undefined);
  });

  it("returns the handler's reply and passes it the stanza, payload, sender and target", async () => {
    const stanza = iq('get', xml('query', { xmlns: NS.VERSION }));
    const reply = await router.handle(stanza, FROM, TARGET);
    expect(reply).to.equal(versionReply);
    expect(calls).to.have.length(1);
    expect(calls[0].iq).to.equal(stanza);
    expect(calls[0].payload.name).to.equal('query');
    expect(calls[0].payload.attrs.xmlns).to.equal(NS.VERSION);
    expect(calls[0].from).to.equal(FROM);
    expect(calls[0].target).to.equal(TARGET);
  });

  it('returns true (empty result) and awaits async handlers', async () => {
    expect(await router.handle(iq('get', xml('ping', { xmlns: NS.PING })), FROM, TARGET)).to.equal(true);
    expect(
      await router.handle(iq('set', xml('open', { xmlns: NS.IBB, sid: 's', 'block-size': '4096' })), FROM, TARGET),
    ).to.equal(true);
  });

  it('passes undefined from a handler through', async () => {
    expect(await router.handle(iq('set', xml('close', { xmlns: NS.IBB, sid: 's' })), FROM, TARGET)).to.equal(undefined);
  });

  it('a second registration of a route throws and leaves the first in place', async () => {
    expect(() => router.on('get', NS.PING, 'ping', () => xml('pong'))).to.throw(
      /registered twice: get urn:xmpp:ping ping/,
    );
    expect(() =>
      new IqRouter().add([
        { type: 'set', ns: NS.IBB, name: 'close', handler: () => true },
        { type: 'set', ns: NS.IBB, name: 'close', handler: () => undefined },
      ]),
    ).to.throw(/registered twice/);
    expect(await router.handle(iq('get', xml('ping', { xmlns: NS.PING })), FROM, TARGET)).to.equal(true);
  });

  it('lists its routes', () => {
    expect(router.routes).to.have.members([
      `get ${NS.VERSION} query`,
      `get ${NS.PING} ping`,
      `set ${NS.IBB} open`,
      `set ${NS.IBB} close`,
    ]);
  });

  it('a handler that throws rejects (the connection turns that into internal-server-error)', async () => {
    router.on('get', NS.VCARD, 'vCard', () => {
      throw new Error('boom');
    });
    let caught: unknown;
    try {
      await router.handle(iq('get', xml('vCard', { xmlns: NS.VCARD })), FROM, TARGET);
    } catch (err) {
      caught = err;
    }
    expect((caught as Error)?.message).to.equal('boom');
  });

  describe('feature-not-implemented for a namespace we speak', () => {
    it('with the wrong type', async () => {
      expect(asError(await router.handle(iq('set', xml('query', { xmlns: NS.VERSION })), FROM, TARGET))).to.deep.equal({
        type: 'cancel',
        condition: 'feature-not-implemented',
      });
      expect(asError(await router.handle(iq('get', xml('open', { xmlns: NS.IBB })), FROM, TARGET))).to.deep.equal({
        type: 'cancel',
        condition: 'feature-not-implemented',
      });
    });

    it('with an element we do not handle', async () => {
      expect(
        asError(
          await router.handle(iq('set', xml('data', { xmlns: NS.IBB, sid: 's', seq: '0' }, 'AAAA')), FROM, TARGET),
        ),
      ).to.deep.equal({
        type: 'cancel',
        condition: 'feature-not-implemented',
      });
      expect(asError(await router.handle(iq('get', xml('pong', { xmlns: NS.PING })), FROM, TARGET))).to.deep.equal({
        type: 'cancel',
        condition: 'feature-not-implemented',
      });
    });
  });

  describe('service-unavailable for a namespace we do not speak', () => {
    it('an unknown namespace', async () => {
      expect(
        asError(await router.handle(iq('get', xml('query', { xmlns: 'jabber:iq:roster' })), FROM, TARGET)),
      ).to.deep.equal({ type: 'cancel', condition: 'service-unavailable' });
      expect(
        asError(await router.handle(iq('get', xml('vCard', { xmlns: 'vcard-temp' })), FROM, TARGET)),
      ).to.deep.equal({ type: 'cancel', condition: 'service-unavailable' });
    });

    it('a known element name without a namespace', async () => {
      expect(asError(await router.handle(iq('get', xml('ping')), FROM, TARGET))).to.deep.equal({
        type: 'cancel',
        condition: 'service-unavailable',
      });
    });

    it('an empty router answers service-unavailable to everything', async () => {
      expect(
        asError(await new IqRouter().handle(iq('get', xml('ping', { xmlns: NS.PING })), FROM, TARGET)),
      ).to.deep.equal({ type: 'cancel', condition: 'service-unavailable' });
    });
  });

  describe('bad-request', () => {
    it('an IQ get/set without a payload', async () => {
      expect(asError(await router.handle(iq('get'), FROM, TARGET))).to.deep.equal({
        type: 'modify',
        condition: 'bad-request',
      });
      expect(asError(await router.handle(iq('set'), FROM, TARGET))).to.deep.equal({
        type: 'modify',
        condition: 'bad-request',
      });
    });

    it('an IQ with only text inside', async () => {
      const stanza = xml('iq', { type: 'get', id: 'x' }, 'just text');
      expect(asError(await router.handle(stanza, FROM, TARGET))).to.deep.equal({
        type: 'modify',
        condition: 'bad-request',
      });
    });

    it('an IQ without a type or with an unknown type', async () => {
      expect(
        asError(await router.handle(xml('iq', { id: 'x' }, xml('ping', { xmlns: NS.PING })), FROM, TARGET)),
      ).to.deep.equal({ type: 'modify', condition: 'bad-request' });
      expect(asError(await router.handle(iq('fetch', xml('ping', { xmlns: NS.PING })), FROM, TARGET))).to.deep.equal({
        type: 'modify',
        condition: 'bad-request',
      });
    });
  });

  it('routes by the first child element only', async () => {
    const reply = await router.handle(
      iq('get', xml('ping', { xmlns: NS.PING }), xml('query', { xmlns: NS.VERSION })),
      FROM,
      TARGET,
    );
    expect(reply).to.equal(true);
    expect(calls).to.have.length(0);
  });

  it('the domain target reaches handlers too', async () => {
    await router.handle(iq('get', xml('query', { xmlns: NS.VERSION })), FROM, { kind: 'domain' });
    expect(calls[0].target).to.deep.equal({ kind: 'domain' });
  });
});
