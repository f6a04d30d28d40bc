// Jingle (XEP-0166) stanzas for file transfer (XEP-0234) over SOCKS5
// (XEP-0260) or in-band (XEP-0261) transports, with XEP-0300 hashes:
// builders and parsers, pure. The session logic is in session.ts.
import { xml, type Element } from '@xmpp/component';
import { NS } from '../../xmpp/namespaces.js';
import type { ErrorType } from '../../xmpp/errors.js';

/** XEP-0166 §7.2: every action. */
export const ACTIONS = [
  'content-accept',
  'content-add',
  'content-modify',
  'content-reject',
  'content-remove',
  'description-info',
  'security-info',
  'session-accept',
  'session-info',
  'session-initiate',
  'session-terminate',
  'transport-accept',
  'transport-info',
  'transport-reject',
  'transport-replace',
] as const;
export type JingleAction = (typeof ACTIONS)[number];

/** XEP-0166 §7.4: the defined reason conditions. */
const REASONS = [
  'alternative-session',
  'busy',
  'cancel',
  'connectivity-error',
  'decline',
  'expired',
  'failed-application',
  'failed-transport',
  'general-error',
  'gone',
  'incompatible-parameters',
  'media-error',
  'security-error',
  'success',
  'timeout',
  'unsupported-applications',
  'unsupported-transports',
] as const;
export type ReasonCondition = (typeof REASONS)[number];

export interface Reason {
  condition: ReasonCondition;
  text?: string;
}

/** XEP-0300 hash: algo from the IANA registry, value base64. */
export interface Hash {
  algo: string;
  value: string;
}

/** XEP-0234 §5 file description. */
export interface FileDesc {
  name?: string;
  size?: number;
  date?: Date;
  mediaType?: string;
  desc?: string;
  hashes: Hash[];
  /** <hash-used algo/> (hash to follow in session-info) */
  hashUsed?: string[];
  /** a <range/> child is present (ranged transfers supported) */
  range?: { offset: number; length?: number };
}

export type CandidateType = 'direct' | 'assisted' | 'tunnel' | 'proxy';

/** XEP-0260 §2.2 candidate. */
export interface S5bCandidate {
  cid: string;
  host: string;
  jid: string;
  port: number;
  priority: number;
  type: CandidateType;
}

export interface S5bTransport {
  kind: 's5b';
  sid: string;
  dstaddr?: string;
  mode?: 'tcp' | 'udp';
  candidates: S5bCandidate[];
}

export interface IbbTransport {
  kind: 'ibb';
  sid: string;
  blockSize: number;
  stanza?: 'iq' | 'message';
}

export type Transport = S5bTransport | IbbTransport | { kind: 'other'; ns: string };

export interface Content {
  creator: 'initiator' | 'responder';
  name: string;
  senders?: 'initiator' | 'responder' | 'both' | 'none';
  /** the file, when the description is XEP-0234's */
  file?: FileDesc;
  /** namespace of the description, when there is one */
  descriptionNs?: string;
  transport?: Transport;
}

/** XEP-0260 §2.3/2.4: what a transport-info carries. */
export type S5bInfo =
  | { kind: 'candidate-used'; cid: string }
  | { kind: 'candidate-error' }
  | { kind: 'activated'; cid: string }
  | { kind: 'proxy-error' };

export interface Jingle {
  action: JingleAction;
  sid: string;
  initiator?: string;
  responder?: string;
  contents: Content[];
  reason?: Reason;
  /** session-info payload (the first child that is not a content or reason) */
  info?: Element;
}

// ---------------------------------------------------------------- builders

/** XEP-0300 value of a hex digest (the spool computes hex). */
export function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

function hashElement(h: Hash): Element {
  return xml('hash', { xmlns: NS.HASHES, algo: h.algo }, h.value);
}

/** XEP-0234 <file/>, children in the order of the XEP's examples. */
function fileElement(f: FileDesc): Element {
  return xml(
    'file',
    {},
    f.date ? xml('date', {}, f.date.toISOString().replace(/\.\d{3}Z$/, 'Z')) : undefined,
    f.desc !== undefined ? xml('desc', {}, f.desc) : undefined,
    f.mediaType ? xml('media-type', {}, f.mediaType) : undefined,
    f.name !== undefined ? xml('name', {}, f.name) : undefined,
    f.range ? xml('range', { offset: f.range.offset || undefined, length: f.range.length }) : undefined,
    f.size !== undefined ? xml('size', {}, String(f.size)) : undefined,
    ...f.hashes.map(hashElement),
    ...(f.hashUsed ?? []).map((algo) => xml('hash-used', { xmlns: NS.HASHES, algo })),
  );
}

