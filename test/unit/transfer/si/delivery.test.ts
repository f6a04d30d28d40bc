// SiDelivery against a scripted SI receiver, in process, as the Jingle
// delivery test does: the component's stanzas go to a fake connection whose
// receiver answers as libpurple does (accepts the offer, connects by SOCKS5
// to our real streamhost on loopback, or refuses every streamhost and takes
// IBB), and the receiver's own IQs (an early <close/>) go through the real
// IqRouter of the wired transfer modules.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml, type Element } from '@xmpp/component';
import { transferModules } from '../../../../src/app.js';
import { loadConfig } from '../../../../src/config.js';
import { createLogger } from '../../../../src/log.js';
import type { Report } from '../../../../src/reports/source.js';
import { DeliveryError, ReceiverGone, type DeliveryRequest } from '../../../../src/transfer/delivery.js';
import { socksConnect } from '../../../../src/transfer/s5b/proxy.js';
import { dstAddr } from '../../../../src/transfer/s5b/socks5.js';
import { Streamhost } from '../../../../src/transfer/s5b/streamhost.js';
import { parseJid } from '../../../../src/xmpp/addresses.js';
import type { ClientInfo } from '../../../../src/xmpp/caps.js';
import { NS } from '../../../../src/xmpp/namespaces.js';
import { IqRouter } from '../../../../src/xmpp/router.js';
import { fileReport } from '../../../support/reports.js';
import { siAnswer } from '../../../support/si.js';

const US = '1234@reports.example.com/reports';
const THEM = 'alice@example.com/pidgin';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const log = createLogger('silent');

class StanzaFail extends Error {
  constructor(readonly condition: string) {
    super(condition);
  }
}

interface Behaviour {
  /** how the offer is answered */
  offer: 'accept' | 'decline' | 'ibb-only' | 'silent';
  /** how the streamhost offer is answered: connect to the first streamhost, or refuse (libpurple's 404) */
  s5b?: 'connect' | 'refuse';
  /** after this many IBB blocks, the receiver sends <close/> instead of acking */
  closeAfterBlocks?: number;
  /** after this many IBB blocks, acks are held back (the stream stalls) */
  holdAcksAfter?: number;
  /** connected to the streamhost, the receiver answers only once this many bytes came (or the stream closed) */
  answerAfterBytes?: number;
  /** connected to the streamhost, the receiver waits this long before it answers */
  answerDelayMs?: number;
  /** what it answers once connected (default streamhost-used) */
  answerConnected?: 'used' | 'item-not-found';
}

/** The receiving client: answers the component's IQs, keeps what arrives. */
class Receiver {
  readonly sent: Element[] = [];
  readonly chunks: Buffer[] = [];
  ibbBlocks = 0;
  /** bytes that had come through the streamhost when the receiver answered the streamhost offer */
  bytesBeforeAnswer: number | undefined;
  socket: Socket | undefined;
  closedCleanly: Promise<boolean> | undefined;
  private readonly held: Array<() => void> = [];

