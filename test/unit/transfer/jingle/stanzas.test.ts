// Jingle stanza builders and parsers (XEP-0166/0234/0260/0261/0300) against
// the examples in the XEPs themselves; S5B candidate rules; network policy.
import { expect } from 'chai';
import { parse } from 'ltx';
import type { Element } from '@xmpp/component';
import { buildOpen } from '../../../../src/transfer/ibb/stanzas.js';
import { agreedBlockSize, ibbOffer } from '../../../../src/transfer/jingle/ibb-transport.js';
import {
  JINGLE_ERRORS,
  JingleParseError,
  buildChecksumInfo,
  buildContentReject,
  buildSessionInitiate,
  buildSessionTerminate,
  buildTransportInfo,
  buildTransportReject,
  buildTransportReplace,
  hexToBase64,
  jingleErrorOf,
  parseJingle,
  parseS5bInfo,
  type Envelope,
  type S5bTransport,
} from '../../../../src/transfer/jingle/stanzas.js';
import { NetworkPolicy } from '../../../../src/networks.js';
import {
  candidatePriority,
  candidatesToTry,
  dstAddrs,
  inPreferredOrder,
  nominate,
  ourCandidates,
  tryPeerCandidates,
} from '../../../../src/transfer/jingle/s5b-transport.js';
import { socksConnect } from '../../../../src/transfer/s5b/proxy.js';
import { Streamhost } from '../../../../src/transfer/s5b/streamhost.js';
import { createLogger } from '../../../../src/log.js';
import { NS } from '../../../../src/xmpp/namespaces.js';
import { XEP0234, XEP0260, XEP0261 } from './examples.js';

