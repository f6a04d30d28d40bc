import { expect } from 'chai';
import { ActiveRequests } from '../../../src/chat/active.js';

describe('chat/active', () => {
  it('lists only report requests, cancels by id once, and counts those being sent', () => {
    const shutdown = new AbortController();
    const reg = new ActiveRequests();
    const a = reg.add('alice@example.com/a', shutdown.signal);
    const chat = reg.add('bob@example.com/b', shutdown.signal); // "help": never gets a project
    a.project = '1234';
    expect(reg.list().map((r) => r.id)).to.deep.equal([a.id]);
    expect(reg.transfers).to.equal(0);
    a.stage = 'sending';
    expect(reg.transfers).to.equal(1);
    expect(reg.cancel(chat.id)).to.equal(undefined);
    expect(reg.cancel(a.id)).to.include({ project: '1234', jid: 'alice@example.com/a' });
    expect(a.signal.aborted).to.equal(true);
    expect(a.cancelled).to.equal(true);
    expect(reg.cancel(a.id)).to.equal(undefined);
    reg.remove(a);
    expect(reg.list()).to.deep.equal([]);
  });

  it('aborts every request at shutdown without calling it an admin cancel', () => {
    const shutdown = new AbortController();
    const reg = new ActiveRequests();
    const a = reg.add('alice@example.com/a', shutdown.signal);
    shutdown.abort();
    expect(a.signal.aborted).to.equal(true);
    expect(a.cancelled).to.equal(false);
  });
});
