// Bench receiver: one Node process that logs in any number of XMPP users
// (@xmpp/client, c2s over plain TCP), asks senders for files by chat message,
// accepts their SI offers (XEP-0095/0096) and receives the bytes over SOCKS5
// bytestreams (XEP-0065, it connects to the first streamhost offered) or
// in-band bytestreams (XEP-0047), or over raw TCP for the loopback baseline.
// A user logged in with "features":"jingle" advertises Jingle file transfer
// (XEP-0234 over XEP-0260 S5B) instead of SI, and takes Jingle offers: it
// acks the session-initiate, sends session-accept (no candidates of its own),
// connects by SOCKS5 to the sender's highest-priority direct candidate, sends
// candidate-used, and ends the session with <success/> after the last byte.
// Nothing touches the disk: bytes are counted and checked by SHA-256.
//
// Timing is done here, on one clock (performance.now()): t0 is taken just
// before the request message is handed to the socket, and every later mark
// (offer arrived, streamhost connected, first byte, last byte) is relative
// to it, so no cross-process clock is involved.
//
// SHA-256 modes: 'inline' hashes each chunk as it arrives; 'deferred' copies
// the bytes into a buffer of the offered size and hashes after the last byte,
// so that the hash (about 1.4 GB/s on one core here) does not cap the
// transport being measured. Both check every byte.
//
// Line protocol: commands as JSON lines on stdin, events as JSON lines on stdout.
//   {"cmd":"login","user":"u","service":"xmpp://127.0.0.1:5222","domain":"example.com","username":"rx","password":"pw","resource":"bench",
//    "features":"si"|"jingle"}   (disco#info: SI + bytestreams + IBB, like Pidgin (default); or Jingle FT + S5B only)
//     -> {"event":"online","user":"u","jid":"rx@example.com/bench"}
//   {"cmd":"request","user":"u","tag":"t1","to":"1234@reports.example.com","body":"report",
//    "method":"s5b"|"ibb"|"jingle"|"decline","hash":"inline"|"deferred","waitFinal":true,"timeoutMs":120000}
//    (offerMs: the SI offer or the Jingle session-initiate; connectedMs: SOCKS5 reply or IBB open)
//     -> {"event":"done","tag":"t1","ok":true,"method":"s5b","bytes":N,"size":N,"sha256":"..",
//         "offerMs":..,"connectedMs":..,"firstByteMs":..,"lastByteMs":..,"final":"Delivered …"}
//   {"cmd":"raw","tag":"t2","host":"127.0.0.1","port":N,"size":N,"hash":"deferred","timeoutMs":60000}
//     -> {"event":"done","tag":"t2","ok":true,"method":"raw",...}
//   {"cmd":"http","tag":"t3","url":"http://127.0.0.1:N/...","size":N,"hash":"deferred","timeoutMs":60000}
//     -> {"event":"done","tag":"t3","ok":true,"method":"http",...}
//   {"cmd":"logout","user":"u"}, {"cmd":"quit"}
import { createHash, type Hash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { client, xml, type Client } from '@xmpp/client';
import type { Element } from '@xmpp/component';
import fetch from 'node-fetch';
import { NS } from '../src/xmpp/namespaces.js';

type HashMode = 'inline' | 'deferred';
type Want = 's5b' | 'ibb' | 'jingle' | 'decline';

const NS_JINGLE = 'urn:xmpp:jingle:1';
const NS_JINGLE_FT = 'urn:xmpp:jingle:apps:file-transfer:5';
const NS_JINGLE_S5B = 'urn:xmpp:jingle:transports:s5b:1';
/** How long the receiver waits for the sender's answer to each of its own IQs. */
const IQ_TIMEOUT_MS = 30000;

function emit(o: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

const bare = (jid: string) => jid.split('/')[0].toLowerCase();
const stanzaError = (type: string, condition: string) => xml('error', { type }, xml(condition, { xmlns: NS.STANZAS }));

/** Counts and hashes the bytes of one stream against the expected size. */
class Sink {
  bytes = 0;
  private readonly hash: Hash | undefined;
  private readonly store: Buffer | undefined;
  firstByte = 0;
  lastByte = 0;
  error: string | undefined;
  private released = false;

  constructor(
    readonly size: number,
    private readonly t0: number,
    mode: HashMode,
  ) {
    if (mode === 'deferred') this.store = takeStore(size);
    else this.hash = createHash('sha256');
  }

  get complete(): boolean {
    return this.bytes === this.size && this.error === undefined;
  }

  /** Takes a chunk (only valid during the call); false once the stream is over-long. */
  add(chunk: Uint8Array): boolean {
    if (this.released) return false;
    if (this.bytes === 0) this.firstByte = performance.now() - this.t0;
    if (this.bytes + chunk.length > this.size) {
      this.error = `more than the ${this.size} bytes offered`;
      return false;
    }
    if (this.store) this.store.set(chunk, this.bytes);
    else this.hash!.update(chunk);
    this.bytes += chunk.length;
    if (this.bytes === this.size) this.lastByte = performance.now() - this.t0;
    return true;
  }

  digest(): string {
    if (this.store) return createHash('sha256').update(this.store.subarray(0, this.size)).digest('hex');
    return this.hash!.digest('hex');
  }

  /** Gives a deferred-mode buffer back for the next transfer. */
  release(): void {
    if (this.store && !this.released) giveStore(this.store);
    this.released = true;
  }
}

// Deferred-mode buffers are reused, so their pages are faulted in once (in a
// warm-up run) and not during every measured transfer.
const storePool: Buffer[] = [];
const STORE_POOL_MAX = 1 << 30;
function takeStore(size: number): Buffer {
  const i = storePool.findIndex((b) => b.length >= size);
  if (i >= 0) return storePool.splice(i, 1)[0];
  return Buffer.allocUnsafe(Math.max(size, 1));
}
function giveStore(b: Buffer): void {
  if (storePool.reduce((a, x) => a + x.length, 0) + b.length <= STORE_POOL_MAX) storePool.push(b);
}

interface Request {
  tag: string;
  user: User;
  toBare: string;
  want: Want;
  hashMode: HashMode;
  waitFinal: boolean;
  t0: number;
  timer: NodeJS.Timeout;
  sid?: string;
  peer?: string;
  size?: number;
  offerMs?: number;
  connectedMs?: number;
  method?: 's5b' | 'ibb' | 'jingle';
  sink?: Sink;
  jingle?: JingleOffer;
  ibbSeq?: number;
  ibbBlock?: number;
  ibbClosed?: boolean;
  final?: string;
  finished: boolean;
  streamDone: boolean;
  failure?: string;
}

/** What a Jingle session-initiate offered, as far as the receiver needs it. */
interface JingleOffer {
  initiator: string;
  content: { name: string; creator: string };
  tsid: string;
  dstaddr: string | undefined;
  candidates: Array<{ cid: string; host: string; port: number; priority: number; type: string }>;
  /** the receiver sent its session-terminate */
  terminated: boolean;
}

const requests = new Map<string, Request>();

function finish(r: Request, failure?: string): void {
  if (r.finished) return;
  r.finished = true;
  clearTimeout(r.timer);
  requests.delete(r.tag);
  r.user.pending = r.user.pending.filter((p) => p !== r);
  if (r.sid && r.peer) {
    r.user.bySid.delete(`${r.peer} ${r.sid}`);
    if (r.jingle) r.user.endedJingle(`${r.peer} ${r.sid}`);
  }
  const sink = r.sink;
  const why = failure ?? r.failure ?? sink?.error;
  const tHash = performance.now();
  const sha256 = sink && sink.complete ? sink.digest() : undefined;
  sink?.release();
  emit({
    event: 'done',
    tag: r.tag,
    sid: r.sid,
    t0Abs: performance.timeOrigin + r.t0,
    ok: why === undefined && (r.want === 'decline' || sink?.complete === true),
    reason: why,
    method: r.method ?? (r.want === 'decline' ? 'declined' : undefined),
    bytes: sink?.bytes ?? 0,
    size: r.size,
    sha256,
    offerMs: r.offerMs,
    connectedMs: r.connectedMs,
    firstByteMs: sink?.firstByte,
    lastByteMs: sink?.lastByte,
    hashMs: sha256 ? performance.now() - tHash : undefined,
    final: r.final,
  });
}

/** A request ends when its stream is complete and (if asked) the sender's closing message came. */
function maybeFinish(r: Request): void {
  if (r.finished) return;
  const streamOver = r.want === 'decline' ? r.offerMs !== undefined : r.streamDone;
  if (streamOver && (!r.waitFinal || r.final !== undefined)) finish(r);
}

class User {
  pending: Request[] = [];
  readonly bySid = new Map<string, Request>();
  /** Jingle sessions that ended here ("from sid"), so that the sender's late IQs are still acknowledged; bounded */
  private readonly ended = new Set<string>();
  jid = '';
  constructor(
    readonly name: string,
    readonly xmpp: Client,
  ) {}

  endedJingle(key: string): void {
    this.ended.add(key);
    if (this.ended.size > 1000) this.ended.delete(this.ended.values().next().value!);
  }

  jingleEnded(key: string): boolean {
    return this.ended.has(key);
  }
}

const users = new Map<string, User>();
const PROGRESS = /^(Fetching|Sending) |in the queue|offering it again/;

// xmpp.js's XML parser (ltx 3.1) is quadratic on a text node that a write()
// cuts: without a '<' ahead, its fast-forward (indexOf) fails and it steps
// char by char, scanning to the end each time. A 65535-byte IBB block is
// ~87 kB of base64 over two TCP reads: ~2e9 char scans, 0.3-0.4 s of CPU per
// MiB here, which made the receiver the bottleneck. So trailing text is held
// back until the next '<' arrives; the parser then sees each text node with its
// end in the same write and skips over it in one indexOf.
type ParserClass = new () => { parser: { write: (data: string) => void } };
const patchedParsers = new WeakMap<ParserClass, ParserClass>();
function fastParser(P: ParserClass): ParserClass {
  let F = patchedParsers.get(P);
  if (F) return F;
  F = class extends P {
    constructor() {
      super();
      const ltx = this.parser;
      const write = ltx.write;
      let held = '';
      ltx.write = (chunk: string) => {
        const data = held + chunk;
        const gt = data.lastIndexOf('>');
        const lt = data.lastIndexOf('<');
        if (gt > lt) {
          // the tail after the last '>' is text (or the inside of an attribute value): keep it for now
          held = data.slice(gt + 1);
          write.call(ltx, data.slice(0, gt + 1));
        } else if (gt === -1 && lt === -1) {
          // all text: nothing can complete before a '>' arrives
          held = data;
        } else {
          // ends inside a tag: the parser is quick there
          held = '';
          write.call(ltx, data);
        }
      };
    }
  };
  patchedParsers.set(P, F);
  return F;
}

async function login(cmd: {
  user: string;
  ref?: string;
  service: string;
  domain: string;
  username: string;
  password: string;
  resource?: string;
  features?: 'si' | 'jingle';
}): Promise<void> {
  const xmpp = client({
    service: cmd.service,
    domain: cmd.domain,
    username: cmd.username,
    password: cmd.password,
    resource: cmd.resource ?? 'bench',
  });
  const u = new User(cmd.user, xmpp);
  for (const T of (xmpp as unknown as { transports: Array<{ prototype: { Parser: ParserClass } }> }).transports) {
    T.prototype.Parser = fastParser(T.prototype.Parser);
  }
  xmpp.on('error', (err: Error) => emit({ event: 'warning', user: cmd.user, message: `xmpp error: ${err.message}` }));
  // Small stanzas (IBB acks) must leave at once, not wait for the peer's delayed ACK (Nagle).
  xmpp.on('connect', () => (xmpp as unknown as { socket?: Socket }).socket?.setNoDelay(true));

  // Like Pidgin: disco#info names SI file transfer and both bytestreams. A Jingle user: Jingle file transfer over
  // S5B only, and not SI, so that the component's ChoosingDelivery picks Jingle.
  const features =
    cmd.features === 'jingle' ? [NS_JINGLE, NS_JINGLE_FT, NS_JINGLE_S5B] : [NS.SI, NS.SI_FILE, NS.BYTESTREAMS, NS.IBB];
  xmpp.iqCallee.get('http://jabber.org/protocol/disco#info', 'query', () =>
    xml(
      'query',
      { xmlns: 'http://jabber.org/protocol/disco#info' },
      xml('identity', { category: 'client', type: 'pc', name: 'xmpp-reports bench receiver' }),
      ...['http://jabber.org/protocol/disco#info', ...features].map((v) => xml('feature', { var: v })),
    ),
  );
  xmpp.iqCallee.set(NS_JINGLE, 'jingle', (ctx) => onJingle(u, ctx.stanza, ctx.element));
  xmpp.iqCallee.set(NS.SI, 'si', (ctx) => onOffer(u, ctx.stanza, ctx.element));
  xmpp.iqCallee.set(NS.BYTESTREAMS, 'query', (ctx) => onStreamhosts(u, ctx.stanza, ctx.element));
  xmpp.iqCallee.set(NS.IBB, 'open', (ctx) => onIbbOpen(u, ctx.stanza, ctx.element));
  xmpp.iqCallee.set(NS.IBB, 'data', (ctx) => onIbbData(u, ctx.stanza, ctx.element));
  xmpp.iqCallee.set(NS.IBB, 'close', (ctx) => onIbbClose(u, ctx.stanza, ctx.element));
  xmpp.on('stanza', (el: Element) => {
    if (el.name !== 'message' || el.attrs.type === 'error') return;
    const body = el.getChildText('body');
    if (body === null) return;
    // Progress lines ("Fetching …", "Sending …", a place in the queue, "offering it again"); anything else closes a request.
    if (PROGRESS.test(body)) return;
    const from = bare(el.attrs.from ?? '');
    const r = u.pending.find((p) => p.toBare === from && p.final === undefined);
    if (!r) return;
    r.final = body;
    // A closing line without any stream means the sender gave up.
    if (!r.sink && r.want !== 'decline') return finish(r, `sender said: ${body}`);
    maybeFinish(r);
  });

  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    xmpp.start(),
    new Promise((_r, rej) => (timer = setTimeout(() => rej(new Error('login timed out')), 20000))),
  ]);
  clearTimeout(timer);
  xmpp.reconnect.stop();
  u.jid = String(xmpp.jid);
  await xmpp.send(xml('presence'));
  users.set(cmd.user, u);
  emit({ event: 'online', user: cmd.user, ref: cmd.ref, jid: u.jid });
}

