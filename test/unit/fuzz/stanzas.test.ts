// Property tests of the stanza readers on arbitrary element trees built with
// xml() from @xmpp/component: the SI answer (chosenMethod), the bytestreams
// answer (streamhostUsed), the IQ router with the component's real routes,
// and presence handling. None may throw; each answers what a small model of
// the protocol says.
import { expect } from 'chai';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { xml, type Element } from '@xmpp/component';
import { pino } from 'pino';
import { App } from '../../../src/app.js';
import { CommandParser } from '../../../src/chat/commands.js';
import { loadConfig } from '../../../src/config.js';
import { streamhostUsed } from '../../../src/transfer/s5b/stanzas.js';
import type { Method } from '../../../src/transfer/delivery.js';
import { METHOD_NS, chosenMethod } from '../../../src/transfer/si/stanzas.js';
import { Addresses, parseJid, type Jid, type Target } from '../../../src/xmpp/addresses.js';
import { conditionOf } from '../../../src/xmpp/errors.js';
import { NS } from '../../../src/xmpp/namespaces.js';
import { handlePresence, type PresenceDeps } from '../../../src/xmpp/presence.js';

const RUNS = 2000;
const log = pino({ level: 'silent' });

// ---- arbitrary element trees -------------------------------------------

/** An element as plain data (so fast-check can shrink and print it), turned into an ltx Element by toElement. */
interface Node {
  name: string;
  attrs: Record<string, string>;
  children: Array<Node | string>;
}

const NAMESPACES = Object.values(NS);
const NAMES = [
  'iq',
  'si',
  'feature',
  'x',
  'field',
  'value',
  'option',
  'query',
  'streamhost-used',
  'streamhost',
  'open',
  'close',
  'data',
  'error',
  'ping',
  'activate',
  'file',
  'desc',
];

const anyText = fc.string({ unit: 'binary', maxLength: 16 });
const name = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom(...NAMES).map((n) => `p:${n}`) },
  { weight: 1, arbitrary: anyText },
);
// Keys from a regular expression cannot be "__proto__" and friends.
const attrKey = fc.oneof(
  fc.constantFrom(
    'xmlns',
    'xmlns:p',
    'var',
    'jid',
    'sid',
    'type',
    'id',
    'node',
    'seq',
    'block-size',
    'stanza',
    'from',
    'to',
  ),
  fc.stringMatching(/^[a-z][a-z:-]{0,5}$/),
);
const attrVal = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...NAMESPACES, 'stream-method', 'get', 'set', 'result', 'error', '', ' ') },
  { weight: 1, arbitrary: anyText },
);
const text = fc.oneof(fc.constantFrom(...NAMESPACES, ` ${NS.BYTESTREAMS}\n`, '', ' '), anyText);
const attrs = fc
  .array(fc.tuple(attrKey, attrVal), { maxLength: 4 })
  .map((kv) => Object.fromEntries(kv) as Record<string, string>);

const { node: tree } = fc.letrec<{ node: Node; child: Node | string }>((tie) => ({
  node: fc.record({ name, attrs, children: fc.array(tie('child'), { maxLength: 3 }) }),
  child: fc.oneof({ maxDepth: 4, depthIdentifier: 'tree' }, text, tie('node')),
}));

function toElement(n: Node): Element {
  return xml(n.name, n.attrs, ...n.children.map((c) => (typeof c === 'string' ? c : toElement(c))));
}

/** Every element of a tree, depth first. */
function* walk(el: Element): Generator<Element> {
  yield el;
  for (const c of el.getChildElements()) yield* walk(c);
}

/** Noise that cannot be taken for a step of the path being looked up: another name, whatever is inside. */
const noise = fc.array(
  tree.map((n) => ({ ...n, name: `noise-${n.name.replace(/:/g, '')}` })),
  { maxLength: 2 },
);
/** Same name as the step, in another (non-empty, so not inherited) namespace. */
const decoy = (stepName: string, ns: string) =>
  fc.array(
    fc
      .tuple(
        attrVal.filter((v) => v !== '' && v !== ns),
        fc.array(tree, { maxLength: 2 }),
      )
      .map(([xmlns, children]): Node => ({ name: stepName, attrs: { xmlns }, children })),
    { maxLength: 1 },
  );

const mostly = <T>(usual: T, other: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 5, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: other });
const optionalAttr = (key: string, v: string | null): Record<string, string> => (v === null ? {} : { [key]: v });

/** Effective namespace: an empty or missing xmlns attribute inherits the parent's. */
const nsOf = (attr: string | null, parent: string | undefined) => (attr ? attr : parent);

// ---- the component's own routes ----------------------------------------

