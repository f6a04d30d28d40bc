// The Jingle session state machine (initiator side): every action the
// responder can send, in every state, gets the answer XEP-0166/0260 call for;
// unknown sessions and out-of-order actions get the Jingle error conditions;
// and the event queue the delivery waits on keeps its promises (timeouts,
// terminate ending every other wait).
import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { ACTIONS, type JingleAction, type S5bCandidate } from '../../../../src/transfer/jingle/stanzas.js';
import {
  JingleSession,
  JingleSessions,
  SessionEnded,
  SessionTimeout,
  type SessionEvent,
} from '../../../../src/transfer/jingle/session.js';
import { parseJid } from '../../../../src/xmpp/addresses.js';
import { NS } from '../../../../src/xmpp/namespaces.js';

const US = '1234@reports.example.com/reports';
const THEM = 'dave@example.com/dino';
const SID = 'xjsession1';
const TSID = 'xs-transport';
const IBB_SID = 'xi-replacement';
const CONTENT = 'a-file-offer';
const OURS: S5bCandidate[] = [
  { cid: 'c-own', host: '127.0.0.1', jid: US, port: 7625, priority: 126 * 65536 + 65535, type: 'direct' },
  {
    cid: 'c-proxy',
    host: '127.0.0.1',
    jid: 'proxy.example.com',
    port: 7777,
    priority: 10 * 65536 + 65535,
    type: 'proxy',
  },
];

type State = 'pending' | 'active' | 'replacing' | 'ended';
const STATES: State[] = ['pending', 'active', 'replacing', 'ended'];

function session(): JingleSession {
  return new JingleSession({
    sid: SID,
    initiator: US,
    responder: THEM,
    contentName: CONTENT,
    transport: { kind: 's5b', sid: TSID, candidates: OURS },
  });
}

/** A session brought into a state by the actions that lead there. */
function inState(state: State): JingleSession {
  const s = session();
  if (state === 'pending') return s;
  expect(
    s.handle(
      {
        action: 'session-accept',
        sid: SID,
        contents: [{ creator: 'initiator', name: CONTENT, transport: { kind: 's5b', sid: TSID, candidates: [] } }],
      },
      jingle('session-accept'),
    ).ok,
  ).to.equal(true);
  if (state === 'active') return s;
  if (state === 'replacing') {
    // Both sides reported candidate-error; we sent transport-replace.
    s.handle({ action: 'transport-info', sid: SID, contents: [] }, jingle('transport-info'));
    s.replaceTransport({ kind: 'ibb', sid: IBB_SID });
    return s;
  }
  s.handle(
    { action: 'session-terminate', sid: SID, contents: [], reason: { condition: 'success' } },
    jingle('session-terminate'),
  );
  expect(s.state).to.equal('ended');
  return s;
}

const content = (...children: Element[]) => xml('content', { creator: 'initiator', name: CONTENT }, ...children);
const s5b = (...children: Element[]) => xml('transport', { xmlns: NS.JINGLE_S5B, sid: TSID }, ...children);

/** A well-formed example of each action as a responder would send it. */
function jingle(action: JingleAction, sid = SID): Element {
  const j = (...children: Element[]) => xml('jingle', { xmlns: NS.JINGLE, action, sid }, ...children);
  switch (action) {
    case 'session-initiate':
      return j(
        xml(
          'content',
          { creator: 'initiator', name: 'their-offer', senders: 'initiator' },
          xml('description', { xmlns: NS.JINGLE_FT }, xml('file', {}, xml('name', {}, 'x'), xml('size', {}, '1'))),
          s5b(),
        ),
      );
    case 'session-accept':
      return j(
        content(
          xml('description', { xmlns: NS.JINGLE_FT }, xml('file', {}, xml('name', {}, 'x'), xml('size', {}, '1'))),
          s5b(),
        ),
      );
    case 'session-info':
      return j();
    case 'session-terminate':
      return j(xml('reason', {}, xml('success')));
    case 'transport-info':
      return j(content(s5b(xml('candidate-error'))));
    case 'transport-accept':
    case 'transport-replace':
      return j(content(xml('transport', { xmlns: NS.JINGLE_IBB, sid: IBB_SID, 'block-size': '4096' })));
    case 'content-add':
      return j(
        xml(
          'content',
          { creator: 'responder', name: 'another' },
          xml('description', { xmlns: NS.JINGLE_FT }, xml('file', {}, xml('name', {}, 'y'), xml('size', {}, '2'))),
        ),
      );
    case 'content-remove':
      return j(content(), xml('reason', {}, xml('cancel')));
    default:
      return j(content());
  }
}

