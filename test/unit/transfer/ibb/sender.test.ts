import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml, type Element } from '@xmpp/component';
import { IbbError, IbbSender } from '../../../../src/transfer/ibb/sender.js';
import { buildClose, buildData, buildOpen, nextSeq } from '../../../../src/transfer/ibb/stanzas.js';
import { ReportError } from '../../../../src/reports/source.js';
import { NS } from '../../../../src/xmpp/namespaces.js';
import { fileReport } from '../../../support/reports.js';

class StanzaFail extends Error {
  constructor(readonly condition: string) {
    super(condition);
  }
}

/** A fake receiver: records every IQ, acks after a tick, tracks blocks in flight. */
function fakeReceiver(opts: { refuseBlockAbove?: number; failAtSeq?: number; neverAnswerClose?: boolean } = {}) {
  const sent: Element[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const received: Buffer[] = [];
  const seqs: number[] = [];
  const request = (iq: Element, _timeoutMs?: number): Promise<Element> => {
    sent.push(iq);
    const open = iq.getChild('open', NS.IBB);
    const data = iq.getChild('data', NS.IBB);
    if (open) {
      const bs = Number(open.attrs['block-size']);
      if (opts.refuseBlockAbove && bs > opts.refuseBlockAbove)
        return Promise.reject(new StanzaFail('resource-constraint'));
      return Promise.resolve(xml('iq', { type: 'result' }));
    }
    if (data) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const seq = Number(data.attrs.seq);
      seqs.push(seq);
      received.push(Buffer.from(data.text(), 'base64'));
      return new Promise((resolve, reject) =>
        setTimeout(() => {
          inFlight--;
          if (opts.failAtSeq === seq) reject(new StanzaFail('unexpected-request'));
          else resolve(xml('iq', { type: 'result' }));
        }, 2),
      );
    }
    // close: libpurple never answers it
    return opts.neverAnswerClose ? new Promise(() => {}) : Promise.resolve(xml('iq', { type: 'result' }));
  };
  return {
    sent,
    received,
    seqs,
    request,
    get maxInFlight() {
      return maxInFlight;
    },
  };
}

