import { expect } from 'chai';
import { SlabPool, giveBack } from '../../../src/reports/slabs.js';

describe('reports/slabs: SlabPool', () => {
  it('reads into a slab again only once its reader left it and every chunk lent out of it is back', () => {
    const pool = new SlabPool(1024, 4);
    const a = pool.take();
    const c1 = pool.lend(a.subarray(0, 100));
    const c2 = pool.lend(a.subarray(100, 300));
    pool.retire(a);
    expect(pool.idle).to.equal(0);
    const b = pool.take();
    expect(b.buffer).to.not.equal(a.buffer); // c1 and c2 are still out
    giveBack(c1);
    expect(pool.idle).to.equal(0);
    giveBack(c2);
    expect(pool.idle).to.equal(1);
    expect(pool.take().buffer).to.equal(a.buffer);
  });

  it('a slab its reader still uses is not reused, though all its chunks are back', () => {
    const pool = new SlabPool(1024, 4);
    const a = pool.take();
    giveBack(pool.lend(a.subarray(0, 10)));
    expect(pool.idle).to.equal(0);
    expect(pool.take().buffer).to.not.equal(a.buffer);
    pool.retire(a);
    expect(pool.idle).to.equal(1);
  });

  it('counts a chunk once: lent twice or given back twice; other buffers are ignored', () => {
    const pool = new SlabPool(1024, 4);
    const a = pool.take();
    const c = pool.lend(pool.lend(a.subarray(0, 10)));
    const d = pool.lend(a.subarray(10, 20));
    pool.retire(a);
    giveBack(c);
    giveBack(c); // must not stand in for d
    expect(pool.idle).to.equal(0);
    giveBack(Buffer.alloc(10)); // not a slab's
    giveBack(a.subarray(10, 20)); // a view of the same bytes, but not the chunk that was lent
    expect(pool.idle).to.equal(0);
    giveBack(d);
    expect(pool.idle).to.equal(1);
    giveBack(d);
    expect(pool.idle).to.equal(1);
  });

  it("a chunk of another pool's slab is not counted here", () => {
    const one = new SlabPool(1024, 4);
    const two = new SlabPool(1024, 4);
    const a = one.take();
    two.lend(a.subarray(0, 10)); // not two's: ignored
    one.retire(a);
    expect(one.idle).to.equal(1);
    two.retire(a);
    expect(two.idle).to.equal(0);
  });

  it('keeps at most maxFree slabs for reuse; a slab retired twice comes back once', () => {
    const pool = new SlabPool(1024, 2);
    const slabs = [pool.take(), pool.take(), pool.take()];
    for (const s of slabs) pool.retire(s);
    pool.retire(slabs[0]);
    expect(pool.idle).to.equal(2);
    const again = [pool.take(), pool.take(), pool.take()];
    expect(new Set(again.map((s) => s.buffer)).size).to.equal(3);
    expect(again[2].length).to.equal(1024);
  });
});