function iq(payload: Element, o: { from?: string; to?: string } = {}): Element {
  return xml('iq', { type: 'set', id: 'i1', from: o.from ?? THEM, to: o.to ?? US }, payload);
}

/** What the router answers: 'ok' for a result, else "<type> <condition>[ <jingle condition>]". */
function answer(reply: Element | true | undefined): string {
  if (reply === true) return 'ok';
  if (!reply) return 'none';
  const cond = reply.getChildElements().find((c) => c.attrs.xmlns === NS.STANZAS && c.name !== 'text')?.name;
  const jc = reply.getChildElements().find((c) => c.attrs.xmlns === NS.JINGLE_ERRORS)?.name;
  return [reply.attrs.type, cond, jc].filter(Boolean).join(' ');
}

const OUT_OF_ORDER = 'wait unexpected-request out-of-order';
const UNKNOWN = 'cancel item-not-found unknown-session';
const TIE = 'cancel conflict tie-break';

/** The answer each action gets in each state (the ended column: the session is gone). */
const EXPECTED: Record<JingleAction, [pending: string, active: string, replacing: string, ended: string]> = {
  'session-initiate': [TIE, TIE, TIE, 'cancel service-unavailable'],
  'session-accept': ['ok', OUT_OF_ORDER, OUT_OF_ORDER, UNKNOWN],
  'session-info': ['ok', 'ok', 'ok', UNKNOWN],
  'session-terminate': ['ok', 'ok', 'ok', UNKNOWN],
  'transport-info': ['ok', 'ok', OUT_OF_ORDER, UNKNOWN], // replacing: the responder already sent its candidate-error
  'transport-accept': [OUT_OF_ORDER, OUT_OF_ORDER, 'ok', UNKNOWN],
  'transport-reject': [OUT_OF_ORDER, OUT_OF_ORDER, 'ok', UNKNOWN],
  'transport-replace': ['ok', 'ok', TIE, UNKNOWN], // ok: acknowledged, then answered with transport-reject
  'content-accept': [OUT_OF_ORDER, OUT_OF_ORDER, OUT_OF_ORDER, UNKNOWN],
  'content-reject': [OUT_OF_ORDER, OUT_OF_ORDER, OUT_OF_ORDER, UNKNOWN],
  'content-add': ['ok', 'ok', 'ok', UNKNOWN], // ok: acknowledged, then answered with content-reject
  'content-modify': ['cancel not-acceptable', 'cancel not-acceptable', 'cancel not-acceptable', UNKNOWN],
  'content-remove': ['ok', 'ok', 'ok', UNKNOWN],
  'description-info': ['ok', 'ok', 'ok', UNKNOWN],
  'security-info': [
    'cancel feature-not-implemented',
    'cancel feature-not-implemented',
    'cancel feature-not-implemented',
    UNKNOWN,
  ],
};

/** The event each accepted action hands to the delivery. */
const EVENT: Partial<Record<JingleAction, SessionEvent['kind']>> = {
  'session-accept': 'session-accept',
  'session-terminate': 'session-terminate',
  'transport-info': 's5b',
  'transport-accept': 'transport-accept',
  'transport-reject': 'transport-reject',
  'transport-replace': 'transport-replace',
  'content-add': 'content-add',
  'content-remove': 'content-remove',
};

