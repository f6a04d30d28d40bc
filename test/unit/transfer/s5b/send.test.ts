// The S5B sender over real loopback sockets, fed by a spool still being written:
// the live path hands on the buffers the download produced, with back-pressure;
// a reader that falls behind switches to the file; a broken download is never delivered.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { ReportError, type Report, type ReportReader } from '../../../../src/reports/source.js';
import { Spool, spooledReport, type SpoolFile } from '../../../../src/reports/spool.js';
import { S5bSender, StreamError } from '../../../../src/transfer/s5b/send.js';
import { feed } from '../../../support/reports.js';

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the receiving end of a socket saw. */
interface Received {
  socket: Socket;
  bytes: number;
  hash: ReturnType<typeof createHash>;
  /** 'end' for a clean close, else the error's code. */
  ended: Promise<string>;
}

/** How a reader served the sender: views of buffers still in memory, or copies from the file. */
interface Spy {
  views: number;
  fromFile: number;
  /** the buffers chunks() handed out, and a copy of their contents when handed out */
  handed: { buf: Buffer; copy: Buffer }[];
}

function spied(report: Report, spy: Spy): Report {
  return {
    ...report,
    open: async (o) => {
      const r = await report.open(o);
      const chunks = r.chunks!.bind(r);
      const reader: ReportReader = {
        read: async (buf, offset, length, position) => {
          const n = await r.read(buf, offset, length, position);
          if (n > 0) spy.fromFile++;
          return n;
        },
        chunks: async (position, max) => {
          const bufs = await chunks(position, max);
          if (bufs?.length) {
            spy.views++;
            for (const b of bufs) spy.handed.push({ buf: b, copy: Buffer.from(b) });
          }
          return bufs;
        },
        close: () => r.close(),
      };
      return reader;
    },
  };
}

