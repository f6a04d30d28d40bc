import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { Streamhost, StreamhostTimeout } from '../../../../src/transfer/s5b/streamhost.js';
import { dstAddr } from '../../../../src/transfer/s5b/socks5.js';

const log = pino({ level: 'silent' });

function connectRequest(addr: string, port = 0): Buffer {
  const a = Buffer.from(addr, 'latin1');
  return Buffer.concat([Buffer.from([5, 1, 0, 3, a.length]), a, Buffer.from([port >> 8, port & 0xff])]);
}

/** Sends bytes, collects everything until the server closes (bounded). */
function exchange(port: number, bytes: Buffer[], ms = 3000): Promise<{ data: Buffer; closed: boolean; sock: Socket }> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      resolve({ data: Buffer.concat(chunks), closed, sock });
    };
    const t = setTimeout(() => finish(false), ms);
    sock.on('data', (c) => chunks.push(c));
    sock.on('close', () => finish(true));
    sock.on('error', () => {});
    sock.on('connect', () => {
      for (const b of bytes) sock.write(b);
    });
  });
}

describe('transfer/streamhost (real loopback TCP)', () => {
  let sh: Streamhost;
  beforeEach(async () => {
    sh = await Streamhost.listen(
      {
        bindHost: '127.0.0.1',
        bindPort: 0,
        advertiseHost: '',
        advertisePort: 0,
        handshakeTimeoutMs: 300,
        maxConnections: 5,
        maxPerAddress: 100,
      },
      log,
    );
  });
  afterEach(async () => {
    await sh.close();
  });

  it('advertises its bound address when none is configured', () => {
    expect(sh.host).to.equal('127.0.0.1');
    expect(sh.port).to.equal(sh.boundPort).and.to.be.greaterThan(0);
  });

  it('hands over a negotiated session once, with the XEP-0065 replies, and data flows', async () => {
    const hash = dstAddr('sid1', 'p@reports.example.com/reports', 'alice@example.com/x');
    const exp = sh.expect(hash, 2000);
    const client = connect({ host: '127.0.0.1', port: sh.port });
    const got: Buffer[] = [];
    client.on('data', (c) => got.push(c));
    await new Promise((r) => client.once('connect', r));
    // greeting and request in one segment: pipelined handshakes must work
    client.write(Buffer.concat([Buffer.from([5, 1, 0]), connectRequest(hash)]));
    const server = await exp.socket;
    server.write('hello');
    server.end();
    await new Promise((r) => client.once('end', r));
    const all = Buffer.concat(got);
    expect([...all.subarray(0, 2)]).to.deep.equal([5, 0]);
    expect([...all.subarray(2, 7)]).to.deep.equal([5, 0, 0, 3, 40]);
    expect(all.subarray(7, 47).toString()).to.equal(hash);
    expect(all.subarray(49).toString()).to.equal('hello');
    client.destroy();
    // the same hash a second time is refused: each session is relayed once
    const again = await exchange(sh.port, [Buffer.from([5, 1, 0]), connectRequest(hash)]);
    expect(again.closed).to.equal(true);
    expect(again.data[3]).to.equal(2); // REP = connection not allowed
  });

  it('refuses an unknown hash with "not allowed" and closes', async () => {
    const r = await exchange(sh.port, [Buffer.from([5, 1, 0]), connectRequest(dstAddr('x', 'y', 'z'))]);
    expect(r.closed).to.equal(true);
    expect([...r.data.subarray(0, 4)]).to.deep.equal([5, 0, 5, 2]);
  });

  it('refuses a greeting without the no-auth method', async () => {
    const r = await exchange(sh.port, [Buffer.from([5, 1, 2])]);
    expect(r.closed).to.equal(true);
    expect([...r.data]).to.deep.equal([5, 0xff]);
  });

  it('closes garbage, oversized and slow handshakes', async () => {
    const garbage = await exchange(sh.port, [Buffer.from('GET / HTTP/1.0\r\n\r\n')]);
    expect(garbage.closed).to.equal(true);
    expect(garbage.data.length).to.equal(0);
    const big = await exchange(sh.port, [Buffer.from([5, 255, ...Buffer.alloc(255)]), Buffer.alloc(600, 5)]);
    expect(big.closed).to.equal(true);
    const slow = await exchange(sh.port, [Buffer.from([5])], 3000); // never completes: the 300 ms deadline closes it
    expect(slow.closed).to.equal(true);
  });

  it('caps open connections: at the cap the oldest unfinished handshake makes room, a relayed stream never does', async () => {
    await sh.close();
    sh = await Streamhost.listen(
      {
        bindHost: '127.0.0.1',
        bindPort: 0,
        advertiseHost: '',
        advertisePort: 0,
        handshakeTimeoutMs: 10000,
        maxConnections: 5,
        maxPerAddress: 100,
      },
      log,
    );
    // five idle connections fill the cap
    const idle: Array<{ sock: Socket; closed: boolean }> = [];
    for (let i = 0; i < 5; i++) {
      const sock = connect({ host: '127.0.0.1', port: sh.port });
      const entry = { sock, closed: false };
      sock.on('error', () => {});
      sock.on('close', () => (entry.closed = true));
      idle.push(entry);
      await new Promise((r) => sock.once('connect', r));
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(sh.connections).to.equal(5);
    // a sixth, honest one is let in; the oldest idle one is closed for it
    const hash = dstAddr('sid', 'a@b/c', 'd@e/f');
    const got = sh.expect(hash, 2000);
    const honest = await exchange(sh.port, [Buffer.from([5, 1, 0]), connectRequest(hash)], 200);
    expect([...honest.data.subarray(0, 2)]).to.deep.equal([5, 0]);
    expect(honest.data[3]).to.equal(0); // CONNECT succeeded
    const relayed = await got.socket;
    await new Promise((r) => setTimeout(r, 50));
    expect(idle.map((e) => e.closed)).to.deep.equal([true, false, false, false, false]);
    expect(sh.connections).to.equal(5);
    // once every slot is a relayed stream the cap refuses newcomers
    for (const e of idle) e.sock.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const streams: Socket[] = [relayed, honest.sock];
    for (let i = 0; i < 4; i++) {
      const h = dstAddr(`s${i}`, 'a@b/c', 'd@e/f');
      const p = sh.expect(h, 2000);
      const x = await exchange(sh.port, [Buffer.from([5, 1, 0]), connectRequest(h)], 200);
      streams.push(await p.socket, x.sock);
    }
    expect(sh.connections).to.equal(5);
    const refused = await exchange(sh.port, [Buffer.from([5, 1, 0])], 1000);
    expect(refused.closed).to.equal(true);
    expect(refused.data.length).to.equal(0);
    for (const s of streams) s.destroy();
  });

  it('drops a connection that never says a word long before the handshake deadline', async () => {
    await sh.close();
    sh = await Streamhost.listen(
      {
        bindHost: '127.0.0.1',
        bindPort: 0,
        advertiseHost: '',
        advertisePort: 0,
        handshakeTimeoutMs: 60000,
        maxConnections: 5,
        maxPerAddress: 100,
      },
      log,
    );
    const silent = await exchange(sh.port, [], 10000);
    expect(silent.closed, 'closed well within the 60 s handshake deadline').to.equal(true);
  });

  it('caps connections from one remote address the same way', async () => {
    const capped = await Streamhost.listen(
      {
        bindHost: '127.0.0.1',
        bindPort: 0,
        advertiseHost: '',
        advertisePort: 0,
        handshakeTimeoutMs: 2000,
        maxConnections: 100,
        maxPerAddress: 3,
      },
      log,
    );
    const socks: Array<{ sock: Socket; closed: boolean }> = [];
    try {
      for (let i = 0; i < 3; i++) {
        const sock = connect({ host: '127.0.0.1', port: capped.port });
        const entry = { sock, closed: false };
        sock.on('error', () => {});
        sock.on('close', () => (entry.closed = true));
        socks.push(entry);
        await new Promise((r) => sock.once('connect', r));
        if (i === 0) sock.write(Buffer.from([5, 1])); // a truncated greeting: still unfinished
      }
      await new Promise((r) => setTimeout(r, 50));
      const fourth = await exchange(capped.port, [Buffer.from([5, 1, 0])], 300);
      expect([...fourth.data]).to.deep.equal([5, 0]);
      await new Promise((r) => setTimeout(r, 50));
      expect(socks.map((e) => e.closed)).to.deep.equal([true, false, false]);
      expect(capped.connections).to.equal(3);
      fourth.sock.destroy();
    } finally {
      for (const e of socks) e.sock.destroy();
      await capped.close();
    }
  });

  it('rejects an expectation nobody connects to within its timeout', async () => {
    const exp = sh.expect(dstAddr('a', 'b', 'c'), 100);
    let err: unknown;
    try {
      await exp.socket;
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(StreamhostTimeout);
  });
});
