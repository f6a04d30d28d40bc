// The per-user streamhost memory: order, bounds, ages, and isolation between users.
import { expect } from 'chai';
import { StreamhostMemory, remember, streamhostKey } from '../../../../src/transfer/s5b/memory.js';

const OWN = '192.0.2.10:7625';
const PROXY = 'proxy.example.com';
const OTHER = 'proxy.example.net';
const same = (k: string) => k;

function memory(o: { maxUsers?: number; ttlMs?: number; maxHostsPerUser?: number } = {}) {
  let t = 1_000_000;
  const m = new StreamhostMemory({ maxUsers: o.maxUsers ?? 100, ttlMs: o.ttlMs ?? 60_000, ...o, now: () => t });
  return { m, advance: (ms: number) => (t += ms) };
}

describe('transfer/s5b memory', () => {
  describe('order', () => {
    it('keeps the given order for a user it knows nothing about', () => {
      const { m } = memory();
      expect(m.order('alice@example.com', [OWN, PROXY, OTHER], same)).to.deep.equal([OWN, PROXY, OTHER]);
    });

    it('puts the streamhost that worked first, the others in their given order', () => {
      const { m } = memory();
      m.worked('alice@example.com', OTHER);
      expect(m.order('alice@example.com', [OWN, PROXY, OTHER], same)).to.deep.equal([OTHER, OWN, PROXY]);
    });

    it('puts the one that worked most recently first when several did', () => {
      const { m, advance } = memory();
      m.worked('alice@example.com', PROXY);
      advance(10);
      m.worked('alice@example.com', OTHER);
      expect(m.order('alice@example.com', [OWN, PROXY, OTHER], same)).to.deep.equal([OTHER, PROXY, OWN]);
    });

    it('puts ones that failed after untried ones, keeping their order', () => {
      const { m } = memory();
      m.failed('alice@example.com', [OWN]);
      expect(m.order('alice@example.com', [OWN, PROXY, OTHER], same)).to.deep.equal([PROXY, OTHER, OWN]);
      m.failed('alice@example.com', [OWN, PROXY, OTHER]);
      expect(m.order('alice@example.com', [OWN, PROXY, OTHER], same)).to.deep.equal([OWN, PROXY, OTHER]);
    });

    it('lets a later result replace an earlier one for the same streamhost', () => {
      const { m } = memory();
      m.worked('alice@example.com', PROXY);
      m.failed('alice@example.com', [PROXY]);
      expect(m.order('alice@example.com', [OWN, PROXY], same)).to.deep.equal([OWN, PROXY]);
      m.worked('alice@example.com', OWN);
      expect(m.order('alice@example.com', [PROXY, OWN], same)).to.deep.equal([OWN, PROXY]);
    });

    it('orders objects by their key and ignores remembered hosts no longer offered', () => {
      const { m } = memory();
      m.worked('alice@example.com', 'gone.example.com');
      m.worked('alice@example.com', PROXY);
      const hosts = [{ k: OWN }, { k: PROXY }];
      expect(m.order('alice@example.com', hosts, (h) => h.k)).to.deep.equal([hosts[1], hosts[0]]);
    });
  });

  describe('isolation between users', () => {
    it("never changes another user's order", () => {
      const { m } = memory();
      m.worked('alice@example.com', PROXY);
      m.failed('alice@example.com', [OWN]);
      expect(m.order('bob@example.com', [OWN, PROXY], same)).to.deep.equal([OWN, PROXY]);
      m.worked('bob@example.com', OWN);
      expect(m.order('alice@example.com', [OWN, PROXY], same)).to.deep.equal([PROXY, OWN]);
      expect(m.order('bob@example.com', [PROXY, OWN], same)).to.deep.equal([OWN, PROXY]);
    });
  });

  describe('age', () => {
    it('forgets an observation ttlMs after it was made', () => {
      const { m, advance } = memory({ ttlMs: 1000 });
      m.worked('alice@example.com', PROXY);
      advance(999);
      expect(m.order('alice@example.com', [OWN, PROXY], same)).to.deep.equal([PROXY, OWN]);
      advance(1);
      expect(m.order('alice@example.com', [OWN, PROXY], same)).to.deep.equal([OWN, PROXY]);
      expect(m.size).to.equal(0);
    });

    it('counts the age of each observation on its own: a fresh one outlives an older one', () => {
      const { m, advance } = memory({ ttlMs: 1000 });
      m.failed('alice@example.com', [OWN]);
      advance(600);
      m.worked('alice@example.com', OTHER);
      advance(600); // the failure is gone, the success is not
      expect(m.order('alice@example.com', [OWN, PROXY, OTHER], same)).to.deep.equal([OTHER, OWN, PROXY]);
    });
  });

  describe('size', () => {
    it('keeps at most maxUsers users, forgetting the least recently used', () => {
      const { m } = memory({ maxUsers: 2 });
      m.worked('a@example.com', PROXY);
      m.worked('b@example.com', PROXY);
      m.order('a@example.com', [OWN, PROXY], same); // a is used again: b is now the oldest
      m.worked('c@example.com', PROXY);
      expect(m.size).to.equal(2);
      expect(m.order('a@example.com', [OWN, PROXY], same)).to.deep.equal([PROXY, OWN]);
      expect(m.order('b@example.com', [OWN, PROXY], same)).to.deep.equal([OWN, PROXY]);
      expect(m.order('c@example.com', [OWN, PROXY], same)).to.deep.equal([PROXY, OWN]);
    });

    it('remembers nothing with maxUsers 0', () => {
      const { m } = memory({ maxUsers: 0 });
      m.worked('a@example.com', PROXY);
      expect(m.size).to.equal(0);
      expect(m.order('a@example.com', [OWN, PROXY], same)).to.deep.equal([OWN, PROXY]);
    });

    it('keeps at most maxHostsPerUser streamhosts for one user, the oldest observation dropped', () => {
      const { m, advance } = memory({ maxHostsPerUser: 2 });
      m.worked('a@example.com', 'h1');
      advance(1);
      m.worked('a@example.com', 'h2');
      advance(1);
      m.worked('a@example.com', 'h3');
      // h1 was forgotten: it ranks as untried, after h3 and h2
      expect(m.order('a@example.com', ['h1', 'h2', 'h3'], same)).to.deep.equal(['h3', 'h2', 'h1']);
    });
  });

  describe('learn and remember', () => {
    it('returns the new order only when it changed, and remember logs it once with jid and streamhost', () => {
      const { m } = memory();
      const lines: Array<[object, string]> = [];
      const log = { info: (o: object, msg: string) => lines.push([o, msg]) };
      remember(m, log, 'alice@example.com', [OWN, PROXY], { worked: OWN });
      expect(lines).to.have.length(0); // already first: nothing changed
      remember(m, log, 'alice@example.com', [OWN, PROXY], { worked: PROXY });
      expect(lines).to.deep.equal([
        [{ jid: 'alice@example.com', streamhost: PROXY, order: [PROXY, OWN] }, 'streamhost order changed'],
      ]);
      remember(m, log, 'alice@example.com', [OWN, PROXY], { worked: PROXY });
      expect(lines).to.have.length(1);
      expect(m.learn('alice@example.com', [OWN, PROXY], { failed: [PROXY] })).to.deep.equal([OWN, PROXY]);
    });
  });

  it('keys our own streamhost by its address (its JID is per project) and a proxy by its JID', () => {
    const own = { jid: '1234@reports.example.com/reports', host: '192.0.2.10', port: 7625 };
    expect(streamhostKey(own, own.jid)).to.equal('192.0.2.10:7625');
    expect(streamhostKey({ jid: PROXY, host: '192.0.2.1', port: 7777 }, own.jid)).to.equal(PROXY);
  });
});