function descriptionElement(f: FileDesc): Element {
  return xml('description', { xmlns: NS.JINGLE_FT }, fileElement(f));
}

function candidateElement(c: S5bCandidate): Element {
  return xml('candidate', {
    cid: c.cid,
    host: c.host,
    jid: c.jid,
    port: String(c.port),
    priority: String(c.priority),
    type: c.type,
  });
}

/** XEP-0260 <transport/>: the initiator gives mode, the responder must not (§2.2). */
function s5bTransportElement(
  t: Omit<S5bTransport, 'kind'>,
  children: Element[] = t.candidates.map(candidateElement),
): Element {
  return xml('transport', { xmlns: NS.JINGLE_S5B, dstaddr: t.dstaddr, mode: t.mode, sid: t.sid }, ...children);
}

function ibbTransportElement(t: Omit<IbbTransport, 'kind'>): Element {
  return xml('transport', { xmlns: NS.JINGLE_IBB, 'block-size': String(t.blockSize), sid: t.sid, stanza: t.stanza });
}

function transportElement(t: S5bTransport | IbbTransport): Element {
  return t.kind === 's5b' ? s5bTransportElement(t) : ibbTransportElement(t);
}

function reasonElement(r: Reason): Element {
  return xml('reason', {}, xml(r.condition), r.text ? xml('text', {}, r.text) : undefined);
}

export interface Envelope {
  id?: string;
  from: string;
  to: string;
  sid: string;
  /** our full JID as the session's initiator (XEP-0166 says it SHOULD be on every action we send) */
  initiator: string;
}

function jingleIq(e: Envelope, action: JingleAction, ...children: Array<Element | undefined>): Element {
  return xml(
    'iq',
    { type: 'set', id: e.id, from: e.from, to: e.to },
    xml('jingle', { xmlns: NS.JINGLE, action, initiator: e.initiator, sid: e.sid }, ...children),
  );
}

export interface OfferContent {
  name: string;
  file: FileDesc;
  transport: S5bTransport | IbbTransport;
}

/** XEP-0234 §6.1 file offer: content senders='initiator'. */
export function buildSessionInitiate(e: Envelope, c: OfferContent): Element {
  return jingleIq(
    e,
    'session-initiate',
    xml(
      'content',
      { creator: 'initiator', name: c.name, senders: 'initiator' },
      descriptionElement(c.file),
      transportElement(c.transport),
    ),
  );
}

export function buildTransportInfo(
  e: Envelope,
  content: { name: string; creator: 'initiator' | 'responder' },
  tsid: string,
  info: S5bInfo,
): Element {
  const child =
    info.kind === 'candidate-used' || info.kind === 'activated' ? xml(info.kind, { cid: info.cid }) : xml(info.kind);
  return jingleIq(
    e,
    'transport-info',
    xml(
      'content',
      { creator: content.creator, name: content.name },
      s5bTransportElement({ sid: tsid, candidates: [] }, [child]),
    ),
  );
}

/** XEP-0260 §3 fallback: the initiator replaces S5B by IBB. */
export function buildTransportReplace(
  e: Envelope,
  content: { name: string; creator: 'initiator' | 'responder' },
  t: S5bTransport | IbbTransport,
): Element {
  return jingleIq(
    e,
    'transport-replace',
    xml('content', { creator: content.creator, name: content.name }, transportElement(t)),
  );
}

/** Answers a transport-replace we do not take (XEP-0166 §7.2.15). */
export function buildTransportReject(
  e: Envelope,
  content: { name: string; creator: 'initiator' | 'responder' },
  transport: Element | undefined,
): Element {
  return jingleIq(e, 'transport-reject', xml('content', { creator: content.creator, name: content.name }, transport));
}

/** Answers a content-add we do not take (XEP-0166 §7.2.1). */
export function buildContentReject(e: Envelope, content: Element | undefined): Element {
  const c = content ? xml('content', { creator: content.attrs.creator, name: content.attrs.name }) : undefined;
  return jingleIq(
    e,
    'content-reject',
    c,
    reasonElement({ condition: 'failed-application', text: 'only the offered file is sent' }),
  );
}

export function buildSessionTerminate(e: Envelope, reason: Reason): Element {
  return jingleIq(e, 'session-terminate', reasonElement(reason));
}