function startRequest(cmd: {
  user: string;
  tag: string;
  to: string;
  body: string;
  method: Want;
  hash?: HashMode;
  waitFinal?: boolean;
  timeoutMs?: number;
}): void {
  const u = users.get(cmd.user);
  if (!u) return emit({ event: 'done', tag: cmd.tag, ok: false, reason: `no user ${cmd.user}` });
  const r: Request = {
    tag: cmd.tag,
    user: u,
    toBare: bare(cmd.to),
    want: cmd.method,
    hashMode: cmd.hash ?? 'inline',
    waitFinal: cmd.waitFinal ?? false,
    t0: 0,
    timer: setTimeout(() => finish(r, `timed out after ${cmd.timeoutMs ?? 120000} ms`), cmd.timeoutMs ?? 120000),
    finished: false,
    streamDone: false,
  };
  requests.set(r.tag, r);
  u.pending.push(r);
  r.t0 = performance.now();
  u.xmpp
    .send(xml('message', { to: cmd.to, type: 'chat', id: 'b' + cmd.tag }, xml('body', {}, cmd.body)))
    .catch((err: Error) => finish(r, `send failed: ${err.message}`));
}

function onOffer(u: User, iq: Element, si: Element): Element {
  const now = performance.now();
  const from = iq.attrs.from ?? '';
  const r = u.pending.find((p) => p.toBare === bare(from) && p.sid === undefined);
  if (!r) return stanzaError('cancel', 'forbidden');
  const file = si.getChild('file', NS.SI_FILE);
  r.sid = si.attrs.id ?? '';
  r.peer = from;
  r.size = Number(file?.attrs.size ?? NaN);
  r.offerMs = now - r.t0;
  const methods = (
    si
      .getChild('feature', NS.FEATURE_NEG)
      ?.getChild('x', NS.DATA_FORMS)
      ?.getChildren('field')
      .find((f) => f.attrs.var === 'stream-method')
      ?.getChildren('option') ?? []
  ).map((o) => o.getChildText('value') ?? '');
  if (r.want === 'decline') {
    setImmediate(() => maybeFinish(r));
    return stanzaError('cancel', 'forbidden');
  }
  if (r.want === 'jingle') {
    setImmediate(() => finish(r, 'an SI offer came where Jingle was asked for'));
    return stanzaError('cancel', 'forbidden');
  }
  const ns = r.want === 's5b' ? NS.BYTESTREAMS : NS.IBB;
  if (!methods.includes(ns) || !Number.isSafeInteger(r.size) || r.size < 0) {
    setImmediate(() => finish(r, `offer without ${r.want} or size (methods ${methods.join(' ')})`));
    return stanzaError('cancel', 'bad-request');
  }
  r.method = r.want;
  r.sink = new Sink(r.size, r.t0, r.hashMode);
  u.bySid.set(`${from} ${r.sid}`, r);
  if (r.size === 0) r.streamDone = true;
  return xml(
    'si',
    { xmlns: NS.SI },
    xml(
      'feature',
      { xmlns: NS.FEATURE_NEG },
      xml('x', { xmlns: NS.DATA_FORMS, type: 'submit' }, xml('field', { var: 'stream-method' }, xml('value', {}, ns))),
    ),
  );
}

