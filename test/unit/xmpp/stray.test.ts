// Answers for transfers another instance started (src/xmpp/slots/stray.ts):
// what counts as one, what the user is told, what is offered again.
import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { replies } from '../../../src/chat/replies.js';
import { errorElement } from '../../../src/xmpp/errors.js';
import { NS } from '../../../src/xmpp/namespaces.js';
import { StrayAnswers } from '../../../src/xmpp/slots/stray.js';

const D = 'reports.example.com';
const USER = 'alice@example.com/pidgin';
const projectOf = (jid: string | undefined) => {
  const m = /^(\d+)@reports\.example\.com(\/.*)?$/.exec(jid ?? '');
  return m ? m[1] : undefined;
};

function setup() {
  const clock = { now: 1_000_000 };
  return { clock, s: new StrayAnswers({ projectOf }, () => clock.now) };
}
const iq = (type: string, id: string, ...children: Element[]) =>
  xml('iq', { type, id, from: USER, to: `1234@${D}/reports` }, ...children);

describe('stray answers', () => {
  it('an SI accept with an id this instance never sent: wanted, for the project of its JID', () => {
    const { s } = setup();
    const accept = iq('result', 'xr-other', xml('si', { xmlns: NS.SI }, xml('feature', { xmlns: NS.FEATURE_NEG })));
    expect(s.answer(accept)).to.deep.equal({ user: USER, project: '1234', what: 'si-accept', wanted: true });
  });

  it('an SI decline (forbidden), a bytestreams result, an IBB/Jingle acknowledgement', () => {
    const { s, clock } = setup();
    const decline = xml(
      'iq',
      { type: 'error', id: 'xr-a', from: USER, to: `1234@${D}/reports` },
      errorElement('cancel', 'forbidden', 'Offer Declined'),
    );
    expect(s.answer(decline)).to.deep.include({ what: 'refusal', wanted: false });
    clock.now += 60000;
    const used = iq(
      'result',
      'xr-b',
      xml('query', { xmlns: NS.BYTESTREAMS, sid: 's1' }, xml('streamhost-used', { jid: 'x' })),
    );
    expect(s.answer(used)).to.deep.include({ what: 'bytestreams', wanted: true });
    clock.now += 60000;
    expect(s.answer(iq('result', 'xr-c'))).to.deep.include({ what: 'ack', wanted: true });
  });

  it('answers to what this instance sent are not strays (a late acknowledgement of its own ended transfer)', () => {
    const { s } = setup();
    const open = xml(
      'iq',
      { type: 'set', id: 'xr-open1', to: USER },
      xml('open', { xmlns: NS.IBB, sid: 'ibb-1', 'block-size': '4096' }),
    );
    s.sent(open);
    expect(s.answer(iq('result', 'xr-open1'))).to.equal(undefined);
    const offer = xml('iq', { type: 'set', id: 'xr-offer1', to: USER }, xml('si', { xmlns: NS.SI, id: 'si-1' }));
    s.sent(offer);
    expect(s.answer(iq('result', 'xr-offer1', xml('si', { xmlns: NS.SI })))).to.equal(undefined);
    // an IBB close for its own sid, answered item-not-found because the stream already ended
    const close = iq('set', 'u1', xml('close', { xmlns: NS.IBB, sid: 'ibb-1' }));
    expect(s.query(close, errorElement('cancel', 'item-not-found'))).to.equal(undefined);
  });

  it('IQ sets for unknown sids answered item-not-found: IBB close, Jingle session-accept and session-terminate', () => {
    const { s, clock } = setup();
    const nf = errorElement('cancel', 'item-not-found');
    expect(s.query(iq('set', 'u1', xml('close', { xmlns: NS.IBB, sid: 'ibb-x' })), nf)).to.deep.include({
      what: 'ibb-close',
      wanted: false,
    });
    clock.now += 60000;
    const accept = iq('set', 'u2', xml('jingle', { xmlns: NS.JINGLE, action: 'session-accept', sid: 'j-x' }));
    expect(s.query(accept, nf)).to.deep.include({ what: 'jingle-accept', wanted: true, project: '1234' });
    clock.now += 60000;
    const end = iq('set', 'u3', xml('jingle', { xmlns: NS.JINGLE, action: 'session-terminate', sid: 'j-x' }));
    expect(s.query(end, nf)).to.deep.include({ what: 'jingle-end', wanted: false });
    // answered otherwise: not ours to report
    clock.now += 60000;
    expect(s.query(accept, true)).to.equal(undefined);
    expect(s.query(accept, errorElement('modify', 'bad-request'))).to.equal(undefined);
    expect(s.query(iq('set', 'u4', xml('query', { xmlns: NS.DISCO_INFO })), nf)).to.equal(undefined);
  });

  it('one notice per user and project a minute (a stream of stray acknowledgements tells once)', () => {
    const { s, clock } = setup();
    expect(s.answer(iq('result', 'xr-1'))).to.not.equal(undefined);
    for (let i = 2; i < 50; i++) expect(s.answer(iq('result', `xr-${i}`))).to.equal(undefined);
    clock.now += 60001;
    expect(s.answer(iq('result', 'xr-99'))).to.not.equal(undefined);
  });

  it('to the domain: no project, and not what a stranger could trigger with foreign ids', () => {
    const { s } = setup();
    const toDomain = xml('iq', { type: 'result', id: 'xr-z', from: USER, to: D }, xml('si', { xmlns: NS.SI }));
    expect(s.answer(toDomain)).to.deep.include({ project: undefined, wanted: true });
    expect(s.answer(iq('result', 'purple1234'))).to.equal(undefined); // an empty result with an id unlike ours
    // a server's late answer to a ping or a proxy's to a disco (ids like ours, sent elsewhere): no user to tell
    const fromServer = xml('iq', { type: 'result', id: 'xr-ping', from: 'example.com', to: D });
    expect(s.answer(fromServer)).to.equal(undefined);
    const fromProxy = xml(
      'iq',
      { type: 'error', id: 'xr-act', from: 'proxy.example.com', to: D },
      errorElement('cancel', 'forbidden'),
    );
    expect(s.answer(fromProxy)).to.equal(undefined);
  });

  it('says it in plain words, offering the report again only where it can', () => {
    expect(replies.strayAnswer('1234', true, '1234')).to.match(
      /project 1234 .*no longer knows.*Offering the report again/,
    );
    expect(replies.strayAnswer('1234', false, '1234')).to.match(/nothing more comes of it/);
    expect(replies.strayAnswer(undefined, true, '1234')).to.match(/Send "report 1234"/);
  });
});