/** XEP-0234 §8.2: the checksum after the fact. */
export function buildChecksumInfo(
  e: Envelope,
  content: { name: string; creator: 'initiator' | 'responder' },
  hashes: Hash[],
): Element {
  return jingleIq(
    e,
    'session-info',
    xml(
      'checksum',
      { xmlns: NS.JINGLE_FT, creator: content.creator, name: content.name },
      xml('file', {}, ...hashes.map(hashElement)),
    ),
  );
}

/** XEP-0166 §10: a stanza error with an optional Jingle-specific condition. */
export type JingleErrorCondition = 'out-of-order' | 'tie-break' | 'unknown-session' | 'unsupported-info';

function jingleError(
  type: ErrorType,
  condition: string,
  jingleCondition?: JingleErrorCondition,
  text?: string,
): Element {
  return xml(
    'error',
    { type },
    xml(condition, { xmlns: NS.STANZAS }),
    text ? xml('text', { xmlns: NS.STANZAS, 'xml:lang': 'en' }, text) : undefined,
    jingleCondition ? xml(jingleCondition, { xmlns: NS.JINGLE_ERRORS }) : undefined,
  );
}

/** The standard pairing of each Jingle error condition with its stanza error (XEP-0166 §10). */
export const JINGLE_ERRORS: Record<JingleErrorCondition, { type: ErrorType; condition: string }> = {
  'out-of-order': { type: 'wait', condition: 'unexpected-request' },
  'tie-break': { type: 'cancel', condition: 'conflict' },
  'unknown-session': { type: 'cancel', condition: 'item-not-found' },
  'unsupported-info': { type: 'modify', condition: 'feature-not-implemented' },
};

export function jingleErrorOf(c: JingleErrorCondition, text?: string): Element {
  const e = JINGLE_ERRORS[c];
  return jingleError(e.type, e.condition, c, text);
}

// ---------------------------------------------------------------- parsers

export class JingleParseError extends Error {
  override name = 'JingleParseError';
}

const text = (el: Element | undefined): string | undefined => {
  if (!el) return undefined;
  const t = el.text().trim();
  return t;
};

function nonNegInt(s: string | undefined, what: string): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d{1,15}$/.test(s.trim())) throw new JingleParseError(`${what} is not a whole number: ${JSON.stringify(s)}`);
  return Number(s.trim());
}

function parseFile(file: Element): FileDesc {
  const dateText = text(file.getChild('date'));
  let date: Date | undefined;
  if (dateText) {
    date = new Date(dateText);
    if (Number.isNaN(date.getTime())) throw new JingleParseError(`bad file date ${JSON.stringify(dateText)}`);
  }
  const rangeEl = file.getChild('range');
  const range = rangeEl
    ? {
        offset: nonNegInt(rangeEl.attrs.offset, 'range offset') ?? 0,
        length: nonNegInt(rangeEl.attrs.length, 'range length'),
      }
    : undefined;
  if (range && range.length === undefined) delete range.length;
  const out: FileDesc = {
    name: text(file.getChild('name')),
    size: nonNegInt(text(file.getChild('size')), 'file size'),
    date,
    mediaType: text(file.getChild('media-type')),
    desc: text(file.getChild('desc')),
    hashes: file.getChildren('hash', NS.HASHES).map((h) => ({ algo: h.attrs.algo ?? '', value: h.text().trim() })),
  };
  const used = file.getChildren('hash-used', NS.HASHES).map((h) => h.attrs.algo ?? '');
  if (used.length) out.hashUsed = used;
  if (range) out.range = range;
  for (const k of Object.keys(out) as Array<keyof FileDesc>) if (out[k] === undefined) delete out[k];
  return out;
}

const CANDIDATE_TYPES: readonly CandidateType[] = ['direct', 'assisted', 'tunnel', 'proxy'];

function parseCandidate(c: Element): S5bCandidate {
  const { cid, host, jid } = c.attrs;
  if (!cid || !host || !jid) throw new JingleParseError('candidate without cid, host or jid');
  // XEP-0260 §5: port defaults to 1080; type to direct.
  const port = nonNegInt(c.attrs.port ?? '1080', 'candidate port')!;
  const priority = nonNegInt(c.attrs.priority, 'candidate priority');
  if (port < 1 || port > 65535) throw new JingleParseError(`candidate port out of range: ${port}`);
  if (priority === undefined) throw new JingleParseError('candidate without priority');
  const type = (c.attrs.type ?? 'direct') as CandidateType;
  if (!CANDIDATE_TYPES.includes(type)) throw new JingleParseError(`unknown candidate type ${JSON.stringify(type)}`);
  return { cid, host, jid, port, priority, type };
}