// ------------------------------------------------------------------ SOCKS5

// One read buffer for every socket of this process: onread callbacks run to
// completion before the next read, and each chunk is consumed inside them.
const READ_BUFFER = Buffer.allocUnsafe(1 << 20);

interface SocksTarget {
  host: string;
  port: number;
  /** DST.ADDR, or undefined for a raw TCP stream (no SOCKS5 at all) */
  dst: string | undefined;
}

/**
 * Connects (SOCKS5 when dst is set), resolves once data may flow, then feeds
 * every byte to the sink; done() is called once when the stream ends.
 */
function openStream(t: SocksTarget, sink: () => Sink | undefined, done: (err?: string) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let stage: 'greeting' | 'reply' | 'data' = t.dst === undefined ? 'data' : 'greeting';
    let hs = Buffer.alloc(0);
    let ended = false;
    // Only a stream that got past the handshake ends a transfer; before that
    // a failure just rejects (and the next streamhost is tried).
    const end = (err?: string) => {
      if (ended || stage !== 'data') return;
      ended = true;
      done(err);
    };
    const sock: Socket = connect({
      host: t.host,
      port: t.port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          let chunk = buf.subarray(0, n);
          if (stage !== 'data') {
            hs = Buffer.concat([hs, chunk]);
            if (stage === 'greeting') {
              if (hs.length < 2) return true;
              if (hs[0] !== 5 || hs[1] !== 0) {
                reject(new Error(`SOCKS5 greeting refused: ${hs.subarray(0, 2).toString('hex')}`));
                sock.destroy();
                return false;
              }
              hs = hs.subarray(2);
              stage = 'reply';
              const a = Buffer.from(t.dst!, 'latin1');
              sock.write(Buffer.concat([Buffer.from([5, 1, 0, 3, a.length]), a, Buffer.from([0, 0])]));
            }
            if (stage === 'reply') {
              if (hs.length < 5) return true;
              if (hs[0] !== 5 || hs[1] !== 0) {
                reject(new Error(`SOCKS5 connect refused: reply ${hs[1]}`));
                sock.destroy();
                return false;
              }
              const len = hs[3] === 3 ? 5 + hs[4] + 2 : hs[3] === 1 ? 10 : 22;
              if (hs.length < len) return true;
              chunk = hs.subarray(len);
              hs = Buffer.alloc(0);
              stage = 'data';
              resolve(sock);
              if (chunk.length === 0) return true;
            }
          }
          const s = sink();
          if (!s) {
            end('bytes arrived before the transfer was accepted');
            sock.destroy();
            return false;
          }
          if (!s.add(chunk)) {
            end(s.error);
            sock.destroy();
            return false;
          }
          // Like libpurple: close as soon as every offered byte is here.
          if (s.bytes === s.size) {
            end();
            sock.end();
          }
          return true;
        },
      },
    });
    sock.on('connect', () => {
      if (t.dst !== undefined) sock.write(Buffer.from([5, 1, 0]));
      else resolve(sock);
    });
    sock.on('error', (err) => {
      reject(err);
      end(`socket error: ${err.message}`);
    });
    sock.on('end', () => sock.destroy());
    sock.on('close', () => {
      reject(new Error('closed during the handshake'));
      const s = sink();
      end(s && s.bytes === s.size ? undefined : `stream closed after ${s?.bytes ?? 0} of ${s?.size ?? '?'} bytes`);
    });
    sock.setTimeout(60000, () => sock.destroy(new Error('no data for 60 s')));
  });
}

