// JingleDelivery against a scripted Jingle receiver, in process: the
// component's stanzas go to a fake connection whose responder answers as a
// client would (acks, session-accept, candidates, SOCKS5 to our real
// streamhost on loopback, IBB acks), and the responder's own IQs go through
// the real IqRouter. Covers the paths a real Dino cannot show: IBB after
// transport-replace for a client that can be trusted with it, refusals,
// timeouts, a receiver giving up half-way, the unconfirmable Dino case.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml, type Element } from '@xmpp/component';
import { loadConfig, type Config } from '../../../../src/config.js';
import { createLogger } from '../../../../src/log.js';
import type { Report } from '../../../../src/reports/source.js';
import { fileReport } from '../../../support/reports.js';
import { DeliveryError, type DeliveryRequest } from '../../../../src/transfer/delivery.js';
import { transferModules } from '../../../../src/app.js';
import { trustsIbb } from '../../../../src/transfer/jingle/delivery.js';
import { parseJingle, type Jingle, type S5bTransport } from '../../../../src/transfer/jingle/stanzas.js';
import { socksConnect } from '../../../../src/transfer/s5b/proxy.js';
import {
  METHOD_NO_AUTH,
  REPLY,
  connectReply,
  greetingReply,
  parseConnect,
  parseGreeting,
} from '../../../../src/transfer/s5b/socks5.js';
import { Streamhost } from '../../../../src/transfer/s5b/streamhost.js';
import type { ClientInfo } from '../../../../src/xmpp/caps.js';
import { parseJid } from '../../../../src/xmpp/addresses.js';
import { NS } from '../../../../src/xmpp/namespaces.js';
import { IqRouter } from '../../../../src/xmpp/router.js';

const US = '1234@reports.example.com/reports';
const THEM = 'dave@example.com/client';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Behaviour = {
  initiate?: 'ack' | 'service-unavailable' | 'silent';
  answer?: 'accept' | 'decline' | 'none';
  /** what the responder does with our S5B candidates */
  s5b?: 'connect' | 'error';
  /** transport-replace: accept (with this block size) or reject */
  replace?: { accept: number } | 'reject';
  /** after the data: how the responder confirms */
  confirm?: 'terminate' | 'received' | 'close' | 'nothing';
  /** give up (session-terminate cancel) after this many bytes */
  cancelAfter?: number;
  /** IBB blocks after this many are never acknowledged */
  holdAcksAfter?: number;
  /** the responder offers this proxy candidate of its own (XEP-0260 type proxy) and activates it when nominated */
  ownProxy?: { host: string; port: number; jid: string };
  /** which of our candidates the responder connects to (default: the first) */
  useOurs?: number;
  /** the responder's proxy fails to activate */
  proxyFails?: boolean;
};

/**
 * A tiny XEP-0065 proxy: pairs the two connections that asked for the same
 * DST.ADDR and relays between them once activated (by the test).
 */
class PairingProxy {
  private readonly waiting = new Map<string, Socket>();
  readonly pairs = new Map<string, [Socket, Socket]>();
  private server!: Server;
  port = 0;
  async start(): Promise<this> {
    this.server = createServer((sock) => {
      sock.on('error', () => {});
      let buf = Buffer.alloc(0);
      let stage: 'greeting' | 'request' = 'greeting';
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (stage === 'greeting') {
          const g = parseGreeting(buf);
          if (g.status !== 'ok') return;
          sock.write(greetingReply(METHOD_NO_AUTH));
          buf = buf.subarray(g.consumed);
          stage = 'request';
        }
        const r = parseConnect(buf);
        if (r.status !== 'ok') return;
        sock.removeListener('data', onData);
        sock.pause();
        sock.write(connectReply(REPLY.SUCCEEDED, r.addr));
        const other = this.waiting.get(r.addr);
        if (other) {
          this.waiting.delete(r.addr);
          this.pairs.set(r.addr, [other, sock]);
        } else this.waiting.set(r.addr, sock);
      };
      sock.on('data', onData);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }
  /** Starts relaying every complete pair (what <activate/> does). */
  activateAll(): number {
    for (const [a, b] of this.pairs.values()) {
      a.pipe(b);
      b.pipe(a);
      a.resume();
      b.resume();
    }
    return this.pairs.size;
  }
  async close(): Promise<void> {
    for (const s of this.waiting.values()) s.destroy();
    for (const [a, b] of this.pairs.values()) {
      a.destroy();
      b.destroy();
    }
    await new Promise((r) => this.server.close(r));
  }
}

class Responder {
  readonly sent: Element[] = []; // everything the component sent
  readonly fromUs: Jingle[] = [];
  readonly received: Buffer[] = [];
  ibbBlocks = 0;
  ibbBlockSize = 0;
  private initiate: Jingle | undefined;
  private socket: Socket | undefined;