const jingleOf = (xml: string): Element => parse(xml).getChild('jingle', NS.JINGLE)!;
const parsed = (xml: string) => parseJingle(jingleOf(xml));
/** Attributes and element structure, whitespace and attribute order aside. */
function shape(el: Element): unknown {
  const attrs = Object.fromEntries(
    Object.entries(el.attrs)
      .filter(([, v]) => v !== undefined && v !== null)
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  const kids = el.getChildElements().map(shape);
  const text = el.getChildElements().length === 0 ? el.text().trim() : '';
  return { name: el.name, attrs, ...(text ? { text } : {}), ...(kids.length ? { kids } : {}) };
}

const ROMEO_EX = 'romeo@montague.example/dr4hcr0st3lup4c';
const JULIET_EX = 'juliet@capulet.example/yn0cl4bnw0yr3vym';
const ROMEO = 'romeo@montague.lit/orchard';
const JULIET = 'juliet@capulet.lit/balcony';

describe('transfer/jingle stanzas against the XEP examples', () => {
  describe('XEP-0234 file transfer', () => {
    it('parses the session-initiate file offer (example 1)', () => {
      const j = parsed(XEP0234.initiate);
      expect(j).to.include({ action: 'session-initiate', sid: '851ba2', initiator: ROMEO_EX });
      expect(j.contents).to.have.length(1);
      const c = j.contents[0];
      expect(c).to.include({
        creator: 'initiator',
        name: 'a-file-offer',
        senders: 'initiator',
        descriptionNs: NS.JINGLE_FT,
      });
      expect(c.file).to.deep.equal({
        name: 'test.txt',
        size: 6144,
        date: new Date('1969-07-21T02:56:15Z'),
        mediaType: 'text/plain',
        desc: 'This is a test. If this were a real file...',
        hashes: [{ algo: 'sha-1', value: 'w0mcJylzCn+AfvuGdqkty2+KP48=' }],
        range: { offset: 0 },
      });
      expect(c.transport).to.deep.equal({
        kind: 's5b',
        sid: 'vj3hs98y',
        mode: 'tcp',
        candidates: [
          { cid: 'hft54dqy', host: '192.168.4.1', jid: ROMEO_EX, port: 5086, priority: 8257636, type: 'direct' },
          { cid: 'hutr46fe', host: '24.24.24.1', jid: ROMEO_EX, port: 5087, priority: 8258636, type: 'direct' },
        ],
      });
    });

    it('builds the same session-initiate from the same facts', () => {
      const ex = parse(XEP0234.initiate);
      const t = parsed(XEP0234.initiate).contents[0].transport as S5bTransport;
      const env: Envelope = { id: 'nzu25s8', from: ROMEO_EX, to: JULIET_EX, sid: '851ba2', initiator: ROMEO_EX };
      const built = buildSessionInitiate(env, {
        name: 'a-file-offer',
        file: {
          date: new Date('1969-07-21T02:56:15Z'),
          desc: 'This is a test. If this were a real file...',
          mediaType: 'text/plain',
          name: 'test.txt',
          range: { offset: 0 },
          size: 6144,
          hashes: [{ algo: 'sha-1', value: 'w0mcJylzCn+AfvuGdqkty2+KP48=' }],
        },
        transport: t,
      });
      expect(shape(built)).to.deep.equal(shape(ex));
    });

    it('parses the session-accept, the hash-used variant, received and checksum session-info', () => {
      const a = parsed(XEP0234.accept);
      expect(a).to.include({ action: 'session-accept', responder: JULIET_EX, sid: '851ba2' });
      const t = a.contents[0].transport as S5bTransport;
      expect(t.candidates.map((c) => [c.cid, c.type, c.port])).to.deep.equal([
        ['ht567dq', 'direct', 6539],
        ['hr65dqyd', 'assisted', 16453],
        ['grt654q2', 'direct', 6539],
      ]);
      expect(t.candidates[2].host).to.equal('2001:638:708:30c9:219:d1ff:fea4:a17d');
      expect(parsed(XEP0234.hashUsed).contents[0].file)
        .to.include({ name: 'test.txt' })
        .and.to.deep.include({ hashes: [], hashUsed: ['sha-1'] });
      const r = parsed(XEP0234.received);
      expect(r.action).to.equal('session-info');
      expect(r.info!.name).to.equal('received');
      expect(r.info!.attrs).to.include({ xmlns: NS.JINGLE_FT, creator: 'initiator', name: 'a-file-offer' });
      const ck = parsed(XEP0234.checksum);
      expect(ck.info!.name).to.equal('checksum');
    });

    it('builds the checksum session-info of example 7', () => {
      const env: Envelope = {
        id: 'kqh401b5',
        from: ROMEO_EX,
        to: JULIET_EX,
        sid: 'a73sjjvkla37jfea',
        initiator: ROMEO_EX,
      };
      const built = buildChecksumInfo(env, { name: 'a-file-offer', creator: 'initiator' }, [
        { algo: 'sha-1', value: 'w0mcJylzCn+AfvuGdqkty2+KP48=' },
      ]);
      const ex = parse(XEP0234.checksum);
      // We also name ourselves as initiator on every action (XEP-0166 §7.1 allows it on all).
      ex.getChild('jingle', NS.JINGLE)!.attrs.initiator = ROMEO_EX;
      expect(shape(built)).to.deep.equal(shape(ex));
    });

    it('parses session-terminate reasons and content-remove', () => {
      expect(parsed(XEP0234.terminateCancel)).to.deep.include({
        action: 'session-terminate',
        reason: { condition: 'cancel' },
      });
      expect(parsed(XEP0234.terminateSuccess).reason).to.deep.equal({ condition: 'success' });
      const rm = parsed(XEP0234.contentRemove);
      expect(rm).to.deep.include({ action: 'content-remove', reason: { condition: 'cancel' } });
      expect(rm.contents).to.deep.equal([{ creator: 'initiator', name: 'a-file-offer' }]);
    });

    it('writes the XEP-0300 sha-256 of a hex digest in base64', () => {
      const hex = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'; // SHA-256 of nothing
      expect(hexToBase64(hex)).to.equal('47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');
      const built = buildSessionInitiate(
        { from: 'a@b/c', to: 'd@e/f', sid: 's', initiator: 'a@b/c' },
        {
          name: 'n',
          file: { name: 'x', size: 0, hashes: [{ algo: 'sha-256', value: hexToBase64(hex) }] },
          transport: ibbOffer('t', 4096),
        },
      );
      const h = built
        .getChild('jingle', NS.JINGLE)!
        .getChild('content')!
        .getChild('description', NS.JINGLE_FT)!
        .getChild('file')!
        .getChild('hash', NS.HASHES)!;
      expect(h.attrs.algo).to.equal('sha-256');
      expect(h.text()).to.equal('47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');
    });
  });

  describe('XEP-0260 SOCKS5 transport', () => {
    it("parses the initiator's candidates with dstaddr, and the responder's", () => {
      const t = parsed(XEP0260.initiate).contents[0].transport as S5bTransport;
      expect(t).to.include({
        kind: 's5b',
        sid: 'vj3hs98y',
        mode: 'tcp',
        dstaddr: '972b7bf47291ca609517f67f86b5081086052dad',
      });
      expect(t.candidates.map((c) => c.type)).to.deep.equal(['direct', 'direct', 'proxy']);
      expect(t.candidates[2]).to.include({ jid: 'streamer.shakespeare.lit', port: 7625, priority: 7878787 });
      const a = parsed(XEP0260.accept).contents[0].transport as S5bTransport;
      expect(a.dstaddr).to.equal('1a12fb7bc625e55f3ed5b29a53dbe0e4aa7d80ba');
      expect(a.mode).to.equal(undefined); // the responder must not send it
      expect(a.candidates).to.have.length(4);
    });

    it('computes both DST.ADDR values of the examples: SHA1(sid + initiator + responder) and the reverse', () => {
      const d = dstAddrs('vj3hs98y', ROMEO, JULIET);
      expect(d.ours).to.equal('972b7bf47291ca609517f67f86b5081086052dad');
      expect(d.theirs).to.equal('1a12fb7bc625e55f3ed5b29a53dbe0e4aa7d80ba');
      expect(dstAddrs('vj3hs98y', ROMEO, JULIET, 'given').theirs).to.equal('given'); // the responder's dstaddr wins
    });

    it('parses every transport-info payload of the examples', () => {
      const info = (xml: string) =>
        parseS5bInfo(jingleOf(xml).getChild('content')!.getChild('transport', NS.JINGLE_S5B)!);
      expect(info(XEP0260.candidateUsed)).to.deep.equal({ kind: 'candidate-used', cid: 'hr65dqyd' });
      expect(info(XEP0260.candidateError)).to.deep.equal({ kind: 'candidate-error' });
      expect(info(XEP0260.activated)).to.deep.equal({ kind: 'activated', cid: 'xmdh4b7i' });
      expect(info(XEP0260.proxyError)).to.deep.equal({ kind: 'proxy-error' });
    });

    it('builds candidate-used, candidate-error, activated and proxy-error exactly as the examples', () => {
      const env = (id: string): Envelope => ({
        id,
        from: ROMEO,
        to: JULIET,
        sid: 'a73sjjvkla37jfea',
        initiator: ROMEO,
      });
      const c = { name: 'ex', creator: 'initiator' as const };
      expect(
        shape(buildTransportInfo(env('hjdi8'), c, 'vj3hs98y', { kind: 'candidate-used', cid: 'hr65dqyd' })),
      ).to.deep.equal(shape(parse(XEP0260.candidateUsed)));
      // The examples of the responder's messages, as if we had sent them (from/to swapped).
      const swap = (xml: string) => {
        const e = parse(xml);
        [e.attrs.from, e.attrs.to] = [e.attrs.to, e.attrs.from];
        return shape(e);
      };
      expect(shape(buildTransportInfo(env('gft65ewd'), c, 'vj3hs98y', { kind: 'candidate-error' }))).to.deep.equal(
        swap(XEP0260.candidateError),
      );
      expect(
        shape(buildTransportInfo(env('bv73bs91'), c, 'vj3hs98y', { kind: 'activated', cid: 'xmdh4b7i' })),
      ).to.deep.equal(swap(XEP0260.activated));
      expect(shape(buildTransportInfo(env('bv73bs91'), c, 'vj3hs98y', { kind: 'proxy-error' }))).to.deep.equal(
        swap(XEP0260.proxyError),
      );
    });

    it('builds the session-terminate and the transport-replace to IBB of the examples; takes the smaller block size of transport-accept', () => {
      const env = (id: string): Envelope => ({
        id,
        from: ROMEO,
        to: JULIET,
        sid: 'a73sjjvkla37jfea',
        initiator: ROMEO,
      });
      expect(shape(buildSessionTerminate(env('hz81vf48'), { condition: 'success' }))).to.deep.equal(
        shape(parse(XEP0260.terminate)),
      );
      const replace = buildTransportReplace(
        env('hs92n57'),
        { name: 'ex', creator: 'initiator' },
        { kind: 'ibb', sid: 'ch3d9s71', blockSize: 4096 },
      );
      expect(shape(replace)).to.deep.equal(shape(parse(XEP0260.transportReplace)));
      const acc = parsed(XEP0260.transportAccept);
      const t = acc.contents[0].transport!;
      expect(t).to.deep.equal({ kind: 'ibb', sid: 'ch3d9s71', blockSize: 2048 });
      expect(agreedBlockSize(4096, t.kind === 'ibb' ? t : undefined)).to.equal(2048);
      expect(agreedBlockSize(4096, { kind: 'ibb', sid: 'x', blockSize: 65535 })).to.equal(4096); // never larger than offered
      expect(agreedBlockSize(4096, undefined)).to.equal(4096);
    });

    it('computes priorities by the formula, offers the addresses of our streamhost first, in order, with the highest local preferences', () => {
      expect(candidatePriority('direct', 100)).to.equal(8257636); // the examples' direct candidate
      expect(candidatePriority('assisted', 0)).to.equal(7864320);
      expect(candidatePriority('proxy', 65535)).to.equal(10 * 65536 + 65535);
      let n = 0;
      const ours = ourCandidates({
        from: 'p@r/x',
        streamhost: { hosts: ['192.0.2.20', '2001:db8:1::20'], port: 7625 },
        proxies: [{ jid: 'proxy.e', host: '10.0.0.1', port: 7777 }],
        newCid: () => `c${n++}`,
      });
      expect(ours).to.deep.equal([
        { cid: 'c0', host: '192.0.2.20', jid: 'p@r/x', port: 7625, priority: 126 * 65536 + 65535, type: 'direct' },
        { cid: 'c1', host: '2001:db8:1::20', jid: 'p@r/x', port: 7625, priority: 126 * 65536 + 65534, type: 'direct' },
        { cid: 'c2', host: '10.0.0.1', jid: 'proxy.e', port: 7777, priority: 10 * 65536 + 65535, type: 'proxy' },
      ]);
    });

    it("hands our priorities out again in the memory's order, so a proxy that worked for this user outranks our direct candidate", () => {
      let n = 0;
      const ours = ourCandidates({
        from: 'p@r/x',
        streamhost: { hosts: ['127.0.0.1'], port: 7625 },
        proxies: [
          { jid: 'proxy.e', host: '10.0.0.1', port: 7777 },
          { jid: 'proxy2.e', host: '10.0.0.2', port: 7777 },
        ],
        newCid: () => `c${n++}`,
      });
      expect(inPreferredOrder(ours, ours)).to.deep.equal(ours); // nothing learnt: unchanged
      const preferred = inPreferredOrder(ours, [ours[2], ours[0], ours[1]]);
      expect(preferred.map((c) => [c.cid, c.type, c.priority])).to.deep.equal([
        ['c2', 'proxy', 126 * 65536 + 65535],
        ['c0', 'direct', 10 * 65536 + 65535],
        ['c1', 'proxy', 10 * 65536 + 65534],
      ]);
      expect(candidatesToTry(preferred).map((c) => c.cid)).to.deep.equal(['c2', 'c0', 'c1']); // a responder's order
    });

    it('nominates by XEP-0260 §2.4', () => {
      const a = { cid: 'a', host: 'h', jid: 'j', port: 1, priority: 100, type: 'direct' as const };
      const b = { ...a, cid: 'b', priority: 200 };
      const same = { ...a, cid: 'same', priority: 100 };
      expect(nominate(null, null)).to.deep.equal({ kind: 'none' });
      expect(nominate(a, null)).to.deep.equal({ kind: 'ours', candidate: a }); // responder's candidate-used, our candidate-error
      expect(nominate(null, b)).to.deep.equal({ kind: 'theirs', candidate: b });
      expect(nominate(b, a)).to.deep.equal({ kind: 'ours', candidate: b }); // higher priority wins
      expect(nominate(a, b)).to.deep.equal({ kind: 'theirs', candidate: b });
      expect(nominate(a, same)).to.deep.equal({ kind: 'theirs', candidate: same }); // tie: the initiator's choice
    });

    it("tries the responder's candidates by priority, only those above what the responder used", () => {
      const t = parsed(XEP0260.accept).contents[0].transport as S5bTransport;
      expect(candidatesToTry(t.candidates).map((c) => c.cid)).to.deep.equal([
        'ht567dq',
        'grt654q2',
        'hr65dqyd',
        'pzv14s74',
      ]);
      expect(candidatesToTry(t.candidates, 8257606).map((c) => c.cid)).to.deep.equal(['ht567dq']);
      expect(candidatesToTry(t.candidates, 126 * 65536 + 65535)).to.deep.equal([]);
    });
  });

  describe('XEP-0261 in-band transport', () => {
    it('parses the IBB transport of session-initiate and session-accept', () => {
      expect(parsed(XEP0261.initiate).contents[0].transport).to.deep.equal({
        kind: 'ibb',
        sid: 'ch3d9s71',
        blockSize: 4096,
      });
      expect(parsed(XEP0261.accept).contents[0].transport).to.deep.equal({
        kind: 'ibb',
        sid: 'ch3d9s71',
        blockSize: 2048,
      });
    });

    it('opens the in-band stream with the transport sid, IQ-carried, as the example', () => {
      const ex = parse(XEP0261.open);
      const built = buildOpen({
        id: 'jn3h8g65',
        from: 'romeo@montague.net/orchard',
        to: 'juliet@capulet.com/balcony',
        sid: 'ch3d9s71',
        blockSize: 2048,
      });
      expect(shape(built)).to.deep.equal(shape(ex));
      expect(ibbOffer('ch3d9s71', 100000)).to.deep.equal({
        kind: 'ibb',
        sid: 'ch3d9s71',
        blockSize: 65535,
        stanza: 'iq',
      });
      expect(ex.getChild('open', NS.IBB)!.attrs.stanza).to.equal('iq');
      expect(NS.JINGLE_IBB).to.equal('urn:xmpp:jingle:transports:ibb:1');
    });

    it('builds the session-terminate of example 9 (initiator named as well)', () => {
      const ex = parse(XEP0261.terminate);
      ex.getChild('jingle', NS.JINGLE)!.attrs.initiator = ROMEO;
      expect(
        shape(
          buildSessionTerminate(
            { id: 'hz81vf48', from: ROMEO, to: JULIET, sid: 'a73sjjvkla37jfea', initiator: ROMEO },
            { condition: 'success' },
          ),
        ),
      ).to.deep.equal(shape(ex));
    });
  });

  describe('errors and malformed input', () => {
    it('builds Jingle errors with their stanza-error pairing (XEP-0166 §10)', () => {
      for (const [cond, { type, condition }] of Object.entries(JINGLE_ERRORS)) {
        const e = jingleErrorOf(cond as keyof typeof JINGLE_ERRORS, 'why');
        expect(e.attrs.type).to.equal(type);
        expect(e.getChild(condition, NS.STANZAS), cond).to.not.equal(undefined);
        expect(e.getChild(cond, NS.JINGLE_ERRORS), cond).to.not.equal(undefined);
      }
      expect(JINGLE_ERRORS['unknown-session']).to.deep.equal({ type: 'cancel', condition: 'item-not-found' });
      expect(JINGLE_ERRORS['out-of-order']).to.deep.equal({ type: 'wait', condition: 'unexpected-request' });
      expect(JINGLE_ERRORS['tie-break']).to.deep.equal({ type: 'cancel', condition: 'conflict' });
      expect(JINGLE_ERRORS['unsupported-info']).to.deep.equal({ type: 'modify', condition: 'feature-not-implemented' });
    });

    it('refuses what XEP-0166 calls bad-request', () => {
      const bad = [
        `<jingle xmlns='${NS.JINGLE}' sid='s'/>`, // no action
        `<jingle xmlns='${NS.JINGLE}' action='session-dance' sid='s'/>`,
        `<jingle xmlns='${NS.JINGLE}' action='session-accept'/>`, // no sid
        `<jingle xmlns='${NS.JINGLE}' action='session-accept' sid='s'><content name='x'/></jingle>`, // no creator
        `<jingle xmlns='${NS.JINGLE}' action='session-accept' sid='s'><content creator='initiator' name='x'><transport xmlns='${NS.JINGLE_S5B}'/></content></jingle>`, // no transport sid
        `<jingle xmlns='${NS.JINGLE}' action='session-accept' sid='s'><content creator='initiator' name='x'><transport xmlns='${NS.JINGLE_S5B}' sid='t'><candidate cid='c' host='h' jid='j' port='0' priority='1'/></transport></content></jingle>`,
        `<jingle xmlns='${NS.JINGLE}' action='session-accept' sid='s'><content creator='initiator' name='x'><transport xmlns='${NS.JINGLE_IBB}' sid='t' block-size='70000'/></content></jingle>`,
        `<jingle xmlns='${NS.JINGLE}' action='session-accept' sid='s'><content creator='initiator' name='x'><description xmlns='${NS.JINGLE_FT}'><file><size>-1</size></file></description></content></jingle>`,
      ];
      for (const x of bad) expect(() => parseJingle(parse(x)), x).to.throw(JingleParseError);
      expect(() =>
        parseS5bInfo(parse(`<transport xmlns='${NS.JINGLE_S5B}' sid='t'><candidate-used/></transport>`)),
      ).to.throw(JingleParseError);
    });

    it('answers requests we do not take with transport-reject and content-reject', () => {
      const env: Envelope = { from: ROMEO, to: JULIET, sid: 's', initiator: ROMEO };
      const r = buildTransportReject(
        env,
        { name: 'a-file-offer', creator: 'initiator' },
        parse(`<transport xmlns='${NS.JINGLE_IBB}' sid='t' block-size='4096'/>`),
      );
      expect(parseJingle(r.getChild('jingle', NS.JINGLE)!)).to.deep.include({
        action: 'transport-reject',
        sid: 's',
        initiator: ROMEO,
      });
      const cr = buildContentReject(env, parse(`<content creator='responder' name='extra'/>`));
      expect(parseJingle(cr.getChild('jingle', NS.JINGLE)!).contents).to.deep.equal([
        { creator: 'responder', name: 'extra' },
      ]);
    });
  });
});

describe('transfer/jingle responder candidates', () => {
  it('connects only to networks allowed by transfer.jingle.peerNetworks', async () => {
    const def = new NetworkPolicy([
      '0.0.0.0/0',
      '::/0',
      '!127.0.0.0/8',
      '!::1/128',
      '!0.0.0.0/8',
      '!169.254.0.0/16',
      '!fe80::/10',
    ]);
    expect(def.allows('192.0.2.10')).to.equal(true);
    expect(def.allows('2001:db8::1')).to.equal(true);
    for (const a of ['127.0.0.1', '::1', 'fe80::1', '169.254.1.1', '0.0.0.0', 'not-an-ip'])
      expect(def.allows(a), a).to.equal(false);
    const lo = new NetworkPolicy(['127.0.0.0/8']);
    expect(lo.allows('127.0.0.1')).to.equal(true);
    expect(lo.allows('192.0.2.10')).to.equal(false);
    expect(await lo.resolve('192.0.2.10', 1000)).to.deep.equal({
      refused: '192.0.2.10 is outside transfer.jingle.peerNetworks',
    });
    expect(await lo.resolve('127.0.0.5', 1000)).to.deep.equal({ address: '127.0.0.5' });
    const none = new NetworkPolicy(['none']);
    expect(none.allowsAnything).to.equal(false);
    expect(await none.resolve('127.0.0.1', 1000)).to.deep.equal({ refused: 'no networks allowed' });
    expect(NetworkPolicy.validate(['10.0.0.0/8', '!10.1.0.0/16'])).to.equal(undefined);
    expect(NetworkPolicy.validate(['10.0.0.0/33'])).to.match(/prefix/);
    expect(NetworkPolicy.validate(['example.com'])).to.match(/bad network/);
  });

  it('tries candidates highest priority first, staggered, and keeps the first that connects', async () => {
    const c = (cid: string, priority: number, host = '127.0.0.1', type: 'direct' | 'proxy' = 'direct') => ({
      cid,
      host,
      jid: 'j',
      port: 1000 + priority,
      priority,
      type,
    });
    const tried: string[] = [];
    const skipped: string[] = [];
    const fakeSocket = (name: string) => ({ name, destroy: () => {} }) as unknown as import('node:net').Socket;
    const win = await tryPeerCandidates([c('low', 1), c('outside', 50, '192.0.2.1'), c('high', 100), c('mid', 10)], {
      dstaddr: 'h',
      policy: new NetworkPolicy(['127.0.0.0/8']),
      timeoutMs: 1000,
      staggerMs: 5,
      onSkip: (x, why) => skipped.push(`${x.cid}: ${why}`),
      connect: async (_host, port) => {
        tried.push(String(port - 1000));
        if (port === 1100) throw new Error('refused');
        return fakeSocket(String(port));
      },
    });
    expect(tried[0]).to.equal('100');
    expect(win!.candidate.cid).to.equal('mid');
    expect(skipped).to.include('outside: 192.0.2.1 is outside transfer.jingle.peerNetworks');
    expect(skipped).to.include('high: refused');
    const none = await tryPeerCandidates([c('a', 5)], {
      dstaddr: 'h',
      policy: new NetworkPolicy(['127.0.0.0/8']),
      timeoutMs: 100,
      stillWanted: () => false,
    });
    expect(none).to.equal(undefined);
    expect(await tryPeerCandidates([], { dstaddr: 'h', policy: new NetworkPolicy([]), timeoutMs: 100 })).to.equal(
      undefined,
    );
  });

  it('speaks SOCKS5 with DST.ADDR = the hash, port 0, to a real streamhost', async () => {
    const sh = await Streamhost.listen(
      {
        bindHost: '127.0.0.1',
        bindPort: 0,
        advertiseHost: '',
        advertisePort: 0,
        handshakeTimeoutMs: 2000,
        maxConnections: 10,
        maxPerAddress: 10,
      },
      createLogger('silent'),
    );
    try {
      const hash = dstAddrs('tsid', 'p@r/x', 'd@e/y').theirs;
      const exp = sh.expect(hash, 5000);
      const [client, server] = await Promise.all([socksConnect('127.0.0.1', sh.port, hash, 5000), exp.socket]);
      server.resume();
      const got = new Promise<string>((r) => server.once('data', (b: Buffer) => r(b.toString())));
      client.write('hello');
      expect(await got).to.equal('hello');
      client.destroy();
      server.destroy();
      // An unknown hash is refused.
      let refused = false;
      await socksConnect('127.0.0.1', sh.port, 'f'.repeat(40), 2000).catch(() => (refused = true));
      expect(refused).to.equal(true);
    } finally {
      await sh.close();
    }
  });
});