async function onStreamhosts(u: User, iq: Element, q: Element): Promise<Element> {
  const from = iq.attrs.from ?? '';
  const r = u.bySid.get(`${from} ${q.attrs.sid ?? ''}`);
  if (!r || r.method !== 's5b') return stanzaError('cancel', 'not-acceptable');
  const hosts = q
    .getChildren('streamhost')
    .map((h) => ({ jid: h.attrs.jid ?? '', host: h.attrs.host ?? '', port: Number(h.attrs.port ?? 0) }));
  const dst = createHash('sha1')
    .update(r.sid! + from + u.jid)
    .digest('hex');
  const errors: string[] = [];
  for (const h of hosts) {
    try {
      await openStream(
        { host: h.host, port: h.port, dst },
        () => r.sink,
        (err) => {
          if (err) r.failure ??= err;
          r.streamDone = true;
          maybeFinish(r);
        },
      );
    } catch (err) {
      errors.push(`${h.jid} ${h.host}:${h.port}: ${(err as Error).message}`);
      continue;
    }
    r.connectedMs = performance.now() - r.t0;
    return xml('query', { xmlns: NS.BYTESTREAMS, sid: r.sid }, xml('streamhost-used', { jid: h.jid }));
  }
  setImmediate(() => finish(r, `no streamhost reachable: ${errors.join('; ')}`));
  return stanzaError('cancel', 'item-not-found');
}