  /** called for a bytestreams <activate/> the component sends to a proxy */
  onActivate: () => boolean = () => false;

  constructor(
    private readonly router: IqRouter,
    private readonly b: Behaviour,
  ) {}

  get bytes(): Buffer {
    return Buffer.concat(this.received);
  }

  /** The responder sends an IQ to the component; resolves with the component's answer. */
  async send(jingle: Element): Promise<Element | true | undefined> {
    const iq = xml('iq', { type: 'set', id: 'r' + Math.random(), from: THEM, to: US }, jingle);
    return this.router.handle(iq, parseJid(THEM)!, { kind: 'project', project: '1234' });
  }

  /** Any IQ payload from the responder, e.g. an IBB <close/>. */
  async sendRaw(payload: Element): Promise<Element | true | undefined> {
    const iq = xml('iq', { type: 'set', id: 'r' + Math.random(), from: THEM, to: US }, payload);
    return this.router.handle(iq, parseJid(THEM)!, { kind: 'project', project: '1234' });
  }

  private j(action: string, ...children: Element[]): Element {
    return xml('jingle', { xmlns: NS.JINGLE, action, sid: this.initiate!.sid, responder: THEM }, ...children);
  }

  private content(...children: Element[]): Element {
    return xml('content', { creator: 'initiator', name: this.initiate!.contents[0].name }, ...children);
  }

  /** The component's request(): the responder's answer, and what it does next. */
  async request(iq: Element, timeoutMs = 60000): Promise<Element> {
    this.sent.push(iq);
    expect(iq.attrs.from).to.equal(US); // every stanza from the project's full JID
    const ok = xml('iq', { type: 'result', from: THEM, to: US, id: iq.attrs.id });
    const jingle = iq.getChild('jingle', NS.JINGLE);
    if (jingle) {
      const j = parseJingle(jingle);
      this.fromUs.push(j);
      expect(j.initiator).to.equal(US);
      switch (j.action) {
        case 'session-initiate':
          this.initiate = j;
          if (this.b.initiate === 'service-unavailable')
            throw Object.assign(new Error('service-unavailable'), { condition: 'service-unavailable' });
          // like xmpp.js's iqCaller for a request nobody answers
          if (this.b.initiate === 'silent')
            return new Promise<Element>((_r, reject) =>
              setTimeout(() => reject(Object.assign(new Error('timeout'), { name: 'TimeoutError' })), timeoutMs),
            );
          setTimeout(() => void this.afterInitiate(), 5);
          return ok;
        case 'transport-replace':
          setTimeout(() => {
            const t = j.contents[0].transport!;
            if (this.b.replace === 'reject' || !this.b.replace)
              void this.send(this.j('transport-reject', this.content()));
            else
              void this.send(
                this.j(
                  'transport-accept',
                  this.content(
                    xml('transport', {
                      xmlns: NS.JINGLE_IBB,
                      sid: t.kind === 'ibb' ? t.sid : '',
                      'block-size': String(this.b.replace.accept),
                    }),
                  ),
                ),
              );
          }, 5);
          return ok;
        case 'transport-info': {
          // The initiator connected to our proxy: with our candidate-error, that proxy is nominated.
          const tr = jingle.getChild('content')?.getChild('transport', NS.JINGLE_S5B);
          if (tr?.getChild('candidate-used')?.attrs.cid === 'their-proxy')
            setTimeout(() => void this.activateOwnProxy(this.initiate!.contents[0].transport as S5bTransport), 5);
          return ok;
        }
        default:
          return ok;
      }
    }
    const act = iq.getChild('query', NS.BYTESTREAMS)?.getChild('activate');
    if (act) {
      expect(act.text()).to.equal(THEM);
      if (!this.onActivate()) throw Object.assign(new Error('item-not-found'), { condition: 'item-not-found' });
      return ok;
    }
    const open = iq.getChild('open', NS.IBB);
    if (open) {
      this.ibbBlockSize = Number(open.attrs['block-size']);
      return ok;
    }
    const data = iq.getChild('data', NS.IBB);
    if (data) {
      this.ibbBlocks++;
      this.received.push(Buffer.from(data.text(), 'base64'));
      if (this.b.holdAcksAfter !== undefined && this.ibbBlocks > this.b.holdAcksAfter)
        return new Promise<never>(() => {});
      if (this.b.cancelAfter !== undefined && this.bytes.length >= this.b.cancelAfter)
        setTimeout(() => void this.send(this.j('session-terminate', xml('reason', {}, xml('cancel')))), 1);
      return ok;
    }
    if (iq.getChild('close', NS.IBB)) {
      setTimeout(() => void this.confirm(), 5);
      return ok;
    }
    throw new Error(`unexpected request ${iq.toString()}`);
  }

