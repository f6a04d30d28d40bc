// Balancing slots (src/xmpp/slots): the probe/pong/release messages, and the
// slot-state logic of two instances against a stand-in for ejabberd's
// router (a token's slot is a fixed function of the token, a slot is held by
// at most one connection, a handshake takes the first free slot), on a fake clock.
import { expect } from 'chai';
import { xml } from '@xmpp/component';
import { NS } from '../../../src/xmpp/namespaces.js';
import { PRIMARY, SlotWatch, type Conn, type RoundResult } from '../../../src/xmpp/slots/state.js';
import {
  buildSlotMessage,
  isSlotAddress,
  parseSlotMessage,
  slotJid,
  type SlotMessage,
} from '../../../src/xmpp/slots/stanzas.js';

const D = 'reports.example.com';

describe('slots: stanzas', () => {
  it('builds a probe from and to the token, and reads it back', () => {
    const m: SlotMessage = {
      kind: 'probe',
      token: 'a1b2c3d4e5f60718',
      instance: 'abcd1234',
      reply: '0011223344556677',
    };
    const el = buildSlotMessage(m, D);
    expect(el.attrs.from).to.equal(`xr-slot-a1b2c3d4e5f60718@${D}`);
    expect(el.attrs.to).to.equal(el.attrs.from);
    expect(el.attrs.type).to.equal('normal');
    const p = el.getChild('slot', NS.SLOTS)!;
    expect(p.attrs).to.deep.include({ kind: 'probe', instance: 'abcd1234', reply: '0011223344556677' });
    expect(parseSlotMessage(el, D)).to.deep.equal(m);
  });

  it('builds and reads pongs (with the probe they answer) and releases', () => {
    const pong: SlotMessage = {
      kind: 'pong',
      token: '0011223344556677',
      instance: 'b',
      probe: 'a1b2c3d4e5f60718',
      spare: true,
    };
    expect(parseSlotMessage(buildSlotMessage(pong, D), D)).to.deep.equal(pong);
    const rel: SlotMessage = { kind: 'release', token: 'ffeeddccbbaa9988', instance: 'b' };
    expect(parseSlotMessage(buildSlotMessage(rel, D), D)).to.deep.equal(rel);
  });

  it('refuses what does not come from the component domain, malformed tokens, unknown kinds, a pong without its probe', () => {
    const good = buildSlotMessage({ kind: 'probe', token: 'a1b2c3d4e5f60718', instance: 'a' }, D);
    const forged = xml('message', { ...good.attrs, from: 'mallory@example.com/x' }, ...good.children);
    expect(parseSlotMessage(forged, D)).to.equal(undefined);
    const otherDomain = xml(
      'message',
      { ...good.attrs, from: 'xr-slot-a1b2c3d4e5f60718@evil.example.net' },
      ...good.children,
    );
    expect(parseSlotMessage(otherDomain, D)).to.equal(undefined);
    const badToken = buildSlotMessage({ kind: 'probe', token: 'NOT-HEX', instance: 'a' }, D);
    expect(parseSlotMessage(badToken, D)).to.equal(undefined);
    const slot = (attrs: Record<string, string>) =>
      xml(
        'message',
        { from: slotJid('a1b2c3d4e5f60718', D), to: slotJid('a1b2c3d4e5f60718', D) },
        xml('slot', { xmlns: NS.SLOTS, ...attrs }),
      );
    expect(parseSlotMessage(slot({ kind: 'steal', instance: 'a' }), D)).to.equal(undefined);
    expect(parseSlotMessage(slot({ kind: 'pong', instance: 'a' }), D)).to.equal(undefined);
    expect(parseSlotMessage(slot({ kind: 'probe', instance: 'a', reply: '<x>' }), D)).to.equal(undefined);
    expect(
      parseSlotMessage(xml('message', { from: slotJid('a1b2c3d4e5f60718', D), to: slotJid('a1b2c3d4e5f60718', D) }), D),
    ).to.equal(undefined);
    expect(parseSlotMessage(xml('iq', good.attrs, ...good.children), D)).to.equal(undefined);
  });

  it('tells slot-protocol addresses (never for the chat layer) from project JIDs', () => {
    expect(isSlotAddress(`xr-slot-00ff@${D}`, D)).to.equal(true);
    expect(isSlotAddress(`XR-SLOT-00ff@${D.toUpperCase()}/res`, D)).to.equal(true);
    expect(isSlotAddress(`1234@${D}`, D)).to.equal(false);
    expect(isSlotAddress(D, D)).to.equal(false);
    expect(isSlotAddress(`xr-slot-00ff@example.com`, D)).to.equal(false);
    expect(isSlotAddress(undefined, D)).to.equal(false);
  });
});

