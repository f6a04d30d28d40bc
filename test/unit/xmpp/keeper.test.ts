// SlotKeeper (src/xmpp/slots/keeper.ts) with its real timers, against a stand-in for
// ejabberd's route table of one balanced domain: two instances, one killed, the survivor's
// spare taking its slot, and the give-back when a restarted instance asks, bounded by
// releaseWaitMs while a transfer of the spare's users still runs.
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { pino } from 'pino';
import type { SpareLink } from '../../../src/xmpp/connection.js';
import { PRIMARY } from '../../../src/xmpp/slots/state.js';
import { SLOT_PREFIX } from '../../../src/xmpp/slots/stanzas.js';
import { SlotKeeper, type SlotKeeperOptions } from '../../../src/xmpp/slots/keeper.js';

const D = 'reports.example.com';
const USER = 'paula@example.com';

interface Holder {
  deliver(el: Element): void;
}

/** A slot is held by at most one connection; a handshake takes the first free one, if any. */
class Router {
  readonly holders: Array<Holder | undefined>;
  constructor(n: number) {
    this.holders = new Array<undefined>(n).fill(undefined);
  }
  handshake(h: Holder): void {
    const free = this.holders.findIndex((x) => x === undefined);
    if (free >= 0) this.holders[free] = h;
  }
  drop(h: Holder): void {
    this.holders.forEach((x, i) => {
      if (x === h) this.holders[i] = undefined;
    });
  }
  /** by the token of the slot address (any fixed function will do; ejabberd hashes the JID) */
  route(el: Element): void {
    const local = String(el.attrs.to).split('@')[0];
    const token = local.slice(SLOT_PREFIX.length);
    const h = this.holders[parseInt(token.slice(0, 6), 16) % this.holders.length];
    if (h) h.deliver(el); // a slot nobody holds: dropped, as ejabberd does
  }
}

interface Instance {
  keeper: SlotKeeper;
  primary: Holder;
  spares: Holder[];
  logs: Array<Record<string, unknown>>;
}

function instance(router: Router, busy: () => boolean, opts: Partial<SlotKeeperOptions> = {}): Instance {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const spares: Holder[] = [];
  // the primary's deliver runs only once the keeper exists
  const primary: Holder = { deliver: (el) => void keeper.take(el, PRIMARY) };
  const keeper = new SlotKeeper(
    { domain: D, slots: 2, checkMs: 200, answerMs: 50, releaseWaitMs: 400, holdOffMs: 450, ...opts },
    {
      send: async (el) => router.route(el),
      openSpare: async (intercept) => {
        const closed: Array<() => void> = [];
        const spare: Holder = { deliver: (el) => void intercept(el) };
        router.handshake(spare);
        spares.push(spare);
        const link: SpareLink = {
          server: 'xmpp://fake',
          close: async () => {
            router.drop(spare);
            for (const f of closed.splice(0)) f();
          },
          onClosed: (f) => void closed.push(f),
        };
        return link;
      },
      online: () => true,
      busy: (mine) => busy() && mine(USER),
      log: pino({ level: 'debug' }, sink),
    },
  );
  router.handshake(primary);
  return { keeper, primary, spares, logs };
}

async function until(what: string, cond: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const logged = (i: Instance, msg: string) => i.logs.filter((l) => String(l.msg).startsWith(msg));

describe('slots: SlotKeeper on real timers against a stand-in router', function () {
  this.timeout(30000);
  const running: SlotKeeper[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((k) => k.stop()));
  });

  /** A and B hold a slot each; B dies (its slot freed) and A's spare takes it; a user's stanza comes through that spare. */
  async function takenOver(router: Router, busy: () => boolean): Promise<Instance> {
    const a = instance(router, busy);
    const b = instance(router, busy);
    running.push(a.keeper, b.keeper);
    a.keeper.start();
    b.keeper.start();
    await until('both hold a slot', () => a.keeper.status().holdsSlot === true && b.keeper.status().holdsSlot === true);
    await b.keeper.stop();
    router.drop(b.primary);
    await until('the survivor took the slot over', () => logged(a, 'balancing slot taken over').length === 1);
    expect(router.holders.filter((h) => h !== undefined)).to.have.length(2);
    // a user's stanza through the spare makes that user one of the spare's
    a.spares[0].deliver(xml('message', { from: `${USER}/pidgin`, to: `1234@${D}`, type: 'chat' }));
    return a;
  }

  it('gives the slot back once the transfer of a user it served has ended', async () => {
    const router = new Router(2);
    let transfer = true;
    const a = await takenOver(router, () => transfer);
    const c = instance(router, () => false);
    running.push(c.keeper);
    c.keeper.start();
    await until('the restarted instance asked', () => logged(c, 'this instance holds no balancing slot').length > 0);
    setTimeout(() => (transfer = false), 150);
    await until('the slot given back', () => logged(a, 'balancing slot given back').length === 1);
    const given = logged(a, 'balancing slot given back')[0];
    expect(given.msg).to.equal('balancing slot given back');
    expect(given.cutShort).to.equal(undefined);
    expect(given.waitedMs, 'it waited for the transfer').to.be.at.least(100);
    await until('the restarted instance took its slot', () => logged(c, 'balancing slot taken over').length === 1);
  });

  it('gives the slot back after releaseWaitMs when the transfer still runs, and says it was cut short', async () => {
    const router = new Router(2);
    const a = await takenOver(router, () => true);
    const c = instance(router, () => false);
    running.push(c.keeper);
    c.keeper.start();
    await until('the slot given back', () => logged(a, 'balancing slot given back').length === 1);
    const given = logged(a, 'balancing slot given back')[0];
    expect(given.msg).to.equal('balancing slot given back before its transfers ended (xmpp.balancing.releaseWaitMs)');
    expect(given.cutShort).to.equal(true);
    expect(given.waitedMs).to.be.at.least(400);
    expect(given.level).to.equal(30);
    // the spare is gone from the route table, and the slot is the restarted instance's
    expect(router.holders).to.not.include(a.spares[0]);
    await until('the restarted instance took its slot', () => logged(c, 'balancing slot taken over').length === 1);
    expect(a.keeper.status().spares).to.equal(0);
  });
});