  constructor(
    private readonly router: IqRouter,
    private readonly b: Behaviour,
  ) {}

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** What the component's connection.request() does: send, and wait for the receiver's answer. */
  async request(iq: Element): Promise<Element> {
    this.sent.push(iq);
    const result = (child?: Element) => xml('iq', { type: 'result', from: THEM, to: US, id: iq.attrs.id }, child);
    const si = iq.getChild('si', NS.SI);
    if (si) {
      if (this.b.offer === 'decline') throw new StanzaFail('forbidden');
      if (this.b.offer === 'silent') return new Promise<Element>(() => {}); // a person who never clicks
      const method = this.b.offer === 'ibb-only' ? NS.IBB : NS.BYTESTREAMS;
      return result(siAnswer(method));
    }
    const query = iq.getChild('query', NS.BYTESTREAMS);
    if (query) {
      if (this.b.s5b === 'refuse') throw new StanzaFail('item-not-found');
      const host = query.getChild('streamhost')!;
      // libpurple: DST.ADDR = SHA1(sid + initiator full JID + own full JID), CONNECT, then streamhost-used
      this.socket = await socksConnect(
        host.attrs.host!,
        Number(host.attrs.port),
        dstAddr(query.attrs.sid!, US, THEM),
        2000,
      );
      const s = this.socket;
      s.on('data', (c: Buffer) => this.chunks.push(c));
      s.on('end', () => s.end());
      s.on('error', () => {}); // a reset shows in 'close'
      this.closedCleanly = new Promise((resolve) => s.once('close', (hadError) => resolve(!hadError)));
      const want = this.b.answerAfterBytes;
      if (want !== undefined) {
        await new Promise<void>((resolve) => {
          const check = () => this.bytes.length >= want && resolve();
          s.on('data', check);
          s.once('close', () => resolve());
          check();
        });
      }
      if (this.b.answerDelayMs !== undefined) await new Promise((r) => setTimeout(r, this.b.answerDelayMs));
      this.bytesBeforeAnswer = this.bytes.length;
      if (this.b.answerConnected === 'item-not-found') throw new StanzaFail('item-not-found');
      return result(xml('query', { xmlns: NS.BYTESTREAMS }, xml('streamhost-used', { jid: host.attrs.jid })));
    }
    const data = iq.getChild('data', NS.IBB);
    if (data) {
      this.ibbBlocks++;
      this.chunks.push(Buffer.from(data.text(), 'base64'));
      if (this.b.closeAfterBlocks !== undefined && this.ibbBlocks >= this.b.closeAfterBlocks) {
        const close = xml('close', { xmlns: NS.IBB, sid: data.attrs.sid });
        await this.router.handle(xml('iq', { type: 'set', from: THEM, to: US, id: 'c1' }, close), parseJid(THEM)!, {
          kind: 'project',
          project: '1234',
        });
        return new Promise<Element>(() => {}); // never acked
      }
      if (this.b.holdAcksAfter !== undefined && this.ibbBlocks > this.b.holdAcksAfter) {
        return new Promise<Element>((resolve) => this.held.push(() => resolve(result())));
      }
      return result();
    }
    return result(); // IBB open and close
  }

  actions(): string[] {
    return this.sent.map((iq) => {
      const c = iq.getChildElements()[0];
      return c.name === 'query' ? 'streamhost-offer' : c.name;
    });
  }
}

