// XEP-0050 ad-hoc commands: visibility, execution, sessions; with the admin commands.
import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { adminCommands, ADMIN_NODES } from '../../../src/admin.js';
import type { ActiveRequestInfo } from '../../../src/chat/active.js';
import { AdhocCommands } from '../../../src/xmpp/adhoc.js';
import { parseJid, type Target } from '../../../src/xmpp/addresses.js';
import { NS } from '../../../src/xmpp/namespaces.js';

const DOMAIN = 'reports.example.com';
const admin = parseJid('boss@example.com/laptop')!;
const user = parseJid('alice@example.com/phone')!;
const domain: Target = { kind: 'domain' };

function setup(
  reloadResult: () => Promise<{ applied: string[]; needsRestart: string[] }> = async () => ({
    applied: ['access.denyJids'],
    needsRestart: ['xmpp.service'],
  }),
) {
  const running: ActiveRequestInfo[] = [
    {
      id: '3',
      jid: 'alice@example.com/phone',
      project: '1234',
      stage: 'sending',
      file: { name: 'status-1234.pdf', size: 1_200_000 },
      startedAt: new Date(Date.now() - 12_000),
    },
  ];
  const cancelled: string[] = [];
  const cmds = adminCommands({
    requests: {
      list: () => running.filter((r) => !cancelled.includes(r.id)),
      cancel: (id) => {
        const r = running.find((x) => x.id === id && !cancelled.includes(id));
        if (r) cancelled.push(id);
        return r;
      },
    },
    metrics: {
      summary: async () => ['requests_total{outcome=delivered} 4'],
      health: () => ({ ok: true, xmpp: 'connected', streamhost: 'listening', activeTransfers: 1, uptimeSeconds: 5 }),
    },
    reload: reloadResult,
    instance: 'host-a pid 1',
  });
  const adhoc = new AdhocCommands(DOMAIN, cmds, (bare) => bare === 'boss@example.com');
  return { adhoc, cancelled };
}

const run = (a: AdhocCommands, from = admin, attrs: Record<string, string> = {}, ...children: Element[]) =>
  a.execute(xml('command', { xmlns: NS.COMMANDS, ...attrs }, ...children), from, domain);
const fieldValues = (cmd: Element, v: string) =>
  cmd
    .getChild('x', NS.DATA_FORMS)!
    .getChildren('field')
    .find((f) => f.attrs.var === v)!
    .getChildren('value')
    .map((x) => x.text());
const condition = (err: Element) => err.getChildElements().map((c) => c.name);