/** A component as main.ts builds it (never connected), for its real route table. */
async function startApp(): Promise<App> {
  const spoolDir = await mkdtemp(join(tmpdir(), 'xr-fuzz-spool-'));
  const config = loadConfig({
    env: { XR_XMPP_SECRET: 'fuzz', XR_PROXY_ENABLED: 'false', XR_REPORTS_SPOOL_DIR: spoolDir },
  });
  return App.create(config, log);
}

/** Routes whose answers the model below knows; every other route only has to answer once, well-formed. */
const MODELLED = [
  `get ${NS.DISCO_INFO} query`,
  `get ${NS.DISCO_ITEMS} query`,
  `get ${NS.VERSION} query`,
  `get ${NS.PING} ping`,
  `set ${NS.IBB} close`,
  `set ${NS.IBB} open`,
];

/** What the router must answer, from its routing table (RFC 6120 §8.3.3). */
function expectedIqReply(
  iq: Element,
  routes: readonly string[],
): { payload: string } | { error: string; type: string } | true | 'any' {
  const type = iq.attrs.type;
  const payload = iq.getChildElements()[0];
  if (!payload || (type !== 'get' && type !== 'set')) return { error: 'bad-request', type: 'modify' };
  const ns = payload.attrs.xmlns ?? '';
  const route = `${type} ${ns} ${payload.name}`;
  if (!MODELLED.includes(route) && routes.includes(route)) return 'any';
  switch (route) {
    case `get ${NS.DISCO_INFO} query`:
    case `get ${NS.DISCO_ITEMS} query`:
      return payload.attrs.node ? { error: 'item-not-found', type: 'cancel' } : { payload: ns };
    case `get ${NS.VERSION} query`:
      return { payload: NS.VERSION };
    case `get ${NS.PING} ping`:
      return true;
    case `set ${NS.IBB} close`:
      return { error: 'item-not-found', type: 'cancel' }; // no in-band stream of ours is open
    case `set ${NS.IBB} open`:
      return { error: 'not-acceptable', type: 'cancel' }; // we only send
  }
  const spoken = new Set(routes.map((r) => r.split(' ')[1]));
  return spoken.has(ns)
    ? { error: 'feature-not-implemented', type: 'cancel' }
    : { error: 'service-unavailable', type: 'cancel' };
}

const jidText = fc.oneof(
  fc.constantFrom(
    'alice@example.com/phone',
    'Alice@Example.COM/Res',
    'bob@example.com',
    'example.com',
    'a@b/c/d',
    '',
    '@',
    '/',
    'x@',
    '@y',
    'a@b@c',
  ),
  fc
    .tuple(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }))
    .map(([l, d, r]) => `${l}@${d}/${r}`),
  fc.string({ unit: 'binary', maxLength: 24 }),
);

const target: fc.Arbitrary<Target> = fc.oneof(
  fc.constant<Target>({ kind: 'domain' }),
  fc
    .oneof(
      fc.constantFrom('1234', '42', '..', '.', 'ABC', 'a/b', 'a@b', ''),
      fc.string({ unit: 'binary', maxLength: 20 }),
    )
    .map((project): Target => ({ kind: 'project', project })),
);

