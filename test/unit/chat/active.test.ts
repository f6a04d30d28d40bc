import { expect } from 'chai';
import { getEventListeners } from 'node:events';
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
    const reason = new Error('shutting down');
    shutdown.abort(reason);
    expect(a.signal.aborted).to.equal(true);
    expect(a.signal.reason).to.equal(reason);
    expect(a.cancelled).to.equal(false);
    const late = reg.add('bob@example.com/b', shutdown.signal); // after the shutdown began
    expect(late.signal.aborted).to.equal(true);
  });

  it('a request that ended leaves no listener on the shutdown signal', () => {
    const shutdown = new AbortController();
    const reg = new ActiveRequests();
    for (let i = 0; i < 3; i++) reg.remove(reg.add(`alice@example.com/${i}`, shutdown.signal));
    const kept = reg.add('bob@example.com/b', shutdown.signal);
    expect(getEventListeners(shutdown.signal, 'abort')).to.have.length(1); // the running one's
    shutdown.abort();
    expect(kept.signal.aborted).to.equal(true);
  });

  it('a requester gone offline is not an admin cancel, before or after one is asked', () => {
    const shutdown = new AbortController();
    const reg = new ActiveRequests();
    const a = reg.add('alice@example.com/a', shutdown.signal);
    a.project = '1';
    a.stage = 'sending';
    expect(reg.receiverGone('alice@example.com/a')).to.equal(1);
    expect(a.signal.aborted).to.equal(true);
    reg.cancel(a.id);
    expect(a.cancelled).to.equal(false);
  });
});
