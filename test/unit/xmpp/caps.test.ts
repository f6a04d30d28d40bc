import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { Capabilities, capsHash, capsVerificationString } from '../../../src/xmpp/caps.js';
import { NS } from '../../../src/xmpp/namespaces.js';

// XEP-0115 §5.2, the simple example.
const simple = xml(
  'query',
  { xmlns: NS.DISCO_INFO },
  xml('identity', { category: 'client', type: 'pc', name: 'Exodus 0.9.1' }),
  xml('feature', { var: 'http://jabber.org/protocol/caps' }),
  xml('feature', { var: 'http://jabber.org/protocol/disco#info' }),
  xml('feature', { var: 'http://jabber.org/protocol/disco#items' }),
  xml('feature', { var: 'http://jabber.org/protocol/muc' }),
);

// XEP-0115 §5.3, the complex example (with an extended form).
const complex = xml(
  'query',
  { xmlns: NS.DISCO_INFO },
  xml('identity', { 'xml:lang': 'en', category: 'client', name: 'Psi 0.11', type: 'pc' }),
  xml('identity', { 'xml:lang': 'el', category: 'client', name: 'Ψ 0.11', type: 'pc' }),
  xml('feature', { var: 'http://jabber.org/protocol/caps' }),
  xml('feature', { var: 'http://jabber.org/protocol/disco#info' }),
  xml('feature', { var: 'http://jabber.org/protocol/disco#items' }),
  xml('feature', { var: 'http://jabber.org/protocol/muc' }),
  xml(
    'x',
    { xmlns: NS.DATA_FORMS, type: 'result' },
    xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, 'urn:xmpp:dataforms:softwareinfo')),
    xml('field', { var: 'ip_version' }, xml('value', {}, 'ipv4'), xml('value', {}, 'ipv6')),
    xml('field', { var: 'os' }, xml('value', {}, 'Mac')),
    xml('field', { var: 'os_version' }, xml('value', {}, '10.5.1')),
    xml('field', { var: 'software' }, xml('value', {}, 'Psi')),
    xml('field', { var: 'software_version' }, xml('value', {}, '0.11')),
  ),
);

/** A client that answers disco#info with the simple example (or not at all), noting whom it was asked for. */
function fakeClient() {
  const c = {
    asked: [] as string[],
    answer: 'simple' as 'simple' | 'none',
    request: async (iq: Element): Promise<Element> => {
      c.asked.push(iq.attrs.to!);
      if (c.answer === 'none') throw new Error('timeout');
      return xml('iq', { type: 'result' }, simple);
    },
  };
  return c;
}

describe('xmpp/caps (XEP-0115)', () => {
  it('computes the verification string and hash of the simple example', () => {
    expect(capsVerificationString(simple)).to.equal(
      'client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<',
    );
    expect(capsHash(simple, 'sha-1')).to.equal('QgayPKawpkPSDYmwT/WM94uAlu0=');
  });

  it('computes the hash of the complex example with an extended form', () => {
    expect(capsHash(complex, 'sha-1')).to.equal('q07IKJEyjvHSyhy//CH0CxmKi8w=');
  });

  it('asks once per client, caches by verified hash, and treats silence as unknown', async () => {
    const client = fakeClient();
    const { asked, request } = client;
    const caps = new Capabilities(request, 1000);
    const presence = (from: string, ver: string) =>
      xml('presence', { from }, xml('c', { xmlns: NS.CAPS, hash: 'sha-1', node: 'http://exodus', ver }));
    caps.notePresence(presence('a@example.com/x', 'QgayPKawpkPSDYmwT/WM94uAlu0='));
    caps.notePresence(presence('b@example.com/y', 'QgayPKawpkPSDYmwT/WM94uAlu0='));
    const fa = await caps.features('p@r/x', 'a@example.com/x');
    expect(fa).to.not.equal('unknown');
    expect([...(fa as Set<string>)]).to.include('http://jabber.org/protocol/muc');
    const fb = await caps.features('p@r/x', 'b@example.com/y'); // same verified ver: from the cache
    expect(fb).to.equal(fa);
    expect(asked).to.deep.equal(['a@example.com/x']);
    // a forged ver is not cached
    caps.notePresence(presence('c@example.com/z', 'forged='));
    await caps.features('p@r/x', 'c@example.com/z');
    await caps.features('p@r/x', 'c@example.com/z');
    expect(asked.filter((j) => j === 'c@example.com/z')).to.have.length(2);
    client.answer = 'none';
    expect(await caps.features('p@r/x', 'd@example.com/w')).to.equal('unknown');
  });

  it("reuses a full JID's answer for the session, and asks again after it expires, goes offline or a transfer failed", async () => {
    const client = fakeClient();
    const { asked, request } = client;
    let now = 1000;
    const caps = new Capabilities(request, 1000, 100, 60000, () => now);
    const jid = 'u@example.com/pidgin';
    const first = await caps.info('p1@r/x', jid);
    expect(first).to.not.equal('unknown');
    expect(await caps.info('p2@r/x', jid)).to.equal(first); // another project, the same client session
    expect(asked).to.deep.equal([jid]);
    now += 60000; // expired
    await caps.info('p3@r/x', jid);
    expect(asked).to.have.length(2);
    caps.notePresence(xml('presence', { from: jid, type: 'unavailable' }));
    await caps.info('p3@r/x', jid);
    expect(asked).to.have.length(3);
    caps.forget(jid);
    await caps.info('p3@r/x', jid);
    expect(asked).to.have.length(4);
    // silence is never remembered
    client.answer = 'none';
    caps.forget(jid);
    expect(await caps.info('p3@r/x', jid)).to.equal('unknown');
    client.answer = 'simple';
    expect(await caps.info('p3@r/x', jid)).to.not.equal('unknown');
    expect(asked).to.have.length(6);
    // off: every request asks
    const off = new Capabilities(request, 1000, 100, 0, () => now);
    await off.info('p@r/x', 'v@example.com/a');
    await off.info('p@r/x', 'v@example.com/a');
    expect(asked.filter((j) => j === 'v@example.com/a')).to.have.length(2);
  });

  it('asks a full JID again when its presence advertises other capabilities', async () => {
    const asked: string[] = [];
    const request = async (iq: Element): Promise<Element> => {
      asked.push(iq.attrs.to!);
      return xml('iq', { type: 'result' }, simple);
    };
    const caps = new Capabilities(request, 1000, 100, 60000);
    const jid = 'w@example.com/r';
    const presence = (ver: string) =>
      xml('presence', { from: jid }, xml('c', { xmlns: NS.CAPS, hash: 'sha-1', node: 'n', ver }));
    caps.notePresence(presence('forged-1='));
    await caps.info('p@r/x', jid);
    await caps.info('p@r/x', jid); // unverified ver: the session entry serves it
    expect(asked).to.have.length(1);
    caps.notePresence(presence('forged-2='));
    await caps.info('p@r/x', jid);
    expect(asked).to.have.length(2);
  });
});