describe('fuzz: stanza readers', function () {
  this.timeout(30_000);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  before(() => process.on('unhandledRejection', onUnhandled));
  after(() => {
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).to.deep.equal([]);
  });

  describe('chosenMethod (XEP-0095 answer)', () => {
    const offeredArb = fc.subarray<Method>(['s5b', 'ibb']);

    it('on arbitrary trees: never throws, returns undefined or a method that was offered and named in a <value/>', () => {
      fc.assert(
        fc.property(fc.array(tree, { maxLength: 4 }), offeredArb, (children, offered) => {
          const answer = toElement({ name: 'iq', attrs: { type: 'result' }, children });
          const m = chosenMethod(answer, offered);
          if (m === undefined) return;
          expect(offered).to.include(m);
          const values = [...walk(answer)].filter((e) => e.name === 'value').map((e) => e.getText().trim());
          expect(values).to.include(METHOD_NS[m]);
        }),
        { numRuns: RUNS },
      );
    });

    it('on answers shaped like XEP-0095 with noise, decoys and mutations: exactly the method the model expects', () => {
      const answerArb = fc.record({
        siNs: mostly<string | null>(NS.SI, fc.option(attrVal)),
        featNs: mostly<string | null>(NS.FEATURE_NEG, fc.option(attrVal)),
        xNs: mostly<string | null>(NS.DATA_FORMS, fc.option(attrVal)),
        fieldVar: mostly<string | null>('stream-method', fc.option(attrVal)),
        value: fc.oneof(fc.constantFrom(NS.BYTESTREAMS, NS.IBB, ` ${NS.IBB}\n`, `\t${NS.BYTESTREAMS} `, NS.SI), text),
        hasValue: mostly(true, fc.boolean()),
        noise: fc.array(noise, { minLength: 5, maxLength: 5 }),
        decoys: fc.tuple(decoy('si', NS.SI), decoy('feature', NS.FEATURE_NEG), decoy('x', NS.DATA_FORMS)),
        otherFields: fc.array(
          fc.record({ var: attrVal.filter((v) => v !== 'stream-method'), children: fc.array(tree, { maxLength: 2 }) }),
          { maxLength: 2 },
        ),
        offered: offeredArb,
      });
      fc.assert(
        fc.property(answerArb, (a) => {
          const [n0, n1, n2, n3, n4] = a.noise as [Node[], Node[], Node[], Node[], Node[]];
          const value: Node = { name: 'value', attrs: {}, children: [a.value] };
          const field: Node = {
            name: 'field',
            attrs: { ...optionalAttr('var', a.fieldVar), type: 'list-single' },
            children: [...n4, ...(a.hasValue ? [value] : [])],
          };
          const others = a.otherFields.map((f): Node => ({
            name: 'field',
            attrs: { var: f.var },
            children: f.children,
          }));
          const x: Node = {
            name: 'x',
            attrs: { ...optionalAttr('xmlns', a.xNs), type: 'submit' },
            children: [...n3, ...others, field],
          };
          const feature: Node = {
            name: 'feature',
            attrs: optionalAttr('xmlns', a.featNs),
            children: [...n2, ...a.decoys[2], x],
          };
          const si: Node = {
            name: 'si',
            attrs: optionalAttr('xmlns', a.siNs),
            children: [...n1, ...a.decoys[1], feature],
          };
          const iq: Node = { name: 'iq', attrs: { type: 'result', id: 'o1' }, children: [...n0, ...a.decoys[0], si] };

          const siNs = nsOf(a.siNs, undefined);
          const featNs = nsOf(a.featNs, siNs);
          const xNs = nsOf(a.xNs, featNs);
          const reachable =
            siNs === NS.SI &&
            featNs === NS.FEATURE_NEG &&
            xNs === NS.DATA_FORMS &&
            a.fieldVar === 'stream-method' &&
            a.hasValue;
          const expected = reachable ? a.offered.find((m) => METHOD_NS[m] === a.value.trim()) : undefined;
          expect(chosenMethod(toElement(iq), a.offered)).to.equal(expected);
        }),
        { numRuns: RUNS },
      );
    });
  });

  describe('streamhostUsed (XEP-0065 answer)', () => {
    it('on arbitrary trees: never throws, returns undefined or the jid of a <streamhost-used/>', () => {
      fc.assert(
        fc.property(fc.array(tree, { maxLength: 4 }), (children) => {
          const result = toElement({ name: 'iq', attrs: { type: 'result' }, children });
          const used = streamhostUsed(result);
          if (used === undefined) return;
          const jids = [...walk(result)].filter((e) => e.name === 'streamhost-used').map((e) => e.attrs.jid);
          expect(jids).to.include(used);
        }),
        { numRuns: RUNS },
      );
    });

    it('on answers shaped like XEP-0065 with noise and decoys: the jid when the namespace is right', () => {
      fc.assert(
        fc.property(
          mostly<string | null>(NS.BYTESTREAMS, fc.option(attrVal)),
          fc.option(fc.oneof(jidText, attrVal), { freq: 8 }),
          noise,
          noise,
          decoy('query', NS.BYTESTREAMS),
          (queryNs, jid, n0, n1, decoys) => {
            const used: Node = { name: 'streamhost-used', attrs: optionalAttr('jid', jid), children: [] };
            const query: Node = { name: 'query', attrs: optionalAttr('xmlns', queryNs), children: [...n1, used] };
            const iq = toElement({ name: 'iq', attrs: { type: 'result' }, children: [...n0, ...decoys, query] });
            const expected = nsOf(queryNs, undefined) === NS.BYTESTREAMS ? (jid ?? undefined) : undefined;
            expect(streamhostUsed(iq)).to.equal(expected);
          },
        ),
        { numRuns: RUNS },
      );
    });
  });

  describe("IqRouter.handle with the component's own route table", () => {
    let app: App;
    before(async () => {
      app = await startApp();
    });
    after(async () => {
      await app.stop(0);
    });

    it('models routes the component really has', () => {
      expect(app.router.routes).to.include.members(MODELLED);
    });
    const from: Jid = parseJid('alice@example.com/phone')!;

    const payload = fc.record({
      name: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom('query', 'ping', 'open', 'close', 'data', 'si', 'p:ping') },
        { weight: 1, arbitrary: name },
      ),
      xmlns: fc.option(
        fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...NAMESPACES) }, { weight: 1, arbitrary: attrVal }),
        { freq: 6 },
      ),
      extra: attrs,
      children: fc.array(fc.oneof(tree, text), { maxLength: 3 }),
    });
    const iqArb = fc.record({
      type: fc.option(
        fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom('get', 'set', 'result', 'error') },
          { weight: 1, arbitrary: attrVal },
        ),
        { freq: 10 },
      ),
      children: fc.array(
        fc.oneof(
          {
            weight: 3,
            arbitrary: payload.map((p): Node => ({
              name: p.name,
              attrs: { ...p.extra, ...optionalAttr('xmlns', p.xmlns) },
              children: p.children,
            })),
          },
          { weight: 1, arbitrary: tree },
          { weight: 1, arbitrary: text },
        ),
        { maxLength: 3 },
      ),
    });

    it('never throws; exactly one well-formed answer, as the routing table says', async () => {
      await fc.assert(
        fc.asyncProperty(iqArb, target, async (q, t) => {
          const iq = toElement({
            name: 'iq',
            attrs: { ...optionalAttr('type', q.type), id: 'f1', from: from.full, to: 'reports.example.com' },
            children: q.children,
          });
          const reply = await app.router.handle(iq, from, t);
          const expected = expectedIqReply(iq, app.router.routes);
          if (expected === true) {
            expect(reply).to.equal(true);
            return;
          }
          if (expected === 'any' && reply === true) return;
          expect(reply, 'an element').to.be.an('object');
          const el = reply as Element;
          if (expected === 'any') {
            if (el.name !== 'error') return;
            const conditions = el.getChildElements().filter((c) => c.attrs.xmlns === NS.STANZAS && c.name !== 'text');
            expect(conditions).to.have.length(1);
          } else if ('error' in expected) {
            expect(el.name).to.equal('error');
            expect(el.attrs.type).to.equal(expected.type);
            expect(conditionOf(el)).to.equal(expected.error);
            const conditions = el.getChildElements().filter((c) => c.attrs.xmlns === NS.STANZAS && c.name !== 'text');
            expect(conditions).to.have.length(1);
          } else {
            expect(el.name).to.equal('query');
            expect(el.attrs.xmlns).to.equal(expected.payload);
          }
        }),
        { numRuns: RUNS },
      );
    });
  });

  describe('handlePresence', () => {
    const addresses = new Addresses('reports.example.com', 'reports');
    const parsers = [new CommandParser('^[0-9]{1,12}$'), new CommandParser('^[^\\s]{1,64}$')];
    const typeArb = fc.option(
      fc.oneof(
        {
          weight: 4,
          arbitrary: fc.constantFrom(
            'subscribe',
            'subscribed',
            'unsubscribe',
            'unsubscribed',
            'probe',
            'unavailable',
            'error',
            'available',
          ),
        },
        { weight: 1, arbitrary: attrVal },
      ),
      {
        freq: 8,
      },
    );
    const fromArb = jidText.map((s) => parseJid(s)).filter((j): j is Jid => j !== undefined);

    it('never throws; answers only the sender, from our own address, with the stanzas RFC 6121 asks for', async () => {
      await fc.assert(
        fc.asyncProperty(
          typeArb,
          fromArb,
          target,
          fc.integer({ min: 0, max: 1 }),
          fc.array(tree, { maxLength: 2 }),
          async (type, from, t, p, children) => {
            const parser = parsers[p];
            const sent: Element[] = [];
            const deps: PresenceDeps = {
              addresses,
              send: async (el) => {
                sent.push(el);
              },
              log,
              checkProject: (id) => (parser.isProjectId(id) ? null : 'not a project id'),
              statusText: () => 'status',
            };
            const el = toElement({
              name: 'presence',
              attrs: { ...optionalAttr('type', type), from: from.full, to: 'x@reports.example.com' },
              children,
            });
            await handlePresence(el, from, t, deps);

            const ours =
              t.kind === 'project'
                ? [addresses.projectBare(t.project), addresses.projectFull(t.project)]
                : [addresses.domain];
            for (const s of sent) {
              expect(s.name).to.equal('presence');
              expect(s.attrs.to).to.equal(from.bare);
              expect(ours).to.include(s.attrs.from);
            }
            const valid = t.kind === 'domain' || parser.isProjectId(t.project);
            const types = sent.map((s) => s.attrs.type ?? 'available');
            const expected: Record<string, string[]> = valid
              ? {
                  subscribe: ['subscribed', 'subscribe', 'available'],
                  probe: ['available'],
                  unsubscribe: ['unsubscribed', 'unavailable'],
                  unsubscribed: ['unavailable'],
                }
              : { subscribe: ['unsubscribed'] };
            const key = type ?? 'available';
            expect(types).to.deep.equal(Object.hasOwn(expected, key) ? expected[key] : []);
          },
        ),
        { numRuns: RUNS },
      );
    });
  });
});