describe('transfer/ibb', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ibb-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function file(size: number): Promise<{ path: string; data: Buffer }> {
    const data = randomBytes(size);
    const path = join(dir, `f${size}-${Math.random()}`);
    await writeFile(path, data);
    return { path, data };
  }

  const base = {
    from: 'p@r.example.com/reports',
    to: 'a@example.com/x',
    sid: 's1',
    ackTimeoutMs: 1000,
  };

  it('wraps sequence numbers at 65535 (XEP-0047 §2.2)', () => {
    expect(nextSeq(0)).to.equal(1);
    expect(nextSeq(65534)).to.equal(65535);
    expect(nextSeq(65535)).to.equal(0);
  });

  it('builds open, data and close as in XEP-0047 examples', () => {
    const o = buildOpen({ id: 'i1', from: 'a@b/c', to: 'd@e/f', sid: 'x', blockSize: 4096 });
    expect(o.toString()).to.equal(
      `<iq type="set" id="i1" from="a@b/c" to="d@e/f"><open xmlns="${NS.IBB}" sid="x" block-size="4096" stanza="iq"/></iq>`,
    );
    const d = buildData({ id: 'i2', from: 'a@b/c', to: 'd@e/f', sid: 'x', seq: 0, data: 'qANQR1DBwU4DX7jmYZnncm==' });
    expect(d.getChild('data', NS.IBB)?.attrs.seq).to.equal('0');
    expect(d.getChild('data', NS.IBB)?.text()).to.equal('qANQR1DBwU4DX7jmYZnncm==');
    expect(buildClose({ id: 'i3', from: 'a', to: 'b', sid: 'x' }).getChild('close', NS.IBB)?.attrs.sid).to.equal('x');
  });

  for (const [label, size, block] of [
    ['1 byte', 1, 4096],
    ['exactly one block', 4096, 4096],
    ['one byte over a block', 4097, 4096],
    ['many blocks', 100_000, 4096],
  ] as const) {
    it(`sends ${label} byte-exact with consecutive sequence numbers`, async () => {
      const f = await file(size);
      const r = fakeReceiver({ neverAnswerClose: true });
      const acked = await new IbbSender({
        ...base,
        report: fileReport(f.path, size),
        blockSize: block,
        window: 4,
        request: r.request,
      }).send();
      expect(acked).to.equal(size);
      const got = Buffer.concat(r.received);
      expect(createHash('sha256').update(got).digest('hex')).to.equal(
        createHash('sha256').update(f.data).digest('hex'),
      );
      expect(r.seqs).to.deep.equal(r.seqs.map((_, i) => i));
      expect(r.received.every((b) => b.length <= block)).to.equal(true);
      expect(r.sent[r.sent.length - 1].getChild('close', NS.IBB)).to.not.equal(undefined);
    });
  }

  it('keeps up to the window of blocks in flight, and 1 means stop-and-wait', async () => {
    const f = await file(64 * 1024);
    const r8 = fakeReceiver();
    await new IbbSender({
      ...base,
      report: fileReport(f.path, f.data.length),
      blockSize: 1024,
      window: 8,
      request: r8.request,
    }).send();
    expect(r8.maxInFlight).to.equal(8);
    const r1 = fakeReceiver();
    await new IbbSender({
      ...base,
      report: fileReport(f.path, f.data.length),
      blockSize: 1024,
      window: 1,
      request: r1.request,
    }).send();
    expect(r1.maxInFlight).to.equal(1);
  });

  it('wraps seq past 65535 on a long stream', async () => {
    const f = await file(65537 * 2);
    const r = fakeReceiver();
    await new IbbSender({
      ...base,
      report: fileReport(f.path, f.data.length),
      blockSize: 2,
      window: 128,
      request: r.request,
    }).send();
    expect(r.seqs[65535]).to.equal(65535);
    expect(r.seqs[65536]).to.equal(0);
    expect(Buffer.concat(r.received).equals(f.data)).to.equal(true);
  });

  it('retries the open with 4096-byte blocks after resource-constraint', async () => {
    const f = await file(10000);
    const r = fakeReceiver({ refuseBlockAbove: 4096 });
    const s = new IbbSender({
      ...base,
      report: fileReport(f.path, f.data.length),
      blockSize: 65535,
      window: 2,
      request: r.request,
    });
    await s.send();
    expect(s.blockSize).to.equal(4096);
    const opens = r.sent.filter((e) => e.getChild('open', NS.IBB));
    expect(opens.map((e) => e.getChild('open', NS.IBB)!.attrs['block-size'])).to.deep.equal(['65535', '4096']);
  });

  it('fails, reporting what was acknowledged, when a block is refused', async () => {
    const f = await file(10 * 1024);
    const r = fakeReceiver({ failAtSeq: 5 });
    let err: unknown;
    try {
      await new IbbSender({
        ...base,
        report: fileReport(f.path, f.data.length),
        blockSize: 1024,
        window: 1,
        request: r.request,
      }).send();
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(IbbError);
    expect((err as IbbError).acked).to.equal(5 * 1024);
    expect((err as IbbError).condition).to.equal('unexpected-request');
  });

  it('stops when aborted (receiver closed early)', async () => {
    const f = await file(50 * 1024);
    const r = fakeReceiver();
    const s = new IbbSender({
      ...base,
      report: fileReport(f.path, f.data.length),
      blockSize: 1024,
      window: 1,
      request: (iq, t) => {
        if (iq.getChild('data', NS.IBB)?.attrs.seq === '3') s.abort('receiver closed the in-band stream early');
        return r.request(iq, t);
      },
    });
    let err: unknown;
    try {
      await s.send();
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.match(/closed/);
    expect(r.seqs.length).to.be.lessThan(10);
  });

  it('sends from a report still arriving, and closes the stream early when its download breaks', async () => {
    const f = await file(40 * 1024);
    const r = fakeReceiver();
    // bytes arrive 5000 at a time (reads give what has arrived); past 20 000 the download fails
    const arriving = {
      size: f.data.length,
      open: async () => ({
        read: async (buf: Buffer, off: number, len: number, pos: number) => {
          if (pos >= 20_000) throw new ReportError('unavailable', 'download failed: socket hang up');
          const n = Math.min(len, 5000, 20_000 - pos);
          f.data.copy(buf, off, pos, pos + n);
          return n;
        },
        close: async () => {},
      }),
    };
    let err: unknown;
    try {
      await new IbbSender({ ...base, report: arriving, blockSize: 4096, window: 2, request: r.request }).send();
    } catch (e) {
      err = e;
    }
    // an IbbError that counts what the receiver acknowledged, caused by the download's ReportError
    expect(err).to.be.instanceOf(IbbError);
    expect((err as Error).message).to.equal('download failed: socket hang up');
    expect((err as Error).cause).to.be.instanceOf(ReportError);
    expect((err as IbbError).acked).to.be.at.most(Buffer.concat(r.received).length);
    // whole blocks only, byte-exact as far as they went, then <close/> (XEP-0047 §2.3) before the offered size
    const got = Buffer.concat(r.received);
    expect(got.length % 4096).to.equal(0);
    expect(got.length).to.be.below(20_000);
    expect(got.equals(f.data.subarray(0, got.length))).to.equal(true);
    expect(r.sent[r.sent.length - 1].getChild('close', NS.IBB)).to.not.equal(undefined);
  });
});