describe('transfer/jingle session state machine', () => {
  it('covers every action of XEP-0166', () => {
    expect(Object.keys(EXPECTED).sort()).to.deep.equal([...ACTIONS].sort());
  });

  for (const action of ACTIONS) {
    for (const [i, state] of STATES.entries()) {
      const want = EXPECTED[action][i];
      it(`${action} in ${state}: ${want}`, () => {
        const s = inState(state);
        const emitted: SessionEvent[] = [];
        const sessions = new JingleSessions((fn) => fn());
        s.onRequest = (e) => emitted.push(e);
        s.observe((e) => e.kind !== 'transport-replace' && e.kind !== 'content-add' && emitted.push(e));
        if (state !== 'ended') sessions.add(s);
        const reply = sessions.handle(iq(jingle(action)), jingle(action), parseJid(THEM)!);
        expect(answer(reply)).to.equal(want);
        if (want === 'ok' && EVENT[action]) expect(emitted.map((e) => e.kind)).to.deep.equal([EVENT[action]]);
        else expect(emitted).to.deep.equal([]);
        // The state machine itself says the same for the ended state.
        if (state === 'ended' && action !== 'session-initiate') {
          const v = s.handle({ action, sid: SID, contents: [] }, jingle(action));
          expect(v.ok ? 'ok' : answer(v.error)).to.equal(UNKNOWN);
        }
        if (action === 'session-terminate' && want === 'ok') {
          expect(s.state).to.equal('ended');
          expect(sessions.get(THEM, SID)).to.equal(undefined); // forgotten: later actions are unknown-session
        }
        if (action === 'session-accept' && want === 'ok') expect(s.state).to.equal('active');
        if (action === 'transport-accept' && want === 'ok')
          expect(s.transport).to.deep.equal({ kind: 'ibb', sid: IBB_SID });
      });
    }
  }

  describe('which session an IQ belongs to', () => {
    it('answers unknown sids, other senders and other projects with unknown-session', () => {
      const sessions = new JingleSessions((fn) => fn());
      sessions.add(session());
      const j = jingle('session-info');
      expect(
        answer(sessions.handle(iq(jingle('session-info', 'nope')), jingle('session-info', 'nope'), parseJid(THEM)!)),
      ).to.equal(UNKNOWN);
      expect(answer(sessions.handle(iq(j, { from: 'eve@example.com/x' }), j, parseJid('eve@example.com/x')!))).to.equal(
        UNKNOWN,
      );
      expect(
        answer(sessions.handle(iq(j, { from: 'dave@example.com/other' }), j, parseJid('dave@example.com/other')!)),
      ).to.equal(UNKNOWN);
      expect(answer(sessions.handle(iq(j, { to: '5678@reports.example.com/reports' }), j, parseJid(THEM)!))).to.equal(
        UNKNOWN,
      );
      // JIDs compare as JIDs: the sender's domain in capitals is still the same sender.
      expect(
        answer(sessions.handle(iq(j, { from: 'Dave@EXAMPLE.com/dino' }), j, parseJid('Dave@EXAMPLE.com/dino')!)),
      ).to.equal('ok');
      // A new session offered to us: we only send files.
      const si = jingle('session-initiate', 'theirs');
      expect(answer(sessions.handle(iq(si), si, parseJid(THEM)!))).to.equal('cancel service-unavailable');
    });

    it('answers malformed Jingle with bad-request', () => {
      const sessions = new JingleSessions((fn) => fn());
      sessions.add(session());
      const bad = xml('jingle', { xmlns: NS.JINGLE, action: 'session-dance', sid: SID });
      expect(answer(sessions.handle(iq(bad), bad, parseJid(THEM)!))).to.equal('modify bad-request');
      const noContent = xml('jingle', { xmlns: NS.JINGLE, action: 'session-accept', sid: SID });
      expect(answer(sessions.handle(iq(noContent), noContent, parseJid(THEM)!))).to.equal('modify bad-request');
    });

    it('emits events only after the IQ was answered', () => {
      const queue: Array<() => void> = [];
      const sessions = new JingleSessions((fn) => queue.push(fn));
      const s = session();
      sessions.add(s);
      const seen: string[] = [];
      s.observe((e) => seen.push(e.kind));
      expect(sessions.handle(iq(jingle('session-accept')), jingle('session-accept'), parseJid(THEM)!)).to.equal(true);
      expect(seen).to.deep.equal([]);
      queue.shift()!();
      expect(seen).to.deep.equal(['session-accept']);
    });
  });

  describe('the S5B candidate exchange (XEP-0260)', () => {
    const info = (...children: Element[]) =>
      xml('jingle', { xmlns: NS.JINGLE, action: 'transport-info', sid: SID }, content(s5b(...children)));
    const run = (s: JingleSession, el: Element) => {
      const sessions = new JingleSessions((fn) => fn());
      sessions.add(s);
      return answer(sessions.handle(iq(el), el, parseJid(THEM)!));
    };

    it('takes one candidate-used naming one of our candidates, then nothing more', () => {
      const s = inState('active');
      const seen: SessionEvent[] = [];
      s.observe((e) => seen.push(e));
      expect(run(s, info(xml('candidate-used', { cid: 'unknown' })))).to.equal('modify bad-request');
      expect(run(s, info(xml('candidate-used', { cid: 'c-own' })))).to.equal('ok');
      expect(seen[0]).to.deep.include({
        kind: 's5b',
        info: { kind: 'candidate-used', cid: 'c-own' },
        candidate: OURS[0],
      });
      expect(run(s, info(xml('candidate-used', { cid: 'c-own' })))).to.equal(OUT_OF_ORDER);
      expect(run(s, info(xml('candidate-error')))).to.equal(OUT_OF_ORDER);
    });

    it('takes the candidate-used even before session-accept (pending)', () => {
      expect(run(inState('pending'), info(xml('candidate-used', { cid: 'c-proxy' })))).to.equal('ok');
    });

    it('takes activated and proxy-error only when a proxy was nominated / its activation awaited', () => {
      const s = inState('active');
      expect(run(s, info(xml('activated', { cid: 'their-proxy' })))).to.equal(OUT_OF_ORDER);
      expect(run(s, info(xml('proxy-error')))).to.equal(OUT_OF_ORDER);
      s.awaitActivation('their-proxy');
      expect(run(s, info(xml('activated', { cid: 'other' })))).to.equal(OUT_OF_ORDER);
      expect(run(s, info(xml('activated', { cid: 'their-proxy' })))).to.equal('ok');
      expect(run(s, info(xml('activated', { cid: 'their-proxy' })))).to.equal(OUT_OF_ORDER); // once
      expect(run(s, info(xml('proxy-error')))).to.equal('ok');
    });

    it('refuses transport-info for another or a replaced transport', () => {
      const other = xml(
        'jingle',
        { xmlns: NS.JINGLE, action: 'transport-info', sid: SID },
        content(xml('transport', { xmlns: NS.JINGLE_S5B, sid: 'other' }, xml('candidate-error'))),
      );
      expect(run(inState('active'), other)).to.equal(OUT_OF_ORDER);
      const s = inState('replacing');
      const accept = xml(
        'jingle',
        { xmlns: NS.JINGLE, action: 'transport-accept', sid: SID },
        content(xml('transport', { xmlns: NS.JINGLE_IBB, sid: IBB_SID, 'block-size': '4096' })),
      );
      expect(run(s, accept)).to.equal('ok');
      expect(s.transport).to.deep.equal({ kind: 'ibb', sid: IBB_SID });
      expect(s.pendingReplace).to.equal(undefined);
      expect(run(s, info(xml('candidate-error')))).to.equal(OUT_OF_ORDER);
      const ibbInfo = xml(
        'jingle',
        { xmlns: NS.JINGLE, action: 'transport-info', sid: SID },
        content(xml('transport', { xmlns: NS.JINGLE_IBB, sid: IBB_SID, 'block-size': '4096' })),
      );
      expect(run(s, ibbInfo)).to.equal('cancel feature-not-implemented');
      const wrongContent = xml(
        'jingle',
        { xmlns: NS.JINGLE, action: 'transport-info', sid: SID },
        xml('content', { creator: 'initiator', name: 'other' }, s5b(xml('candidate-error'))),
      );
      expect(run(inState('active'), wrongContent)).to.equal('modify bad-request');
    });

    it('refuses a transport-accept for another transport than the one offered', () => {
      const s = inState('replacing');
      const wrong = xml(
        'jingle',
        { xmlns: NS.JINGLE, action: 'transport-accept', sid: SID },
        content(xml('transport', { xmlns: NS.JINGLE_IBB, sid: 'not-ours', 'block-size': '4096' })),
      );
      expect(run(s, wrong)).to.equal('modify bad-request');
      expect(s.pendingReplace).to.deep.equal({ kind: 'ibb', sid: IBB_SID });
    });
  });

  describe('session-info (XEP-0166 §7.2.9, XEP-0234 §8)', () => {
    const infoWith = (child?: Element) => xml('jingle', { xmlns: NS.JINGLE, action: 'session-info', sid: SID }, child);
    it('acks a ping, takes received and checksum, answers anything else with unsupported-info', () => {
      const s = inState('active');
      const sessions = new JingleSessions((fn) => fn());
      sessions.add(s);
      const seen: string[] = [];
      s.observe((e) => seen.push(e.kind));
      const h = (el: Element) => answer(sessions.handle(iq(el), el, parseJid(THEM)!));
      expect(h(infoWith())).to.equal('ok');
      expect(h(infoWith(xml('received', { xmlns: NS.JINGLE_FT, creator: 'initiator', name: CONTENT })))).to.equal('ok');
      expect(h(infoWith(xml('checksum', { xmlns: NS.JINGLE_FT, creator: 'initiator', name: CONTENT })))).to.equal('ok');
      expect(h(infoWith(xml('ringing', { xmlns: 'urn:xmpp:jingle:apps:rtp:info:1' })))).to.equal(
        'modify feature-not-implemented unsupported-info',
      );
      expect(seen).to.deep.equal(['received']);
    });
  });

  describe('waiting for events', () => {
    it('hands queued and later events to waits, times out, and ends every other wait on session-terminate', async () => {
      const s = session();
      s.emit({ kind: 'received' });
      expect((await s.wait((e) => e.kind === 'received', 1000, 'received')).kind).to.equal('received');
      const late = s.wait((e) => e.kind === 'transport-accept', 1000, 'transport-accept');
      s.emit({ kind: 'transport-accept', transport: { kind: 'ibb', sid: 'x', blockSize: 1 } });
      expect((await late).kind).to.equal('transport-accept');
      let timedOut: unknown;
      await s.wait((e) => e.kind === 'received', 20, 'confirmation').catch((e: unknown) => (timedOut = e));
      expect(timedOut).to.be.instanceOf(SessionTimeout);
      expect((timedOut as Error).message).to.equal('no confirmation within 20 ms');
      const accept = s.wait((e) => e.kind === 'session-accept', 1000, 'session-accept');
      const end = s.wait((e) => e.kind === 'session-terminate', 1000, 'session-terminate');
      s.emit({ kind: 'session-terminate', reason: { condition: 'decline' } });
      let ended: unknown;
      await accept.catch((e: unknown) => (ended = e));
      expect(ended).to.be.instanceOf(SessionEnded);
      expect((ended as SessionEnded).reason).to.deep.equal({ condition: 'decline' });
      expect((await end).kind).to.equal('session-terminate');
      // …and every wait after it too.
      let after: unknown;
      await s.wait((e) => e.kind === 'received', 1000, 'received').catch((e: unknown) => (after = e));
      expect(after).to.be.instanceOf(SessionEnded);
    });

    it('treats the removal of our only content as the end of the session', async () => {
      const s = session();
      const w = s.wait((e) => e.kind === 'session-accept', 1000, 'session-accept');
      s.emit({ kind: 'content-remove', reason: { condition: 'cancel' } });
      let ended: unknown;
      await w.catch((e: unknown) => (ended = e));
      expect((ended as SessionEnded).reason.condition).to.equal('cancel');
    });

    it('ends every wait at once on abort (shutdown, lost server link)', async () => {
      const s = session();
      const w = s.wait((e) => e.kind === 'session-accept', 10_000, 'session-accept');
      s.abort(new Error('connection lost'));
      let err: unknown;
      await w.catch((e: unknown) => (err = e));
      expect((err as Error).message).to.equal('connection lost');
      await s.wait(() => true, 10_000, 'anything').catch((e: unknown) => (err = e));
      expect((err as Error).message).to.equal('connection lost');
    });
  });
});