function parseTransport(t: Element): Transport {
  const ns = t.attrs.xmlns ?? '';
  if (ns === NS.JINGLE_S5B) {
    const sid = t.attrs.sid;
    if (!sid) throw new JingleParseError('s5b transport without sid');
    const mode = t.attrs.mode;
    if (mode !== undefined && mode !== 'tcp' && mode !== 'udp')
      throw new JingleParseError(`bad s5b mode ${JSON.stringify(mode)}`);
    const out: S5bTransport = { kind: 's5b', sid, candidates: t.getChildren('candidate').map(parseCandidate) };
    if (t.attrs.dstaddr) out.dstaddr = t.attrs.dstaddr;
    if (mode) out.mode = mode;
    return out;
  }
  if (ns === NS.JINGLE_IBB) {
    const sid = t.attrs.sid;
    if (!sid) throw new JingleParseError('ibb transport without sid');
    const blockSize = nonNegInt(t.attrs['block-size'], 'block-size');
    if (!blockSize || blockSize > 65535) throw new JingleParseError('ibb transport without a usable block-size');
    const out: IbbTransport = { kind: 'ibb', sid, blockSize };
    const stanza = t.attrs.stanza;
    if (stanza === 'iq' || stanza === 'message') out.stanza = stanza;
    return out;
  }
  return { kind: 'other', ns };
}

/** The S5B payload of a transport-info (XEP-0260 §2.3, §2.4); undefined when there is none. */
export function parseS5bInfo(transport: Element): S5bInfo | undefined {
  const child = transport.getChildElements().find((c) => c.name !== 'candidate');
  if (!child) return undefined;
  switch (child.name) {
    case 'candidate-used':
    case 'activated':
      if (!child.attrs.cid) throw new JingleParseError(`${child.name} without cid`);
      return { kind: child.name, cid: child.attrs.cid };
    case 'candidate-error':
    case 'proxy-error':
      return { kind: child.name };
    default:
      throw new JingleParseError(`unknown s5b transport-info <${child.name}/>`);
  }
}

function parseReason(r: Element): Reason {
  const cond = r.getChildElements().find((c) => (REASONS as readonly string[]).includes(c.name));
  const out: Reason = { condition: (cond?.name as ReasonCondition | undefined) ?? 'general-error' };
  const t = r.getChildText('text');
  if (t) out.text = t.trim();
  return out;
}

function parseContent(c: Element): Content {
  const creator = c.attrs.creator;
  const name = c.attrs.name;
  if (creator !== 'initiator' && creator !== 'responder') throw new JingleParseError('content without a valid creator');
  if (!name) throw new JingleParseError('content without name');
  const out: Content = { creator, name };
  const senders = c.attrs.senders;
  if (senders === 'initiator' || senders === 'responder' || senders === 'both' || senders === 'none')
    out.senders = senders;
  const d = c.getChild('description');
  if (d) {
    out.descriptionNs = d.attrs.xmlns ?? '';
    if (d.attrs.xmlns === NS.JINGLE_FT) {
      const files = d.getChildren('file');
      if (files.length !== 1) throw new JingleParseError('file-transfer description needs exactly one <file/>');
      out.file = parseFile(files[0]);
    }
  }
  const t = c.getChild('transport');
  if (t) out.transport = parseTransport(t);
  return out;
}

/** Reads a <jingle/> element; throws JingleParseError for what XEP-0166 calls bad-request. */
export function parseJingle(j: Element): Jingle {
  const action = j.attrs.action as JingleAction | undefined;
  if (!action || !(ACTIONS as readonly string[]).includes(action))
    throw new JingleParseError(`unknown action ${JSON.stringify(action)}`);
  const sid = j.attrs.sid;
  if (!sid) throw new JingleParseError('jingle without sid');
  const out: Jingle = { action, sid, contents: j.getChildren('content').map(parseContent) };
  if (j.attrs.initiator) out.initiator = j.attrs.initiator;
  if (j.attrs.responder) out.responder = j.attrs.responder;
  const r = j.getChild('reason');
  if (r) out.reason = parseReason(r);
  if (action === 'session-info') {
    const info = j.getChildElements().find((c) => c.name !== 'content' && c.name !== 'reason');
    if (info) out.info = info;
  }
  return out;
}

/** The transport element of a content (for transport-info parsing, which needs the raw element). */
export function contentTransportElement(j: Element, name: string): Element | undefined {
  return j
    .getChildren('content')
    .find((c) => c.attrs.name === name)
    ?.getChild('transport');
}