// ------------------------------------------------------------------ Jingle (XEP-0234 over XEP-0260)

/** A Jingle IQ of ours to the sender; resolves once it answered with a result. */
function jingleSet(u: User, r: Request, action: string, ...children: Element[]): Promise<Element> {
  const o = r.jingle!;
  return u.xmpp.iqCaller.request(
    xml(
      'iq',
      { type: 'set', to: r.peer },
      xml('jingle', { xmlns: NS_JINGLE, action, sid: r.sid, initiator: o.initiator, responder: u.jid }, ...children),
    ),
    IQ_TIMEOUT_MS,
  );
}

function jingleContent(r: Request, ...children: Element[]): Element {
  const c = r.jingle!.content;
  return xml('content', { creator: c.creator, name: c.name }, ...children);
}

/** Every Jingle IQ set of the sender gets a result, except an offer nobody asked for or one of an unknown session. */
function onJingle(u: User, iq: Element, j: Element): Element | boolean {
  const from = iq.attrs.from ?? '';
  const sid = j.attrs.sid ?? '';
  const action = j.attrs.action ?? '';
  if (action === 'session-initiate') return onJingleOffer(u, iq, j);
  const key = `${from} ${sid}`;
  const r = u.bySid.get(key);
  if (!r || r.method !== 'jingle') return u.jingleEnded(key) ? true : stanzaError('cancel', 'item-not-found');
  if (action === 'session-terminate') {
    const reason =
      j
        .getChild('reason')
        ?.getChildElements()
        .find((c) => c.name !== 'text')?.name ?? 'none';
    r.jingle!.terminated = true;
    if (reason !== 'success' || !r.sink!.complete)
      setImmediate(() => finish(r, `the sender ended the session (${reason}) after ${r.sink!.bytes} bytes`));
  }
  // transport-info (the sender's candidate-error: the receiver offers no candidates), session-info, …: acknowledged.
  return true;
}