  private async afterInitiate(): Promise<void> {
    const t = this.initiate!.contents[0].transport!;
    if (this.b.answer === 'none') return;
    if (this.b.answer === 'decline') {
      await this.send(this.j('session-terminate', xml('reason', {}, xml('decline'))));
      return;
    }
    const own = this.b.ownProxy;
    const transport =
      t.kind === 's5b'
        ? xml(
            'transport',
            { xmlns: NS.JINGLE_S5B, sid: t.sid },
            own
              ? xml('candidate', {
                  cid: 'their-proxy',
                  host: own.host,
                  port: String(own.port),
                  jid: own.jid,
                  priority: String(10 * 65536 + 7),
                  type: 'proxy',
                })
              : undefined,
          )
        : xml('transport', { xmlns: NS.JINGLE_IBB, sid: t.kind === 'ibb' ? t.sid : '', 'block-size': '4096' });
    expect(
      await this.send(
        this.j(
          'session-accept',
          this.content(
            xml('description', { xmlns: NS.JINGLE_FT }, xml('file', {}, xml('name', {}, 'x'), xml('size', {}, '1'))),
            transport,
          ),
        ),
      ),
    ).to.equal(true);
    if (t.kind !== 's5b') return;
    const c = t.candidates[this.b.useOurs ?? 0];
    if (this.b.s5b === 'connect' && c) {
      this.socket = await socksConnect(c.host, c.port, t.dstaddr!, 2000);
      this.listen(this.socket);
      await this.send(
        this.j(
          'transport-info',
          this.content(xml('transport', { xmlns: NS.JINGLE_S5B, sid: t.sid }, xml('candidate-used', { cid: c.cid }))),
        ),
      );
    } else {
      await this.send(
        this.j(
          'transport-info',
          this.content(xml('transport', { xmlns: NS.JINGLE_S5B, sid: t.sid }, xml('candidate-error'))),
        ),
      );
    }
  }

  /** The initiator nominated our proxy: connect to it as well, activate it, say so (XEP-0260 §2.4). */
  private async activateOwnProxy(t: S5bTransport): Promise<void> {
    const own = this.b.ownProxy!;
    const hash = createHash('sha1')
      .update(t.sid + THEM + US)
      .digest('hex'); // SHA1(sid + responder + initiator)
    if (this.b.proxyFails) {
      await this.send(
        this.j(
          'transport-info',
          this.content(xml('transport', { xmlns: NS.JINGLE_S5B, sid: t.sid }, xml('proxy-error'))),
        ),
      );
      return;
    }
    this.socket = await socksConnect(own.host, own.port, hash, 2000);
    this.listen(this.socket);
    this.onActivate();
    await this.send(
      this.j(
        'transport-info',
        this.content(xml('transport', { xmlns: NS.JINGLE_S5B, sid: t.sid }, xml('activated', { cid: 'their-proxy' }))),
      ),
    );
  }

  private listen(socket: Socket): void {
    socket.on('error', () => {}); // a cut stream arrives as a reset
    socket.on('data', (d: Buffer) => {
      this.received.push(d);
      if (this.b.cancelAfter !== undefined && this.bytes.length >= this.b.cancelAfter) {
        this.b.cancelAfter = undefined;
        void this.send(this.j('session-terminate', xml('reason', {}, xml('cancel'))));
      }
    });
    socket.on('end', () => void this.confirm());
  }