/** ejabberd's route table for one balanced domain, with its drop of stanzas for a slot nobody holds. */
class FakeRouter {
  readonly holders: Array<{ inst: Inst; conn: Conn } | undefined>;
  constructor(readonly n: number) {
    this.holders = new Array<undefined>(n).fill(undefined);
  }
  /** a token's slot: any fixed function of the bare JID will do (ejabberd: erlang:phash2) */
  slotOf(token: string): number {
    return parseInt(token.slice(0, 6), 16) % this.n;
  }
  handshake(inst: Inst, conn: Conn): void {
    const free = this.holders.findIndex((h) => h === undefined);
    if (free >= 0) this.holders[free] = { inst, conn };
  }
  drop(inst: Inst, conn?: Conn): void {
    this.holders.forEach((h, i) => {
      if (h && h.inst === inst && (conn === undefined || h.conn === conn)) this.holders[i] = undefined;
    });
  }
  route(m: SlotMessage): void {
    const h = this.holders[this.slotOf(m.token)];
    if (h) h.inst.deliver(m, h.conn);
  }
}

class Inst {
  readonly watch: SlotWatch;
  conns: Conn[] = [PRIMARY];
  readonly events: string[] = [];
  readonly givenBack: Conn[] = [];
  private spareNo = 0;
  constructor(
    readonly name: string,
    private readonly router: FakeRouter,
    clock: { now: number },
    seed: number,
    grace = 0,
  ) {
    let x = seed;
    const token = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x.toString(16).padStart(8, '0') + '00ff00ff';
    };
    this.watch = new SlotWatch({ slots: router.n, holdOffMs: 5000, startGraceMs: grace }, name, token, () => clock.now);
  }
  connect(): void {
    this.router.handshake(this, PRIMARY);
  }
  deliver(m: SlotMessage, conn: Conn): void {
    const r = this.watch.received(m, conn);
    if (r.send) this.router.route(r.send);
    if (r.event) this.events.push(r.event.event);
    if (r.giveBack) {
      // no transfers: given back at once
      this.router.drop(this, r.giveBack);
      this.conns = this.conns.filter((c) => c !== r.giveBack);
      this.watch.connGone(r.giveBack, { gaveBack: true });
      this.givenBack.push(r.giveBack);
    }
  }
  /** one probe round, then its actions, as the keeper does them */
  round(): RoundResult {
    const { probes } = this.watch.beginRound(this.conns);
    for (const p of probes) this.router.route(p);
    const r = this.watch.endRound();
    for (const e of r.events) this.events.push(e.event);
    for (const a of r.actions) {
      if (a.do === 'close-spare') {
        this.router.drop(this, a.conn);
        this.conns = this.conns.filter((c) => c !== a.conn);
        this.watch.connGone(a.conn);
      } else if (a.do === 'ask-release') this.router.route({ kind: 'release', token: a.token, instance: this.name });
    }
    if (r.actions.some((a) => a.do === 'open-spare')) {
      const conn = `spare-${++this.spareNo}`;
      this.watch.spareStarting();
      this.router.handshake(this, conn);
      this.conns.push(conn);
      this.watch.spareOnline(conn);
    }
    return r;
  }
}

