import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { pino } from 'pino';
import { Addresses, parseJid, type Target } from '../../../src/xmpp/addresses.js';
import { handlePresence, type PresenceDeps } from '../../../src/xmpp/presence.js';

const DOMAIN = 'reports.example.com';
const addresses = new Addresses(DOMAIN, 'reports');
const FROM = parseJid('Alice@Example.com/Phone')!;
const PROJECT: Target = { kind: 'project', project: '1234' };
const DOMAIN_TARGET: Target = { kind: 'domain' };

function presence(type?: string): Element {
  return xml('presence', { from: FROM.full, to: '1234@reports.example.com', ...(type ? { type } : {}) });
}

function setup() {
  const sent: Element[] = [];
  const checked: string[] = [];
  const deps: PresenceDeps = {
    addresses,
    send: async (el) => {
      sent.push(el);
    },
    log: pino({ level: 'silent' }),
    checkProject: (p) => {
      checked.push(p);
      return /^[0-9]{1,12}$/.test(p) ? null : `'${p}' is not a project id`;
    },
    statusText: (t) =>
      t.kind === 'project'
        ? `Send me a message to get the status report of project ${t.project}`
        : 'Send me a project id',
  };
  return { sent, checked, deps };
}

/** A stanza as plain data, for deep comparisons. */
function shape(el: Element): {
  attrs: Record<string, string | undefined>;
  children: Array<{ name: string; text: string }>;
} {
  return { attrs: { ...el.attrs }, children: el.getChildElements().map((c) => ({ name: c.name, text: c.text() })) };
}

describe('xmpp/presence', () => {
  const bare = '1234@reports.example.com';
  const full = '1234@reports.example.com/reports';
  const user = 'alice@example.com';
  const status = 'Send me a message to get the status report of project 1234';

  it('subscribe → subscribed, subscribe back, then available from the full project JID with a status', async () => {
    const { sent, deps } = setup();
    await handlePresence(presence('subscribe'), FROM, PROJECT, deps);
    expect(sent.map(shape)).to.deep.equal([
      { attrs: { from: bare, to: user, type: 'subscribed' }, children: [] },
      { attrs: { from: bare, to: user, type: 'subscribe' }, children: [] },
      {
        attrs: { from: full, to: user },
        children: [
          { name: 'show', text: 'chat' },
          { name: 'status', text: status },
        ],
      },
    ]);
    for (const el of sent) expect(el.name).to.equal('presence');
  });

  it('answers to the bare JID of the sender, lower-cased, without its resource', async () => {
    const { sent, deps } = setup();
    await handlePresence(presence('probe'), FROM, PROJECT, deps);
    expect(sent[0].attrs.to).to.equal('alice@example.com');
  });

  it('probe → available from the full project JID', async () => {
    const { sent, deps } = setup();
    await handlePresence(presence('probe'), FROM, PROJECT, deps);
    expect(sent.map(shape)).to.deep.equal([
      {
        attrs: { from: full, to: user },
        children: [
          { name: 'show', text: 'chat' },
          { name: 'status', text: status },
        ],
      },
    ]);
    expect(sent[0].attrs.type).to.equal(undefined);
  });

  it('unsubscribe → unsubscribed, then unavailable', async () => {
    const { sent, deps } = setup();
    await handlePresence(presence('unsubscribe'), FROM, PROJECT, deps);
    expect(sent.map(shape)).to.deep.equal([
      { attrs: { from: bare, to: user, type: 'unsubscribed' }, children: [] },
      { attrs: { from: full, to: user, type: 'unavailable' }, children: [] },
    ]);
  });

  it('unsubscribed → unavailable', async () => {
    const { sent, deps } = setup();
    await handlePresence(presence('unsubscribed'), FROM, PROJECT, deps);
    expect(sent.map(shape)).to.deep.equal([{ attrs: { from: full, to: user, type: 'unavailable' }, children: [] }]);
  });

  it('a subscribe to an invalid project id → unsubscribed only', async () => {
    const { sent, checked, deps } = setup();
    await handlePresence(presence('subscribe'), FROM, { kind: 'project', project: 'abc' }, deps);
    expect(checked).to.deep.equal(['abc']);
    expect(sent.map(shape)).to.deep.equal([
      { attrs: { from: 'abc@reports.example.com', to: user, type: 'unsubscribed' }, children: [] },
    ]);
  });

  it('a probe to an invalid project id → nothing (the contact stays offline)', async () => {
    const { sent, deps } = setup();
    await handlePresence(presence('probe'), FROM, { kind: 'project', project: 'abc' }, deps);
    expect(sent).to.deep.equal([]);
  });

  for (const type of [undefined, 'unavailable', 'subscribed', 'error']) {
    it(`${type ?? 'available'} → nothing sent`, async () => {
      const { sent, deps } = setup();
      await handlePresence(presence(type), FROM, PROJECT, deps);
      await handlePresence(presence(type), FROM, { kind: 'project', project: 'abc' }, deps);
      await handlePresence(presence(type), FROM, DOMAIN_TARGET, deps);
      expect(sent).to.deep.equal([]);
    });
  }

  it('an unknown presence type → nothing sent', async () => {
    const { sent, deps } = setup();
    await handlePresence(presence('bogus'), FROM, PROJECT, deps);
    expect(sent).to.deep.equal([]);
  });

  describe('the component domain', () => {
    it('subscribe → subscribed, subscribe, available, all from the domain, with the domain status', async () => {
      const { sent, checked, deps } = setup();
      await handlePresence(presence('subscribe'), FROM, DOMAIN_TARGET, deps);
      expect(checked).to.deep.equal([]);
      expect(sent.map(shape)).to.deep.equal([
        { attrs: { from: DOMAIN, to: user, type: 'subscribed' }, children: [] },
        { attrs: { from: DOMAIN, to: user, type: 'subscribe' }, children: [] },
        {
          attrs: { from: DOMAIN, to: user },
          children: [
            { name: 'show', text: 'chat' },
            { name: 'status', text: 'Send me a project id' },
          ],
        },
      ]);
    });

    it('probe → available from the domain', async () => {
      const { sent, deps } = setup();
      await handlePresence(presence('probe'), FROM, DOMAIN_TARGET, deps);
      expect(sent).to.have.length(1);
      expect(sent[0].attrs.from).to.equal(DOMAIN);
    });
  });

  it('a project id in upper case is answered from the lower-case JID', async () => {
    const { sent, deps } = setup();
    const a = new Addresses(DOMAIN, 'bot');
    await handlePresence(presence('probe'), FROM, { kind: 'project', project: '1234' }, { ...deps, addresses: a });
    expect(sent[0].attrs.from).to.equal('1234@reports.example.com/bot');
    expect(a.projectBare('AB-12')).to.equal('ab-12@reports.example.com');
  });

  it('waits for each send before the next (order is kept)', async () => {
    const order: string[] = [];
    const { deps } = setup();
    deps.send = async (el) => {
      await new Promise((r) => setTimeout(r, el.attrs.type === 'subscribed' ? 20 : 1));
      order.push(el.attrs.type ?? 'available');
    };
    await handlePresence(presence('subscribe'), FROM, PROJECT, deps);
    expect(order).to.deep.equal(['subscribed', 'subscribe', 'available']);
  });
});