describe('xmpp/adhoc with the admin commands', () => {
  it('lists the commands to admins only', () => {
    const { adhoc } = setup();
    const q = xml('query', { xmlns: NS.DISCO_ITEMS, node: NS.COMMANDS });
    const forAdmin = adhoc.discoItems(q, admin, domain)!;
    expect(forAdmin.getChildren('item').map((i) => i.attrs.node)).to.deep.equal(Object.values(ADMIN_NODES));
    expect(forAdmin.getChildren('item').every((i) => i.attrs.jid === DOMAIN)).to.equal(true);
    expect(adhoc.discoItems(q, user, domain)!.getChildren('item')).to.deep.equal([]);
    expect(adhoc.discoItems(q, admin, { kind: 'project', project: '1' })!.getChildren('item')).to.deep.equal([]);
    expect(adhoc.discoItems(xml('query', { xmlns: NS.DISCO_ITEMS }), admin, domain), 'not the commands node').to.equal(
      undefined,
    );
  });

  it('describes a command node to admins, and hides it from others', () => {
    const { adhoc } = setup();
    const info = adhoc.discoInfo(xml('query', { xmlns: NS.DISCO_INFO, node: ADMIN_NODES.list }), admin, domain)!;
    expect(info.getChild('identity')!.attrs).to.include({ category: 'automation', type: 'command-node' });
    expect(info.getChildren('feature').map((f) => f.attrs.var)).to.include.members([NS.COMMANDS, NS.DATA_FORMS]);
    const hidden = adhoc.discoInfo(xml('query', { xmlns: NS.DISCO_INFO, node: ADMIN_NODES.list }), user, domain)!;
    expect(hidden.name).to.equal('error');
    expect(condition(hidden)).to.include('item-not-found');
    expect(adhoc.discoInfo(xml('query', { xmlns: NS.DISCO_INFO }), admin, domain)).to.equal(undefined);
  });

  it('refuses execution to non-admins with forbidden, and unknown nodes with item-not-found', async () => {
    const { adhoc, cancelled } = setup();
    const e = await run(adhoc, user, { node: ADMIN_NODES.cancel, action: 'execute' });
    expect(e.name).to.equal('error');
    expect(condition(e)).to.include('forbidden');
    const e2 = await run(
      adhoc,
      user,
      { node: ADMIN_NODES.cancel, action: 'execute' },
      xml('x', { xmlns: NS.DATA_FORMS, type: 'submit' }, xml('field', { var: 'id' }, xml('value', {}, '3'))),
    );
    expect(condition(e2)).to.include('forbidden');
    expect(cancelled).to.deep.equal([]);
    expect(condition(await run(adhoc, admin, { node: 'nope' }))).to.include('item-not-found');
  });

  it('lists active transfers in one step', async () => {
    const { adhoc } = setup();
    const r = await run(adhoc, admin, { node: ADMIN_NODES.list, action: 'execute' });
    expect(r.attrs).to.include({ status: 'completed', node: ADMIN_NODES.list });
    expect(fieldValues(r, 'count')).to.deep.equal(['1']);
    expect(fieldValues(r, 'transfers')[0]).to.match(
      /^#3 alice@example\.com\/phone: sending status-1234\.pdf \(1\.1 MiB\), for 1\d s$/,
    );
    expect(fieldValues(r, 'instance')).to.deep.equal(['host-a pid 1']);
  });

  it('cancels in two steps with a session: form, then complete', async () => {
    const { adhoc, cancelled } = setup();
    const first = await run(adhoc, admin, { node: ADMIN_NODES.cancel });
    expect(first.attrs.status).to.equal('executing');
    expect(first.getChild('actions')!.attrs.execute).to.equal('complete');
    const options = first.getChild('x', NS.DATA_FORMS)!.getChild('field')!.getChildren('option');
    expect(options.map((o) => o.getChildText('value'))).to.deep.equal(['3']);
    const sid = first.attrs.sessionid!;
    // another resource of the same admin cannot continue the session
    const other = await run(adhoc, parseJid('boss@example.com/desk'), {
      node: ADMIN_NODES.cancel,
      sessionid: sid,
      action: 'complete',
    });
    expect(condition(other)).to.include.members(['bad-request', 'bad-sessionid']);
    const done = await run(
      adhoc,
      admin,
      { node: ADMIN_NODES.cancel, sessionid: sid, action: 'complete' },
      xml('x', { xmlns: NS.DATA_FORMS, type: 'submit' }, xml('field', { var: 'id' }, xml('value', {}, '3'))),
    );
    expect(done.attrs.status).to.equal('completed');
    expect(done.getChild('note')!.text()).to.equal('Cancelled #3: project 1234 for alice@example.com/phone.');
    expect(cancelled).to.deep.equal(['3']);
    // the session is over
    const again = await run(adhoc, admin, { node: ADMIN_NODES.cancel, sessionid: sid, action: 'complete' });
    expect(condition(again)).to.include('bad-sessionid');
  });

  it('lets the admin cancel the command itself', async () => {
    const { adhoc, cancelled } = setup();
    const first = await run(adhoc, admin, { node: ADMIN_NODES.cancel });
    const c = await run(adhoc, admin, {
      node: ADMIN_NODES.cancel,
      sessionid: first.attrs.sessionid!,
      action: 'cancel',
    });
    expect(c.attrs.status).to.equal('canceled');
    expect(cancelled).to.deep.equal([]);
  });

  it('shows counters, and reports a reload with what needs a restart, or why it failed', async () => {
    const { adhoc } = setup();
    const c = await run(adhoc, admin, { node: ADMIN_NODES.counters });
    expect(fieldValues(c, 'counters')).to.deep.equal(['requests_total{outcome=delivered} 4']);
    expect(fieldValues(c, 'health')[0]).to.match(/^ok: XMPP connected, streamhost listening/);
    const r = await run(adhoc, admin, { node: ADMIN_NODES.reload });
    expect(r.getChildren('note').map((n) => `${n.attrs.type}: ${n.text()}`)).to.deep.equal([
      'info: Reloaded on host-a pid 1; now in effect: access.denyJids.',
      'warn: Changed but only in effect after a restart: xmpp.service.',
    ]);
    const bad = setup(async () =>
      Promise.reject(new Error('limits.maxQueue (environment XR_LIMITS_MAX_QUEUE): expected a whole number')),
    );
    const f = await run(bad.adhoc, admin, { node: ADMIN_NODES.reload });
    expect(f.getChild('note')!.attrs.type).to.equal('error');
    expect(f.getChild('note')!.text()).to.match(
      /^Not reloaded; the running configuration is unchanged\. limits\.maxQueue/,
    );
  });
});