describe('transfer/si delivery against a scripted receiver', () => {
  let dir: string;
  let body: Buffer;
  let report: Report;
  let streamhost: Streamhost;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xr-si-'));
    body = randomBytes(300_000);
    const path = join(dir, 'r.pdf');
    await writeFile(path, body);
    report = fileReport(path, body.length, { project: '1234' });
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

  function setup(b: Behaviour, env: Record<string, string> = {}) {
    const config = loadConfig({
      env: {
        XR_XMPP_SECRET: 'x',
        XR_TRANSFER_OFFER_TIMEOUT_MS: '1000',
        XR_TRANSFER_CONNECT_TIMEOUT_MS: '2000',
        XR_TRANSFER_STALL_TIMEOUT_MS: '2000',
        XR_IBB_BLOCK_SIZE: '8192',
        ...env,
      },
    });
    const peer: { rx?: Receiver } = {};
    const modules = transferModules(config.transfer, (iq: Element) => peer.rx!.request(iq), streamhost, {
      domain: 'reports.example.com',
      log,
    });
    const router = new IqRouter().add(modules.si.routes).add(modules.ibb.routes);
    const rx = (peer.rx = new Receiver(router, b));
    return { si: modules.si, ibb: modules.ibb, rx, connectionLost: modules.connectionLost };
  }

  const req = (r: Report = report): DeliveryRequest => ({ report: r, to: THEM, from: US, log });
  const failure = async (p: Promise<unknown>): Promise<DeliveryError> => {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(DeliveryError);
      return err as DeliveryError;
    }
    throw new Error('expected the delivery to fail');
  };

  it('sends by S5B through our streamhost: every byte, then the receiver closes', async () => {
    const { si, rx } = setup({ offer: 'accept', s5b: 'connect' });
    const out = await si.deliver(req());
    expect(out).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
    expect(await rx.closedCleanly).to.equal(true);
    expect(sha256(rx.bytes)).to.equal(sha256(body));
    expect(rx.actions()).to.deep.equal(['si', 'streamhost-offer']);
    const offer = rx.sent[0].getChild('si', NS.SI)!;
    expect(offer.attrs.profile).to.equal(NS.SI_FILE);
    expect(offer.getChild('file', NS.SI_FILE)!.attrs.size).to.equal(String(body.length));
  });

  // libpurple's identity when its UI gives no name (client/pc "pidgin", as the test receiver): on transfer.proxy.earlyClients by default (any case)
  const pidgin: ClientInfo = {
    features: new Set([NS.SI, NS.SI_FILE, NS.BYTESTREAMS, NS.IBB]),
    identities: [{ category: 'client', type: 'pc', name: 'pidgin' }],
  };

  it('starts the bytes to a client of transfer.proxy.earlyClients as soon as it is connected, before its streamhost-used', async () => {
    // this receiver names the streamhost only once it holds every byte: the bytes must come first
    const { si, rx } = setup({ offer: 'accept', s5b: 'connect', answerAfterBytes: body.length });
    const out = await si.deliver({ ...req(), client: pidgin });
    expect(out).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
    expect(await rx.closedCleanly).to.equal(true);
    expect(sha256(rx.bytes)).to.equal(sha256(body));
    expect(rx.actions()).to.deep.equal(['si', 'streamhost-offer']);
  });

  it('waits for streamhost-used from any other client (XEP-0065 §5.3.3), and from every client with earlyClients none', async () => {
    const dino: ClientInfo = { ...pidgin, identities: [{ category: 'client', type: 'pc', name: 'Dino' }] };
    for (const [client, env] of [
      [dino, {}],
      [undefined, {}],
      [pidgin, { XR_PROXY_EARLY_CLIENTS: 'none' }],
    ] as const) {
      const { si, rx } = setup({ offer: 'accept', s5b: 'connect', answerDelayMs: 100 }, env);
      const out = await si.deliver({ ...req(), client });
      expect(out).to.deep.equal({ kind: 'delivered', method: 's5b', bytes: body.length });
      expect(rx.bytesBeforeAnswer, `${client?.identities[0].name} ${JSON.stringify(env)}`).to.equal(0);
      expect(sha256(rx.bytes)).to.equal(sha256(body));
    }
    // the same receiver as pidgin: its bytes were under way while it waited
    const { si, rx } = setup({ offer: 'accept', s5b: 'connect', answerDelayMs: 100 });
    await si.deliver({ ...req(), client: pidgin });
    expect(rx.bytesBeforeAnswer).to.be.above(0);
  });

  it('an early stream the client then does not name is cut, and counts as lost (no in-band second copy)', async () => {
    const { si, rx } = setup({
      offer: 'accept',
      s5b: 'connect',
      answerAfterBytes: 1,
      answerConnected: 'item-not-found',
    });
    // the report's bytes come slowly after the first 64 KiB, so the stream is still open when the answer comes
    const slow: Report = {
      ...report,
      open: async () => {
        const r = await report.open();
        return {
          read: async (buf, off, len, pos) => {
            if (pos >= 65536) await new Promise((d) => setTimeout(d, 20));
            return r.read(buf, off, Math.min(len, 16384), pos);
          },
          close: () => r.close(),
        };
      },
    };
    const err = await failure(si.deliver({ ...req(slow), client: pidgin }));
    expect(err.reason).to.equal('lost');
    expect(err.sent).to.be.above(0).and.below(body.length);
    expect(err.message).to.match(/connected to our streamhost, then answered .*item-not-found/);
    expect(await rx.closedCleanly).to.equal(false); // reset: never a clean end that could pass for a whole file
    expect(rx.actions()).to.deep.equal(['si', 'streamhost-offer']);
  });

  it('falls back to IBB when every streamhost fails (libpurple answers item-not-found), byte-exact', async () => {
    const { si, rx, ibb } = setup({ offer: 'accept', s5b: 'refuse' });
    const out = await si.deliver(req());
    expect(out).to.deep.equal({ kind: 'delivered', method: 'ibb', bytes: body.length });
    expect(sha256(rx.bytes)).to.equal(sha256(body));
    expect(rx.actions()[0]).to.equal('si');
    expect(rx.actions()[1]).to.equal('streamhost-offer');
    expect(rx.actions()[2]).to.equal('open');
    expect(rx.actions().at(-1)).to.equal('close');
    expect(ibb.size).to.equal(0); // the stream left the registry
  });

  it('uses IBB at once when the receiver chose it', async () => {
    const { si, rx } = setup({ offer: 'ibb-only' });
    const out = await si.deliver(req());
    expect(out.kind).to.equal('delivered');
    expect(sha256(rx.bytes)).to.equal(sha256(body));
    expect(rx.actions().slice(0, 2)).to.deep.equal(['si', 'open']);
  });

  it('a declined offer is declined, and nothing is sent', async () => {
    const { si, rx } = setup({ offer: 'decline' });
    const err = await failure(si.deliver(req()));
    expect(err.reason).to.equal('declined');
    expect(rx.actions()).to.deep.equal(['si']);
  });

  it("the receiver's early <close/> reaches the stream through the router and ends it as broken off", async () => {
    const { si } = setup({ offer: 'ibb-only', closeAfterBlocks: 3 }, { XR_IBB_WINDOW: '1' });
    const err = await failure(si.deliver(req()));
    expect(err.reason).to.equal('lost');
    expect(err.method).to.equal('ibb');
    expect(err.message).to.match(/closed the in-band stream early/);
    expect(err.sent).to.equal(2 * 8192); // the third block was never acknowledged
  });

  it('a report shorter than offered is the report’s fault, under S5B: the stream is cut, never delivered', async () => {
    const { si, rx } = setup({ offer: 'accept', s5b: 'connect' });
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
    const err = await failure(si.deliver(req(cut)));
    expect(err.reason).to.equal('source');
    expect(err.message).to.equal(`the report ended after 65536 of ${body.length} bytes`);
    expect(await rx.closedCleanly).to.equal(false); // reset, not a clean end that could pass for a whole file
    expect(rx.bytes.length).to.be.at.most(65536);
  });

  it('a shutdown during an in-band stream is a cancellation, even when it also ends the download', async () => {
    const { si, rx } = setup({ offer: 'ibb-only', holdAcksAfter: 2 }, { XR_IBB_WINDOW: '1' });
    const ac = new AbortController();
    const p = failure(si.deliver({ ...req(), signal: ac.signal }));
    const until = Date.now() + 5000;
    while (rx.ibbBlocks < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    const err = await p;
    expect(err.reason).to.equal('cancelled');
    expect(err.method).to.equal('ibb');
  });

  it('a requester that goes offline ends the waiting offer at once, as a failure a link may follow', async () => {
    const { si } = setup({ offer: 'silent' }, { XR_TRANSFER_OFFER_TIMEOUT_MS: '600000' });
    const ac = new AbortController();
    const p = failure(si.deliver({ ...req(), signal: ac.signal }));
    await new Promise((r) => setTimeout(r, 20));
    ac.abort(new ReceiverGone('the requester went offline'));
    const err = await p;
    expect(err.reason).to.equal('failed');
    expect(err.linkWhy).to.equal('went-offline');
    expect(err.message).to.equal('your chat client went offline');
  });

  it('a server disconnect during an in-band stream interrupts it, so the request can offer again', async () => {
    const { rx, si, connectionLost } = setup({ offer: 'ibb-only', holdAcksAfter: 2 }, { XR_IBB_WINDOW: '1' });
    const p = failure(si.deliver(req()));
    const until = Date.now() + 5000;
    while (rx.ibbBlocks < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    connectionLost();
    const err = await p;
    expect(err.reason).to.equal('interrupted');
    expect(err.sent).to.equal(2 * 8192);
  });
});
