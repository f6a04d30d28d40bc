import { expect } from 'chai';
import { xml } from '@xmpp/component';
import { buildOffer, chosenMethod } from '../../../../src/transfer/si/stanzas.js';
import {
  buildActivate,
  buildStreamhostOffer,
  parseProxySpec,
  streamhostUsed,
} from '../../../../src/transfer/s5b/stanzas.js';
import { NS } from '../../../../src/xmpp/namespaces.js';
import { siAnswer } from '../../../support/si.js';

const file = {
  name: 'status-1234.pdf',
  size: 1234,
  date: new Date('2026-11-25T10:00:00Z'),
  desc: 'Status report of project 1234',
  mime: 'application/pdf',
};

describe('transfer/si and bytestreams stanzas', () => {
  it('builds an SI file offer with everything libpurple needs', () => {
    const iq = buildOffer({
      id: 'o1',
      from: '1234@reports.example.com/reports',
      to: 'alice@example.com/pidgin',
      sid: 'sid1',
      file,
      methods: ['s5b', 'ibb'],
    });
    expect(iq.attrs).to.include({
      type: 'set',
      from: '1234@reports.example.com/reports',
      to: 'alice@example.com/pidgin',
    });
    const si = iq.getChild('si', NS.SI)!;
    expect(si.attrs).to.include({ id: 'sid1', profile: NS.SI_FILE });
    const f = si.getChild('file', NS.SI_FILE)!;
    expect(f.attrs).to.include({ name: 'status-1234.pdf', size: '1234', date: '2026-11-25T10:00:00.000Z' });
    // no MD5: optional (XEP-0096), ignored by libpurple, and it would need the whole report before the offer
    expect(f.attrs).not.to.have.property('hash');
    expect(f.getChildText('desc')).to.equal('Status report of project 1234');
    const field = si.getChild('feature', NS.FEATURE_NEG)!.getChild('x', NS.DATA_FORMS)!.getChild('field')!;
    expect(field.attrs.var).to.equal('stream-method');
    expect(field.getChildren('option').map((o) => o.getChildText('value'))).to.deep.equal([NS.BYTESTREAMS, NS.IBB]);
  });

  it('reads the chosen method from the answer (XEP-0095 example 2)', () => {
    const answer = (value: string) => xml('iq', { type: 'result' }, siAnswer(value));
    expect(chosenMethod(answer(NS.BYTESTREAMS), ['s5b', 'ibb'])).to.equal('s5b');
    expect(chosenMethod(answer(NS.IBB), ['s5b', 'ibb'])).to.equal('ibb');
    expect(chosenMethod(answer(NS.IBB), ['s5b'])).to.equal(undefined); // not offered
    expect(chosenMethod(answer('urn:x:other'), ['s5b', 'ibb'])).to.equal(undefined);
    expect(chosenMethod(xml('iq', { type: 'result' }), ['s5b'])).to.equal(undefined);
  });

  it('builds the streamhost offer, reads streamhost-used and builds activate', () => {
    const iq = buildStreamhostOffer({
      id: 'b1',
      from: 'p@r/x',
      to: 't@e/y',
      sid: 's',
      hosts: [
        { jid: 'p@r/x', host: '127.0.0.1', port: 7625 },
        { jid: 'proxy.e', host: '::1', port: 7777 },
      ],
    });
    const q = iq.getChild('query', NS.BYTESTREAMS)!;
    expect(q.attrs).to.include({ sid: 's', mode: 'tcp' });
    expect(q.getChildren('streamhost').map((h) => h.attrs)).to.deep.equal([
      { jid: 'p@r/x', host: '127.0.0.1', port: '7625' },
      { jid: 'proxy.e', host: '::1', port: '7777' },
    ]);
    const used = xml(
      'iq',
      { type: 'result' },
      xml('query', { xmlns: NS.BYTESTREAMS }, xml('streamhost-used', { jid: 'proxy.e' })),
    );
    expect(streamhostUsed(used)).to.equal('proxy.e');
    expect(streamhostUsed(xml('iq', { type: 'result' }))).to.equal(undefined);
    const act = buildActivate({ id: 'a', from: 'p@r/x', proxy: 'proxy.e', sid: 's', target: 't@e/y' });
    expect(act.getChild('query', NS.BYTESTREAMS)!.getChildText('activate')).to.equal('t@e/y');
    expect(parseProxySpec('proxy.example.com@127.0.0.1:7777')).to.deep.equal({
      jid: 'proxy.example.com',
      host: '127.0.0.1',
      port: 7777,
    });
  });
});
