import { expect } from 'chai';
import { newId, newSid } from '../../../src/xmpp/ids.js';

describe('xmpp/ids', () => {
  it('gives ids of the same shape, all different, across refills of the random pool', () => {
    const ids = new Set<string>();
    const sids = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = newId();
      expect(id).to.match(/^xr-[A-Za-z0-9_-]{12}$/);
      ids.add(id);
      const sid = newSid('s5b', 12);
      expect(sid).to.match(/^s5b[0-9a-f]{24}$/);
      sids.add(sid);
    }
    expect(ids.size).to.equal(2000);
    expect(sids.size).to.equal(2000);
    expect(newSid('x', 5000)).to.match(/^x[0-9a-f]{10000}$/); // more than the pool holds
  });
});