function onJingleOffer(u: User, iq: Element, j: Element): Element | boolean {
  const now = performance.now();
  const from = iq.attrs.from ?? '';
  const r = u.pending.find((p) => p.toBare === bare(from) && p.sid === undefined);
  if (!r) return stanzaError('cancel', 'forbidden');
  r.sid = j.attrs.sid ?? '';
  r.peer = from;
  r.offerMs = now - r.t0;
  if (r.want !== 'jingle') {
    setImmediate(() => finish(r, `a Jingle offer came where ${r.want} was asked for`));
    return stanzaError('cancel', 'forbidden');
  }
  const content = j.getChild('content');
  const file = content?.getChild('description', NS_JINGLE_FT)?.getChild('file');
  const transport = content?.getChild('transport', NS_JINGLE_S5B);
  r.size = Number(file?.getChildText('size') ?? NaN);
  if (!content || !transport || !Number.isSafeInteger(r.size) || r.size < 0) {
    setImmediate(() => finish(r, 'Jingle offer without a file size or an S5B transport'));
    return stanzaError('modify', 'bad-request');
  }
  r.method = 'jingle';
  r.jingle = {
    initiator: j.attrs.initiator ?? from,
    content: { name: content.attrs.name ?? '', creator: content.attrs.creator ?? 'initiator' },
    tsid: transport.attrs.sid ?? '',
    dstaddr: transport.attrs.dstaddr,
    candidates: transport.getChildren('candidate').map((c) => ({
      cid: c.attrs.cid ?? '',
      host: c.attrs.host ?? '',
      port: Number(c.attrs.port ?? 1080),
      priority: Number(c.attrs.priority ?? 0),
      type: c.attrs.type ?? 'direct',
    })),
    terminated: false,
  };
  r.sink = new Sink(r.size, r.t0, r.hashMode);
  u.bySid.set(`${from} ${r.sid}`, r);
  // after this IQ's result has gone out
  setTimeout(() => void acceptJingle(u, r), 0);
  return true;
}