  private async confirm(): Promise<void> {
    const size = this.initiate!.contents[0].file!.size!;
    if (this.bytes.length !== size) return;
    if (this.b.confirm === 'received')
      await this.send(
        this.j(
          'session-info',
          xml('received', { xmlns: NS.JINGLE_FT, creator: 'initiator', name: this.initiate!.contents[0].name }),
        ),
      );
    if (this.b.confirm === 'terminate' || this.b.confirm === undefined)
      await this.send(this.j('session-terminate', xml('reason', {}, xml('success'))));
    if (this.b.confirm !== 'nothing') this.socket?.end();
  }

  /** Our actions, but the checksum session-info (whether it still goes out races the receiver's terminate). */
  actions(): string[] {
    return this.fromUs
      .filter((j) => !(j.action === 'session-info' && j.info?.name === 'checksum'))
      .map((j) => j.action + (j.reason ? `(${j.reason.condition})` : ''));
  }

  /** The SHA-256 (base64) of a checksum session-info we sent, if one went out. */
  checksum(): string | undefined {
    const info = this.fromUs.find((j) => j.action === 'session-info' && j.info?.name === 'checksum')?.info;
    return info?.getChild('file')?.getChildText('hash', NS.HASHES) ?? undefined;
  }
}

describe('transfer/jingle delivery against a scripted receiver', function () {
  this.timeout(20000);
  let dir: string;
  let streamhost: Streamhost;
  const log = createLogger('silent');
  const body = randomBytes(200_000);
  let report: Report;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xr-jingle-'));
    await writeFile(join(dir, 'r.pdf'), body);
    report = fileReport(join(dir, 'r.pdf'), body.length, { project: '1234', name: 'status-1234.pdf' });
    streamhost = await Streamhost.listen(
      {
        bindHost: '127.0.0.1',
        bindPort: 0,
        advertiseHost: '',
        advertisePort: 0,
        handshakeTimeoutMs: 2000,
        maxConnections: 50,
        maxPerAddress: 50,
      },
      log,
    );
  });
  after(async () => {
    await streamhost.close();
    await rm(dir, { recursive: true, force: true });
  });

  function setup(b: Behaviour, env: Record<string, string> = {}, sh: Streamhost | undefined = streamhost) {
    const config: Config = loadConfig({
      env: {
        XR_XMPP_SECRET: 'x',
        XR_TRANSFER_OFFER_TIMEOUT_MS: '1000',
        XR_TRANSFER_CONNECT_TIMEOUT_MS: '2000',
        XR_TRANSFER_STALL_TIMEOUT_MS: '2000',
        XR_IBB_BLOCK_SIZE: '8192',
        XR_JINGLE_PEER_NETWORKS: 'none',
        ...env,
      },
    });
    const peer: { responder?: Responder } = {};
    const modules = transferModules(config.transfer, (iq: Element, t: number) => peer.responder!.request(iq, t), sh, {
      domain: 'reports.example.com',
      log,
    });
    const { jingle, ibb } = modules;
    const router = new IqRouter().add(jingle.routes).add(ibb.routes);
    const responder = (peer.responder = new Responder(router, b));
    return { jingle, responder, connectionLost: modules.connectionLost };
  }