describe('transfer/s5b send', () => {
  let root: string;
  let spool: Spool;
  let server: Server;
  let accepted: Received[];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 's5b-send-test-'));
    spool = await Spool.open(root);
    accepted = [];
    server = createServer((socket) => {
      const hash = createHash('sha256');
      const rec: Received = {
        socket,
        bytes: 0,
        hash,
        ended: new Promise((resolve) => {
          socket.on('end', () => {
            socket.end();
            resolve('end');
          });
          socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        }),
      };
      socket.on('data', (d: Buffer) => {
        rec.bytes += d.length;
        hash.update(d);
      });
      accepted.push(rec);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    await rm(root, { recursive: true, force: true });
  });

  /** A connected pair: the sender's socket and what the receiving end sees. */
  async function pair(): Promise<{ out: Socket; rec: Received }> {
    const { port } = server.address() as { port: number };
    const out = connect(port, '127.0.0.1');
    await within(new Promise((r) => out.once('connect', r)), 3000, 'connect');
    // this connection's own end, by its port (the server may accept connections in any order)
    const mine = () => accepted.find((r) => r.socket.remotePort === out.localPort);
    for (let i = 0; i < 600 && !mine(); i++) await sleep(5);
    const rec = mine();
    if (!rec) throw new Error('the test server never accepted the connection');
    return { out, rec };
  }

  function report(file: SpoolFile, size: number): Report {
    return spooledReport({ project: 'p', name: 'p.pdf', mime: 'application/pdf', size, date: new Date() }, file);
  }

  it('sends a report still arriving byte-exact, from the very buffers that arrived, untouched', async () => {
    const data = randomBytes(8 << 20);
    const src = new PassThrough();
    const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
    const spy: Spy = { views: 0, fromFile: 0, handed: [] };
    const { out, rec } = await pair();
    const sending = new S5bSender({ stallTimeoutMs: 5000 }).send(out, spied(report(file, data.length), spy));
    await feed(src, data);
    expect(await within(sending, 10000, 'send')).to.equal(data.length);
    expect(await within(rec.ended, 3000, 'receiver end')).to.equal('end');
    expect(rec.bytes).to.equal(data.length);
    expect(rec.hash.digest('hex')).to.equal(createHash('sha256').update(data).digest('hex'));
    expect(spy.views).to.be.greaterThan(0);
    // Ownership: what the sender was handed is still what arrived, after the disk write and the sends.
    // No copy: every buffer handed out is a view of the memory the source produced.
    for (const h of spy.handed) {
      expect(h.buf.buffer).to.equal(data.buffer);
      expect(h.buf.equals(h.copy)).to.equal(true);
    }
    expect(await within(file.done, 3000, 'spool')).to.equal(data.length);
    await file.remove();
  });

  it('a receiver that stops reading holds the sender back; the reader falls behind to the file and catches up in order', async () => {
    const data = randomBytes(24 << 20);
    const src = new PassThrough();
    const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
    const spy: Spy = { views: 0, fromFile: 0, handed: [] };
    const { out, rec } = await pair();
    rec.socket.pause(); // the receiver takes nothing for now
    const sending = new S5bSender({ stallTimeoutMs: 10000 }).send(out, spied(report(file, data.length), spy));
    await feed(src, data);
    // The whole download lands in the spool while the sender waits for the socket.
    expect(await within(file.done, 10000, 'spool')).to.equal(data.length);
    // Back-pressure: two reads at most wait in the socket's buffer (1 MiB each at most).
    expect(out.writableLength).to.be.at.most(2 << 20);
    expect(file.inMemory).to.equal(0);
    rec.socket.resume();
    expect(await within(sending, 10000, 'send')).to.equal(data.length);
    expect(await within(rec.ended, 3000, 'receiver end')).to.equal('end');
    expect(rec.bytes).to.equal(data.length);
    expect(rec.hash.digest('hex')).to.equal(createHash('sha256').update(data).digest('hex'));
    expect(spy.fromFile).to.be.greaterThan(0); // the bytes it fell behind on came from the file
    await file.remove();
  });

  it('reading once with a hash: the bytes sent are hashed in order, from memory and, behind a stalled receiver, from the file', async () => {
    const data = randomBytes(24 << 20);
    const src = new PassThrough();
    const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
    const spy: Spy = { views: 0, fromFile: 0, handed: [] };
    const { out, rec } = await pair();
    const hash = createHash('sha256');
    const sending = new S5bSender({ stallTimeoutMs: 10000 }).send(
      out,
      spied(report(file, data.length), spy),
      undefined,
      {
        once: true,
        hash,
      },
    );
    rec.socket.pause(); // the download is held for it, then goes on into the file
    const feeding = feed(src, data);
    expect(await within(file.done, 10000, 'spool')).to.equal(data.length);
    await within(feeding, 3000, 'feed');
    rec.socket.resume();
    expect(await within(sending, 10000, 'send')).to.equal(data.length);
    expect(await within(rec.ended, 3000, 'receiver end')).to.equal('end');
    const want = createHash('sha256').update(data).digest('hex');
    expect(rec.hash.digest('hex')).to.equal(want);
    expect(hash.digest('hex')).to.equal(want);
    expect(spy.views).to.be.greaterThan(0);
    expect(spy.fromFile).to.be.greaterThan(0);
    await file.remove();
  });

  it('a download that breaks mid-way is never delivered: the sender fails and resets the stream', async () => {
    const data = randomBytes(3 << 20);
    const src = new PassThrough();
    const file = spool.begin(src, {
      maxBytes: 1 << 30,
      expectedSize: 8 << 20,
      describe: (e) => (e instanceof ReportError ? e : new ReportError('unavailable', `download failed: ${e.message}`)),
    });
    const { out, rec } = await pair();
    let reset = false;
    const resetAndDestroy = out.resetAndDestroy.bind(out);
    out.resetAndDestroy = () => {
      reset = true;
      return resetAndDestroy();
    };
    const sending = new S5bSender({ stallTimeoutMs: 5000 }).send(out, report(file, 8 << 20));
    await feed(src, data, false);
    src.destroy(new Error('socket hang up'));
    const err = await within(
      sending.then(
        () => undefined,
        (e: unknown) => e,
      ),
      5000,
      'send',
    );
    expect(err).to.be.instanceOf(StreamError);
    expect((err as StreamError).sent).to.be.lessThan(8 << 20);
    expect(((err as StreamError).cause as Error).message).to.equal('download failed: socket hang up');
    // A reset, not a clean end. (What the receiver reads of it is up to its kernel: Linux reports a
    // reset connection whose receive queue still held bytes as an end of stream, so the receiver's
    // own proof is the size it was offered, which the cut stream never reaches.)
    expect(reset, 'the sender reset the stream').to.equal(true);
    await within(rec.ended, 3000, 'receiver end');
    expect(rec.bytes).to.be.lessThan(8 << 20);
    await file.remove();
  });

  it('the stall timer: a wait for the intranet is not a stall; a receiver that takes nothing is cut after it', async () => {
    // the intranet pauses for three stall periods mid-report while the receiver keeps up: delivered whole
    const data = randomBytes(2 << 20);
    const src = new PassThrough();
    const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
    const { out, rec } = await pair();
    const sending = new S5bSender({ stallTimeoutMs: 150 }).send(out, report(file, data.length));
    await feed(src, data.subarray(0, 1 << 20), false);
    await sleep(450);
    await feed(src, data.subarray(1 << 20));
    expect(await within(sending, 5000, 'send')).to.equal(data.length);
    expect(rec.hash.digest('hex')).to.equal(createHash('sha256').update(data).digest('hex'));
    await file.remove();

    // a receiver that stops reading while bytes wait for it: the stream is cut, not left hanging
    const big = randomBytes(32 << 20);
    const src2 = new PassThrough();
    const file2 = spool.begin(src2, { maxBytes: 1 << 30, expectedSize: big.length });
    const second = await pair();
    second.rec.socket.pause();
    const cut = new S5bSender({ stallTimeoutMs: 300 }).send(second.out, report(file2, big.length));
    void feed(src2, big).catch(() => {});
    const err = await within(
      cut.then(
        () => undefined,
        (e: unknown) => e,
      ),
      5000,
      'send',
    );
    expect(err).to.be.instanceOf(StreamError);
    expect((err as StreamError).message).to.match(/no progress for 300 ms/);
    expect((err as StreamError).sent).to.be.lessThan(big.length);
    second.rec.socket.resume();
    await within(
      file2.done.catch(() => 0),
      10000,
      'spool',
    );
    await file2.remove();
  });
});