/** session-accept, SOCKS5 to the sender's best direct candidate, candidate-used; the bytes then flow. */
async function acceptJingle(u: User, r: Request): Promise<void> {
  const o = r.jingle!;
  const transport = xml('transport', { xmlns: NS_JINGLE_S5B, sid: o.tsid });
  try {
    await jingleSet(u, r, 'session-accept', jingleContent(r, transport));
  } catch (err) {
    return finish(r, `session-accept refused: ${(err as Error).message}`);
  }
  if (r.finished) return;
  const best = o.candidates.filter((c) => c.type === 'direct').sort((a, b) => b.priority - a.priority)[0];
  // XEP-0260 §2.2: SHA1(sid + initiator's full JID + responder's full JID) unless the initiator named a dstaddr.
  const dst =
    o.dstaddr ??
    createHash('sha1')
      .update(o.tsid + o.initiator + u.jid)
      .digest('hex');
  let error: string | undefined;
  if (!best) error = 'no direct candidate offered';
  else {
    try {
      await openStream(
        { host: best.host, port: best.port, dst },
        () => r.sink,
        (err) => {
          if (err) r.failure ??= err;
          r.streamDone = true;
          void endJingle(u, r);
        },
      );
      r.connectedMs = performance.now() - r.t0;
    } catch (err) {
      error = `candidate ${best.cid} ${best.host}:${best.port}: ${(err as Error).message}`;
    }
  }
  const info = error ? xml('candidate-error') : xml('candidate-used', { cid: best.cid });
  try {
    await jingleSet(
      u,
      r,
      'transport-info',
      jingleContent(r, xml('transport', { xmlns: NS_JINGLE_S5B, sid: o.tsid }, info)),
    );
  } catch (err) {
    error ??= `transport-info refused: ${(err as Error).message}`;
  }
  if (error) setImmediate(() => finish(r, error));
}

/** The stream is over: session-terminate <success/> when every byte is here, else <failed-transport/>. */
async function endJingle(u: User, r: Request): Promise<void> {
  const o = r.jingle!;
  const ok = r.failure === undefined && r.sink!.complete;
  if (!o.terminated) {
    o.terminated = true;
    try {
      await jingleSet(u, r, 'session-terminate', xml('reason', {}, xml(ok ? 'success' : 'failed-transport')));
    } catch (err) {
      r.failure ??= `session-terminate refused: ${(err as Error).message}`;
    }
  }
  if (ok) maybeFinish(r);
  else finish(r);
}

// ------------------------------------------------------------------ IBB

function ibbRequest(u: User, iq: Element, el: Element): Request | undefined {
  const r = u.bySid.get(`${iq.attrs.from ?? ''} ${el.attrs.sid ?? ''}`);
  return r && r.method === 'ibb' ? r : undefined;
}

function onIbbOpen(u: User, iq: Element, open: Element): Element | boolean {
  const r = ibbRequest(u, iq, open);
  if (!r) return stanzaError('cancel', 'not-acceptable');
  const block = Number(open.attrs['block-size'] ?? 0);
  if (!(block > 0) || (open.attrs.stanza ?? 'iq') !== 'iq') return stanzaError('modify', 'bad-request');
  r.ibbBlock = block;
  r.ibbSeq = 0;
  r.connectedMs = performance.now() - r.t0;
  return true;
}

function onIbbData(u: User, iq: Element, data: Element): Element | boolean {
  const r = ibbRequest(u, iq, data);
  if (!r || r.ibbSeq === undefined) return stanzaError('cancel', 'item-not-found');
  if (Number(data.attrs.seq) !== r.ibbSeq) {
    setImmediate(() => finish(r, `IBB seq ${data.attrs.seq}, expected ${r.ibbSeq}`));
    return stanzaError('cancel', 'unexpected-request');
  }
  r.ibbSeq = (r.ibbSeq + 1) & 0xffff;
  const bytes = Buffer.from(data.text(), 'base64');
  if (bytes.length > r.ibbBlock!) r.failure ??= `block of ${bytes.length} bytes > block-size ${r.ibbBlock}`;
  if (!r.sink!.add(bytes)) {
    setImmediate(() => finish(r));
    return stanzaError('cancel', 'not-acceptable');
  }
  if (r.sink!.bytes === r.sink!.size) {
    r.streamDone = true;
    setImmediate(() => maybeFinish(r));
  }
  return true;
}