  const client = (name: string, ibb = true): ClientInfo => ({
    features: new Set([NS.JINGLE, NS.JINGLE_FT, NS.JINGLE_S5B, ...(ibb ? [NS.JINGLE_IBB] : [])]),
    identities: [{ category: 'client', type: 'pc', name }],
  });
  const req = (c?: ClientInfo): DeliveryRequest => ({ report, to: THEM, from: US, log, ...(c ? { client: c } : {}) });
  const failure = async (p: Promise<unknown>): Promise<DeliveryError> => {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(DeliveryError);
      return err as DeliveryError;
    }
    throw new Error('expected the delivery to fail');
  };

  it("sends by S5B through our streamhost and counts it delivered on the receiver's session-terminate", async () => {
    const { jingle, responder } = setup({ s5b: 'connect', confirm: 'terminate' });
    const out = await jingle.deliver(req(client('Conversations')));
    expect(out).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
    expect(sha256(responder.bytes)).to.equal(sha256(body));
    expect(responder.actions()).to.deep.equal(['session-initiate', 'transport-info']); // the receiver terminated itself
    const offer = responder.fromUs[0].contents[0];
    expect(offer.file).to.deep.include({
      name: 'status-1234.pdf',
      size: body.length,
      mediaType: 'application/pdf',
      desc: 'Status report of project 1234',
      hashes: [],
      hashUsed: ['sha-256'], // XEP-0234 §8.1: the hash follows the bytes
    });
    const t = offer.transport as S5bTransport;
    expect(t.candidates).to.have.length(1);
    expect(t.candidates[0]).to.include({ type: 'direct', jid: US, host: '127.0.0.1', port: streamhost.port });
    expect(jingle.sessions.size).to.equal(0);
  });

  it('ends the session with failed-application when the report breaks under the stream, never delivered', async () => {
    const { jingle, responder } = setup({ s5b: 'connect', confirm: 'terminate' });
    // the report's bytes end after 64 KiB of the offered size (a file cut while it was sent)
    const cut: Report = {
      ...report,
      open: async () => {
        const r = await report.open();
        return {
          read: (buf, off, len, pos) =>
            pos >= 65536 ? Promise.resolve(0) : r.read(buf, off, Math.min(len, 65536 - pos), pos),
          close: () => r.close(),
        };
      },
    };
    const err = await failure(jingle.deliver({ ...req(client('Conversations')), report: cut }));
    expect(err.reason).to.equal('source');
    expect(err.message).to.equal(`the report ended after 65536 of ${body.length} bytes`);
    expect(responder.actions()).to.deep.equal([
      'session-initiate',
      'transport-info',
      'session-terminate(failed-application)',
    ]);
    expect(responder.bytes.length).to.be.at.most(65536);
  });

  it("takes session-info <received/>, or a clean close, as the receiver's word; then terminates with success itself", async () => {
    for (const confirm of ['received', 'close'] as const) {
      const { jingle, responder } = setup({ s5b: 'connect', confirm });
      const out = await jingle.deliver(req(client('Conversations')));
      expect(out.kind, confirm).to.equal('delivered');
      // XEP-0234 §8.2: the checksum after the last byte, while the session is still open
      expect(responder.checksum(), confirm).to.equal(Buffer.from(sha256(body), 'hex').toString('base64'));
      expect(responder.actions()).to.deep.equal(['session-initiate', 'transport-info', 'session-terminate(success)']);
    }
  });

  it('falls back to IBB by transport-replace, at the block size the receiver asked for, when no candidate works', async () => {
    const { jingle, responder } = setup({ s5b: 'error', replace: { accept: 4096 } });
    const out = await jingle.deliver(req(client('Conversations')));
    expect(out).to.deep.equal({ kind: 'delivered', method: 'ibb', bytes: body.length });
    expect(sha256(responder.bytes)).to.equal(sha256(body));
    expect(responder.ibbBlockSize).to.equal(4096);
    expect(responder.actions()).to.deep.equal(['session-initiate', 'transport-info', 'transport-replace']);
    const replace = responder.fromUs[2].contents[0].transport!;
    expect(replace).to.include({ kind: 'ibb', blockSize: 8192 });
    // The IBB stream uses the transport's sid (XEP-0261).
    const open = responder.sent.find((iq) => iq.getChild('open', NS.IBB))!;
    expect(open.getChild('open', NS.IBB)!.attrs.sid).to.equal(replace.kind === 'ibb' ? replace.sid : '');
  });

  it('never uses Jingle IBB with a client whose in-band transfer cannot be trusted (Dino): a link, with why', async () => {
    const { jingle, responder } = setup({ s5b: 'error', replace: { accept: 4096 } });
    const err = await failure(jingle.deliver(req(client('Dino'))));
    expect(err.linkWhy).to.equal('no-direct-connection');
    expect(err.reason).to.equal('failed');
    expect(responder.actions()).to.deep.equal([
      'session-initiate',
      'transport-info',
      'session-terminate(connectivity-error)',
    ]);
    expect(responder.ibbBlocks).to.equal(0);
    expect(trustsIbb(client('dino'), ['Dino'])).to.equal(false);
    expect(trustsIbb(client('Conversations'), ['Dino'])).to.equal(true);
    expect(trustsIbb(undefined, ['Dino'])).to.equal(true);
  });

  it('with no S5B possible at all, goes straight to the link for Dino and straight to IBB for others', async () => {
    const none = setup({}, { XR_TRANSFER_METHODS: 'ibb' });
    const err = await failure(none.jingle.deliver(req(client('Dino'))));
    expect(err.linkWhy).to.equal('no-direct-connection');
    expect(none.responder.sent).to.deep.equal([]); // nothing offered
    const ibb = setup({ confirm: 'terminate' }, { XR_TRANSFER_METHODS: 'ibb' });
    const out = await ibb.jingle.deliver(req(client('Conversations')));
    expect(out).to.deep.include({ method: 'ibb', bytes: body.length });
    expect(ibb.responder.fromUs[0].contents[0].transport).to.include({ kind: 'ibb' });
  });

  it('ends with connectivity-error when neither S5B nor IBB is possible', async () => {
    const { jingle, responder } = setup({ s5b: 'error' });
    const err = await failure(jingle.deliver(req(client('Conversations', false))));
    expect(err.reason).to.equal('failed');
    expect(err.linkWhy).to.equal(undefined);
    expect(responder.actions().pop()).to.equal('session-terminate(connectivity-error)');
  });

  it('tells a refused transport-replace and a declined offer apart', async () => {
    const rej = setup({ s5b: 'error', replace: 'reject' });
    expect((await failure(rej.jingle.deliver(req(client('Conversations'))))).message).to.equal(
      'the receiver refused the in-band fallback',
    );
    expect(rej.responder.actions().pop()).to.equal('session-terminate(connectivity-error)');
    const dec = setup({ answer: 'decline' });
    const err = await failure(dec.jingle.deliver(req(client('Conversations'))));
    expect(err.reason).to.equal('declined');
    expect(dec.responder.actions()).to.deep.equal(['session-initiate']); // the receiver ended it: nothing to terminate
  });

  it('a session-initiate nobody acknowledges (Gajim 1.7) fails within the ack timeout, with a link as the way on', async () => {
    const t = setup(
      { initiate: 'silent' },
      { XR_JINGLE_ACK_TIMEOUT_MS: '200', XR_TRANSFER_OFFER_TIMEOUT_MS: '600000' },
    );
    const err = await failure(t.jingle.deliver(req(client('Gajim'))));
    expect(err.reason).to.equal('failed');
    expect(err.linkWhy).to.equal('no-answer');
    expect(err.message).to.equal('your chat client did not answer the file offer');
    expect(t.responder.actions()).to.deep.equal(['session-initiate']);
  });

  it('times out an unanswered offer with reason timeout; a refused session-initiate is "unsupported"', async () => {
    const t = setup({ answer: 'none' });
    const err = await failure(t.jingle.deliver(req(client('Conversations'))));
    expect(err.reason).to.equal('offer-timeout');
    expect(t.responder.actions()).to.deep.equal(['session-initiate', 'session-terminate(timeout)']);
    const u = setup({ initiate: 'service-unavailable' });
    expect((await failure(u.jingle.deliver(req(client('Conversations'))))).reason).to.equal('unsupported');
    expect(u.responder.actions()).to.deep.equal(['session-initiate']);
  });

  it('stops at once when the receiver gives up half-way, and says how far it got', async () => {
    const s = setup({ s5b: 'connect', cancelAfter: 1 });
    const err = await failure(s.jingle.deliver(req(client('Conversations'))));
    expect(err.reason).to.be.oneOf(['lost', 'failed']);
    expect(err.method).to.equal('s5b');
    expect(s.responder.actions()).to.not.include('session-terminate(success)');
    const i = setup({ s5b: 'error', replace: { accept: 4096 }, cancelAfter: 8192 });
    const e2 = await failure(i.jingle.deliver(req(client('Conversations'))));
    expect(e2.method).to.equal('ibb');
    expect(e2.sent).to.be.greaterThan(0).and.lessThan(body.length);
    expect(e2.reason).to.equal('lost');
  });

  it("answers the receiver's own transport-replace with transport-reject", async () => {
    const { jingle, responder } = setup({ answer: 'none' });
    const p = failure(jingle.deliver(req(client('Conversations'))));
    await sleep(30);
    const sid = responder.fromUs[0].sid;
    const replace = xml(
      'jingle',
      { xmlns: NS.JINGLE, action: 'transport-replace', sid },
      xml(
        'content',
        { creator: 'initiator', name: 'a-file-offer' },
        xml('transport', { xmlns: NS.JINGLE_IBB, sid: 'theirs', 'block-size': '4096' }),
      ),
    );
    expect(await responder.send(replace)).to.equal(true);
    await sleep(30);
    expect(responder.actions()).to.deep.equal(['session-initiate', 'transport-reject']);
    expect((await p).reason).to.equal('offer-timeout');
  });

  describe('through XEP-0065 proxies', () => {
    let proxy: PairingProxy;
    beforeEach(async () => {
      proxy = await new PairingProxy().start();
    });
    afterEach(async () => {
      await proxy.close();
    });

    it('activates our own configured proxy when the receiver chose it, and says so with <activated/>', async () => {
      const { jingle, responder } = setup(
        { s5b: 'connect', useOurs: 1, confirm: 'terminate' },
        { XR_EXTERNAL_PROXIES: `proxy.example.com@127.0.0.1:${proxy.port}` },
      );
      responder.onActivate = () => proxy.activateAll() === 1;
      const out = await jingle.deliver(req(client('Conversations')));
      expect(out).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
      expect(sha256(responder.bytes)).to.equal(sha256(body));
      const offered = (responder.fromUs[0].contents[0].transport as S5bTransport).candidates;
      expect(offered.map((c) => [c.type, c.jid])).to.deep.equal([
        ['direct', US],
        ['proxy', 'proxy.example.com'],
      ]);
      const infos = responder.sent
        .filter((iq) => iq.getChild('jingle', NS.JINGLE)?.attrs.action === 'transport-info')
        .map(
          (iq) =>
            iq
              .getChild('jingle', NS.JINGLE)!
              .getChild('content')!
              .getChild('transport', NS.JINGLE_S5B)!
              .getChildElements()[0].name,
        );
      expect(infos).to.deep.equal(['candidate-error', 'activated']);
      // The activation went to the proxy, naming the receiver.
      const act = responder.sent.find((iq) => iq.getChild('query', NS.BYTESTREAMS))!;
      expect(act.attrs.to).to.equal('proxy.example.com');
    });

    it('offers the proxy that worked for this user first next time, with the top priority', async () => {
      const b: Behaviour = { s5b: 'connect', useOurs: 1, confirm: 'terminate' };
      const { jingle, responder } = setup(b, { XR_EXTERNAL_PROXIES: `proxy.example.com@127.0.0.1:${proxy.port}` });
      responder.onActivate = () => proxy.activateAll() >= 1;
      const first = await jingle.deliver(req(client('Conversations')));
      expect(first).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
      b.useOurs = 0; // the responder takes the first candidate of the next offer
      const second = await jingle.deliver(req(client('Conversations')));
      expect(second).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
      expect(sha256(responder.bytes)).to.equal(sha256(Buffer.concat([body, body])));
      const offers = responder.fromUs
        .filter((j) => j.action === 'session-initiate')
        .map((j) => (j.contents[0].transport as S5bTransport).candidates.map((c) => [c.type, c.jid, c.priority]));
      expect(offers).to.deep.equal([
        [
          ['direct', US, 126 * 65536 + 65535],
          ['proxy', 'proxy.example.com', 10 * 65536 + 65535],
        ],
        [
          ['proxy', 'proxy.example.com', 126 * 65536 + 65535],
          ['direct', US, 10 * 65536 + 65535],
        ],
      ]);
      // both times through the proxy: the second activation names the second session's target too
      expect(responder.sent.filter((iq) => iq.getChild('query', NS.BYTESTREAMS))).to.have.length(2);
    });

    it("uses the receiver's own proxy candidate once the receiver activated it", async () => {
      const { jingle, responder } = setup(
        {
          s5b: 'error',
          ownProxy: { host: '127.0.0.1', port: proxy.port, jid: 'proxy.example.net' },
          confirm: 'terminate',
        },
        { XR_JINGLE_PEER_NETWORKS: '127.0.0.0/8' },
      );
      responder.onActivate = () => proxy.activateAll() === 1;
      const out = await jingle.deliver(req(client('Dino')));
      expect(out).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
      expect(sha256(responder.bytes)).to.equal(sha256(body));
      const used = responder.sent.find((iq) => iq.getChild('jingle', NS.JINGLE)?.attrs.action === 'transport-info')!;
      expect(
        used
          .getChild('jingle', NS.JINGLE)!
          .getChild('content')!
          .getChild('transport', NS.JINGLE_S5B)!
          .getChild('candidate-used')!.attrs.cid,
      ).to.equal('their-proxy');
    });

    it("gives up on the receiver's proxy on <proxy-error/> (and, for Dino, sends the link)", async () => {
      const { jingle } = setup(
        { s5b: 'error', ownProxy: { host: '127.0.0.1', port: proxy.port, jid: 'proxy.example.net' }, proxyFails: true },
        { XR_JINGLE_PEER_NETWORKS: '127.0.0.0/8' },
      );
      const err = await failure(jingle.deliver(req(client('Dino'))));
      expect(err.linkWhy).to.equal('no-direct-connection');
      expect(err.message).to.match(/could not activate its proxy/);
    });

    it("never connects to the receiver's candidates outside transfer.jingle.peerNetworks", async () => {
      const { jingle, responder } = setup(
        { s5b: 'error', ownProxy: { host: '127.0.0.1', port: proxy.port, jid: 'proxy.example.net' } },
        { XR_JINGLE_PEER_NETWORKS: '10.0.0.0/8' },
      );
      const err = await failure(jingle.deliver(req(client('Dino'))));
      expect(err.linkWhy).to.equal('no-direct-connection');
      expect(proxy.pairs.size).to.equal(0);
      const used = responder.sent.find((iq) => iq.getChild('jingle', NS.JINGLE)?.attrs.action === 'transport-info')!;
      expect(
        used
          .getChild('jingle', NS.JINGLE)!
          .getChild('content')!
          .getChild('transport', NS.JINGLE_S5B)!
          .getChild('candidate-error'),
      ).to.not.equal(undefined);
    });
  });

  it("aborts a Jingle IBB transfer on the receiver's <close/>, through the one registry of in-band streams", async () => {
    // A close for a running Jingle IBB stream ends it as broken off.
    const s = setup({ s5b: 'error', replace: { accept: 1024 }, holdAcksAfter: 2 }, { XR_IBB_WINDOW: '1' });
    const p = failure(s.jingle.deliver(req(client('Conversations'))));
    const until = Date.now() + 5000;
    while (s.responder.ibbBlocks < 3 && Date.now() < until) await sleep(5);
    const ibbSid = s.responder.sent.find((iq) => iq.getChild('open', NS.IBB))!.getChild('open', NS.IBB)!.attrs.sid!;
    await s.responder.sendRaw(xml('close', { xmlns: NS.IBB, sid: ibbSid }));
    const err = await p;
    expect(err.reason).to.equal('lost');
    expect(err.message).to.match(/closed the in-band stream early/);
  });

  it('cuts a running delivery on shutdown with reason cancel', async () => {
    const s = setup({ answer: 'none' }, { XR_TRANSFER_OFFER_TIMEOUT_MS: '10000' });
    const ac = new AbortController();
    const p = s.jingle.deliver({ ...req(client('Conversations')), signal: ac.signal });
    await sleep(50);
    ac.abort();
    const err = await failure(p);
    expect(err.reason).to.equal('cancelled');
    expect(s.responder.actions()).to.deep.equal(['session-initiate', 'session-terminate(cancel)']);
  });

  it('ends every pending negotiation when the server connection drops', async () => {
    const s = setup({ answer: 'none' }, { XR_TRANSFER_OFFER_TIMEOUT_MS: '10000' });
    const p = s.jingle.deliver(req(client('Conversations')));
    await sleep(50);
    s.connectionLost();
    expect((await failure(p)).reason).to.equal('interrupted');
    expect(s.responder.actions()).to.deep.equal(['session-initiate']); // nothing can be sent while offline
  });
});