describe('slots: the state of two instances on a fake clock', () => {
  let clock: { now: number };
  let router: FakeRouter;
  let a: Inst;
  let b: Inst;
  const tick = (ms: number) => (clock.now += ms);

  beforeEach(() => {
    clock = { now: 1_000_000 };
    router = new FakeRouter(2);
    a = new Inst('aaaa', router, clock, 7);
    b = new Inst('bbbb', router, clock, 99);
    a.connect();
    b.connect();
  });

  it('learns its own slot first, then tells self from a live peer; nothing to do while both live', () => {
    const r1 = a.round();
    expect(r1.self[PRIMARY]).to.be.greaterThan(0);
    expect(r1.dropped, 'no reply token yet: silent tokens are unknown, not dropped').to.equal(0);
    expect(r1.unknown).to.be.greaterThan(0);
    b.round();
    tick(2000);
    const r2 = a.round();
    expect(r2.peers).to.deep.equal(['bbbb']);
    expect(r2.dropped).to.equal(0);
    expect(r2.actions).to.deep.equal([]);
  });

  it('a dead slot: opens one spare, which takes the slot and is confirmed by the dropped tokens coming back to it', () => {
    expect(a.watch.status(), 'before any round').to.deep.equal({
      checked: false,
      holdsSlot: false,
      spares: 0,
      deadSince: undefined,
    });
    a.round();
    b.round();
    expect(a.watch.status()).to.deep.equal({ checked: true, holdsSlot: true, spares: 0, deadSince: undefined });
    router.drop(b); // SIGKILL
    tick(2000);
    const r = a.round();
    expect(a.watch.status(), 'the dead slot, seen').to.include({ holdsSlot: true, deadSince: clock.now });
    expect(r.dropped).to.be.greaterThan(0);
    expect(r.events.map((e) => e.event)).to.deep.equal(['dead']);
    expect(r.actions).to.deep.equal([{ do: 'open-spare' }]);
    expect(router.holders.map((h) => h && `${h.inst.name}/${h.conn}`)).to.deep.equal(['aaaa/primary', 'aaaa/spare-1']);
    expect(a.watch.urgent).to.equal(true);
    tick(50);
    const r2 = a.round();
    expect(a.events).to.include('taken');
    expect(r2.self['spare-1']).to.be.greaterThan(0);
    expect(r2.dropped).to.equal(0);
    expect(r2.events.map((e) => e.event)).to.deep.equal(['recovered']);
    expect(r2.actions).to.deep.equal([]);
    expect(a.watch.heldSpares).to.deep.equal(['spare-1']);
    expect(a.watch.urgent).to.equal(false);
    expect(a.watch.status()).to.deep.equal({ checked: true, holdsSlot: true, spares: 1, deadSince: undefined });
  });

  it('a spare that gets no slot (someone took it first) is closed after its round', () => {
    a.round();
    b.round();
    router.drop(b);
    const r = a.round();
    expect(r.actions).to.deep.equal([{ do: 'open-spare' }]);
    // the spare's handshake came too late in real life: undo, and let another connection hold the slot
    router.drop(a, 'spare-1');
    router.handshake(b, PRIMARY);
    const r2 = a.round();
    expect(r2.actions).to.deep.equal([{ do: 'close-spare', conn: 'spare-1' }]);
    expect(a.conns).to.deep.equal([PRIMARY]);
  });

  it('give back: the restarted instance finds itself slotless, asks, the survivor gives the spare back and holds off; the asker takes the slot', () => {
    a.round();
    b.round();
    router.drop(b);
    a.round(); // takes over
    a.round(); // confirms
    expect(a.watch.heldSpares).to.deep.equal(['spare-1']);
    // b restarts: a new SlotWatch, its handshake finds no free slot
    b = new Inst('bbbb', router, clock, 1234);
    b.connect();
    expect(router.holders.every((h) => h?.inst === a)).to.equal(true);
    const s1 = b.round();
    expect(s1.self[PRIMARY]).to.equal(0);
    expect(s1.actions).to.deep.equal([]);
    tick(600);
    const s2 = b.round();
    expect(s2.events.map((e) => e.event)).to.deep.equal(['slotless']);
    // the release landed on one of a's connections: a gave its spare back (no transfers), and b's spare,
    // opened in the same round, found the slot free
    expect(a.givenBack).to.deep.equal(['spare-1']);
    expect(s2.actions.map((x) => x.do)).to.deep.equal(['ask-release', 'open-spare']);
    expect(router.holders.map((h) => h && `${h.inst.name}/${h.conn}`)).to.deep.equal(['aaaa/primary', 'bbbb/spare-1']);
    tick(600);
    const s3 = b.round();
    expect(b.events).to.include('taken');
    expect(s3.self['spare-1']).to.be.greaterThan(0);
    expect(s3.actions).to.deep.equal([]);
    // a: the slot is b's; no takeover, none wanted
    tick(600);
    const r = a.round();
    expect(r.dropped).to.equal(0);
    expect(r.peers).to.deep.equal(['bbbb']);
    expect(r.actions).to.deep.equal([]);
  });

  it('hold-off: a slot given back is not taken over again at once; after the hold-off it is, if nobody came', () => {
    a.round();
    b.round();
    router.drop(b);
    a.round();
    a.round();
    // a release from someone who then never takes the slot
    a.deliver({ kind: 'release', token: '00000000aaaaaaaa', instance: 'cccc' }, PRIMARY);
    expect(a.givenBack).to.deep.equal(['spare-1']);
    tick(100);
    const r1 = a.round();
    expect(r1.dropped).to.be.greaterThan(0);
    expect(r1.events).to.deep.equal([{ event: 'dead', dropped: r1.dropped, heldOff: true }]);
    expect(r1.actions).to.deep.equal([]);
    tick(5000);
    const r2 = a.round();
    expect(r2.actions).to.deep.equal([{ do: 'open-spare' }]);
  });

  it('start grace: an instance just started leaves a slot not yet taken to the instance starting after it', () => {
    router = new FakeRouter(2);
    a = new Inst('aaaa', router, clock, 7, 5000);
    a.connect(); // alone: slot 1 is free
    a.round();
    tick(2000);
    const r = a.round();
    expect(r.dropped).to.be.greaterThan(0);
    expect(r.events).to.deep.equal([{ event: 'dead', dropped: r.dropped, heldOff: true }]);
    expect(r.actions).to.deep.equal([]);
    b = new Inst('bbbb', router, clock, 99);
    b.connect(); // takes its own slot
    tick(2000);
    const r2 = a.round();
    expect(r2.peers).to.deep.equal(['bbbb']);
    expect(r2.events.map((e) => e.event)).to.deep.equal(['recovered']);
    expect(r2.actions).to.deep.equal([]);
  });

  it('a release with no spare holding a slot changes nothing; answers are rate-bounded', () => {
    a.round();
    const before = [...router.holders];
    a.deliver({ kind: 'release', token: '00000000aaaaaaaa', instance: 'cccc' }, PRIMARY);
    expect(a.givenBack).to.deep.equal([]);
    expect(router.holders).to.deep.equal(before);
    let pongs = 0;
    for (let i = 0; i < 200; i++) {
      const r = a.watch.received(
        { kind: 'probe', token: 'abcdef0123456789', instance: 'cccc', reply: '0123456789abcdef' },
        PRIMARY,
      );
      if (r.send) pongs++;
    }
    expect(pongs).to.equal(50);
    tick(1000);
    expect(
      a.watch.received(
        { kind: 'probe', token: 'abcdef0123456789', instance: 'cccc', reply: '0123456789abcdef' },
        PRIMARY,
      ).send,
    ).to.deep.equal({
      kind: 'pong',
      token: '0123456789abcdef',
      instance: 'aaaa',
      probe: 'abcdef0123456789',
    });
  });
});