function onIbbClose(u: User, iq: Element, close: Element): boolean | Element {
  const r = ibbRequest(u, iq, close);
  if (!r) return stanzaError('cancel', 'item-not-found');
  r.ibbClosed = true;
  if (r.sink!.bytes !== r.sink!.size)
    setImmediate(() => finish(r, `IBB closed after ${r.sink!.bytes} of ${r.sink!.size} bytes`));
  return true;
}

// ------------------------------------------------------------------ raw TCP

/** A baseline stream's sink and its one `done` line (raw TCP, plain HTTP). */
function baseline(cmd: { tag: string; size: number; hash?: HashMode; timeoutMs?: number }, method: string) {
  const t0 = performance.now();
  const sink = new Sink(cmd.size, t0, cmd.hash ?? 'inline');
  let over = false;
  let connected: number | undefined;
  const fin = (err?: string) => {
    if (over) return;
    over = true;
    clearTimeout(timer);
    const tHash = performance.now();
    const sha256 = sink.complete && !err ? sink.digest() : undefined;
    sink.release();
    emit({
      event: 'done',
      tag: cmd.tag,
      ok: !err && sink.complete,
      reason: err ?? sink.error,
      method,
      bytes: sink.bytes,
      size: cmd.size,
      sha256,
      connectedMs: connected,
      firstByteMs: sink.firstByte,
      lastByteMs: sink.lastByte,
      hashMs: sha256 ? performance.now() - tHash : undefined,
    });
  };
  const timer = setTimeout(() => fin(`timed out after ${cmd.timeoutMs ?? 60000} ms`), cmd.timeoutMs ?? 60000);
  return { sink, fin, connected: () => (connected = performance.now() - t0) };
}

function rawRequest(cmd: {
  tag: string;
  host: string;
  port: number;
  size: number;
  hash?: HashMode;
  timeoutMs?: number;
}): void {
  const b = baseline(cmd, 'raw');
  openStream({ host: cmd.host, port: cmd.port, dst: undefined }, () => b.sink, b.fin).then(b.connected, (err: Error) =>
    b.fin(err.message),
  );
}

/** The intranet hop alone: a GET with node-fetch, the component's own HTTP client. */
function httpRequest(cmd: { tag: string; url: string; size: number; hash?: HashMode; timeoutMs?: number }): void {
  const b = baseline(cmd, 'http');
  void (async () => {
    const res = await fetch(cmd.url);
    b.connected();
    if (!res.ok || !res.body) return b.fin(`HTTP ${res.status}`);
    for await (const chunk of res.body as AsyncIterable<Buffer>) if (!b.sink.add(chunk)) return b.fin(b.sink.error);
    b.fin();
  })().catch((err: Error) => b.fin(err.message));
}

// ------------------------------------------------------------------ main

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd: { cmd: string; [k: string]: unknown };
  try {
    cmd = JSON.parse(line) as typeof cmd;
  } catch {
    return emit({ event: 'warning', message: `not JSON: ${line.slice(0, 200)}` });
  }
  switch (cmd.cmd) {
    case 'login':
      login(cmd as unknown as Parameters<typeof login>[0]).catch((err: Error) =>
        emit({ event: 'error', user: cmd.user, ref: cmd.ref, message: `login failed: ${err.message}` }),
      );
      return;
    case 'request':
      return startRequest(cmd as unknown as Parameters<typeof startRequest>[0]);
    case 'raw':
      return rawRequest(cmd as unknown as Parameters<typeof rawRequest>[0]);
    case 'http':
      return httpRequest(cmd as unknown as Parameters<typeof httpRequest>[0]);
    case 'logout': {
      const u = users.get(String(cmd.user));
      users.delete(String(cmd.user));
      void u?.xmpp.stop().catch(() => {});
      return;
    }
    case 'quit':
      return void quit();
    default:
      emit({ event: 'warning', message: `unknown command ${cmd.cmd}` });
  }
});
rl.on('close', () => void quit());

let quitting = false;
async function quit(): Promise<void> {
  if (quitting) return;
  quitting = true;
  const stops = [...users.values()].map((u) =>
    Promise.race([u.xmpp.stop().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]),
  );
  await Promise.all(stops);
  process.exit(0);
}
process.on('SIGTERM', () => void quit());
emit({ event: 'ready', pid: process.pid });
