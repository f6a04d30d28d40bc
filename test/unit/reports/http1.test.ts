import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import {
  Http1Pool,
  HttpProtocolError,
  ResponseParser,
  requestBytes,
  type ResponseHead,
} from '../../../src/reports/http1.js';
import { SlabPool, giveBack } from '../../../src/reports/slabs.js';

interface Parsed {
  heads: ResponseHead[];
  body: Buffer;
  ends: boolean[];
}

/** Feeds `wire` to one parser in the given pieces; returns what it emitted. */
function parse(wire: Buffer, cuts: number[] = [], eof = false): Parsed {
  const out: Parsed = { heads: [], body: Buffer.alloc(0), ends: [] };
  const parts: Buffer[] = [];
  const p = new ResponseParser({
    head: (h) => out.heads.push(h),
    body: (c) => parts.push(Buffer.from(c)),
    end: (reusable) => {
      out.ends.push(reusable);
      p.reset();
    },
  });
  let at = 0;
  for (const c of [...cuts, wire.length]) {
    p.feed(wire.subarray(at, c));
    at = c;
  }
  if (eof) p.eof();
  out.body = Buffer.concat(parts);
  return out;
}

const b = (s: string) => Buffer.from(s, 'latin1');

describe('reports/http1: ResponseParser (RFC 9112)', () => {
  it('reads a Content-Length body, and the connection is reusable', () => {
    const r = parse(b('HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: 5\r\n\r\nhello'));
    expect(r.heads[0].status).to.equal(200);
    expect(r.heads[0].headers.get('content-type')).to.equal('application/pdf');
    expect(r.body.toString()).to.equal('hello');
    expect(r.ends).to.deep.equal([true]);
  });

  it('decodes the chunked example of RFC 9112 §7.1 with extensions and trailers, split at every byte', () => {
    const wire = b(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n',
    );
    for (let cut = 1; cut < wire.length; cut++) {
      const r = parse(wire, [cut]);
      expect(r.body.toString(), `cut at ${cut}`).to.equal('Wikipedia in\r\n\r\nchunks.');
      expect(r.ends, `cut at ${cut}`).to.deep.equal([true]);
    }
    // and one byte at a time
    const r = parse(
      wire,
      [...Array(wire.length - 1).keys()].map((i) => i + 1),
    );
    expect(r.body.toString()).to.equal('Wikipedia in\r\n\r\nchunks.');
  });

  it('hands the body on as views of the input, not copies', () => {
    const wire = b('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd');
    const seen: Buffer[] = [];
    new ResponseParser({ head: () => {}, body: (c) => seen.push(c), end: () => {} }).feed(wire);
    expect(seen).to.have.length(1);
    expect(seen[0].buffer).to.equal(wire.buffer);
  });

  it('skips interim 1xx responses (100, 103)', () => {
    const r = parse(
      b(
        'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
      ),
    );
    expect(r.heads.map((h) => h.status)).to.deep.equal([200]);
    expect(r.body.toString()).to.equal('ok');
  });

  it('204 and 304 have no body; a body read to the close is not reusable; HTTP/1.0 and Connection: close neither', () => {
    expect(parse(b('HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n')).ends).to.deep.equal([true]);
    expect(parse(b('HTTP/1.1 304 Not Modified\r\n\r\n')).ends).to.deep.equal([true]);
    const close = parse(b('HTTP/1.1 200 OK\r\n\r\nuntil the end'), [], true);
    expect(close.body.toString()).to.equal('until the end');
    expect(close.ends).to.deep.equal([false]);
    expect(parse(b('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx')).ends).to.deep.equal([false]);
    expect(
      parse(b('HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx')).ends,
    ).to.deep.equal([false]);
  });

  it('joins repeated fields, and takes a repeated identical Content-Length', () => {
    const r = parse(b('HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc'));
    expect(r.heads[0].headers.get('x-a')).to.equal('1, 2');
    expect(r.body.toString()).to.equal('abc');
  });

  it('reads two responses in a row on one connection (the second after reset)', () => {
    const r = parse(
      b('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno'),
    );
    expect(r.heads.map((h) => h.status)).to.deep.equal([200, 404]);
    expect(r.body.toString()).to.equal('ano');
  });

  const bad: [string, string, RegExp][] = [
    ['not HTTP', 'SSH-2.0-OpenSSH\r\n\r\n', /status line/],
    ['HTTP/2 status line', 'HTTP/2 200\r\n\r\n', /status line/],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n', /invalid header line/],
    ['a field without a colon', 'HTTP/1.1 200 OK\r\nnonsense\r\n\r\n', /invalid header line/],
    ['a name with a space', 'HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n', /invalid header name/],
    ['two lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc', /Content-Length/],
    ['a negative length', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', /Content-Length/],
    ['a bad chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /chunk size/],
    ['chunk data too long', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n', /CRLF/],
    ['gzip, chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', /transfer coding/],
    ['101', 'HTTP/1.1 101 Switching Protocols\r\n\r\n', /switched protocols/],
    ['bytes after the response', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy', /after the response/],
  ];
  for (const [what, wire, re] of bad)
    it(`refuses ${what}`, () => {
      const p = new ResponseParser({ head: () => {}, body: () => {}, end: () => {} });
      expect(() => p.feed(b(wire))).to.throw(HttpProtocolError, re);
    });

  it('takes a 60 KiB head that comes one byte per read', () => {
    const wire = b(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(60 << 10)}\r\nContent-Length: 2\r\n\r\nok`);
    const r = parse(
      wire,
      [...Array(wire.length - 1).keys()].map((i) => i + 1),
    );
    expect(r.heads[0].headers.get('x-big')).to.have.length(60 << 10);
    expect(r.body.toString()).to.equal('ok');
  });

  it('refuses a head larger than 64 KiB, however it is split', () => {
    const huge = b(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 << 10)}\r\n\r\n`);
    expect(() => parse(huge)).to.throw(HttpProtocolError, /larger than/);
    expect(() => parse(huge, [100, 40000])).to.throw(HttpProtocolError, /larger than/);
  });

  it('a close before the head or mid-body is an error; between responses it is not', () => {
    expect(() => parse(b('HTTP/1.1 200 OK\r\nContent-Le'), [], true)).to.throw(
      HttpProtocolError,
      /before the response head/,
    );
    expect(() => parse(b('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc'), [], true)).to.throw(
      HttpProtocolError,
      /mid-body/,
    );
    expect(() => parse(b('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx'), [], true)).not.to.throw();
  });
});

describe('reports/http1: requestBytes', () => {
  it('writes one GET with the path as the URL encodes it and the host with its port', () => {
    const u = new URL('http://intranet.example.com:8080/projects/a%2Fb%20c/status.pdf?x=1');
    expect(requestBytes(u, { 'user-agent': 'xmpp-reports' })).to.equal(
      'GET /projects/a%2Fb%20c/status.pdf?x=1 HTTP/1.1\r\nhost: intranet.example.com:8080\r\nuser-agent: xmpp-reports\r\n\r\n',
    );
  });
  it('refuses a header value with a line break (no header injection)', () => {
    expect(() => requestBytes(new URL('http://h/'), { 'x-requester': 'a@b\r\nx-admin: 1' })).to.throw(
      HttpProtocolError,
    );
  });
});

describe('reports/http1: Http1Pool', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  /** A TCP server answering each request with `answer(n)` (n counts requests per connection). */
  async function raw(answer: (sock: Socket, req: string, n: number) => void): Promise<{ port: number; conns: number }> {
    const state = { port: 0, conns: 0 };
    const server: Server = createServer((sock) => {
      state.conns++;
      let n = 0;
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        let i;
        while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
          const req = buf.slice(0, i);
          buf = buf.slice(i + 4);
          answer(sock, req, n++);
        }
      });
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    state.port = (server.address() as AddressInfo).port;
    closers.push(() => server.close());
    return state;
  }

  const pool = () => {
    const p = new Http1Pool({ idleMs: 5000, maxIdle: 4 });
    closers.push(() => p.close());
    return p;
  };
  const signal = () => new AbortController().signal;
  const all = async (body: AsyncIterable<Buffer>) => {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c);
    return parts;
  };

  it('reuses a kept-alive connection, and the chunks of one body stay intact while later ones are read', async () => {
    const bodies = [randomBytes(3 << 20), randomBytes(100 << 10), randomBytes(5 << 20)];
    const s = await raw((sock, req, n) => {
      const body = bodies[Number(/GET \/(\d)/.exec(req)?.[1])];
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      sock.write(body);
      void n;
    });
    const p = pool();
    const held: Buffer[][] = [];
    for (const i of [0, 1, 2, 0]) {
      const r = await p.get(new URL(`http://127.0.0.1:${s.port}/${i}`), {}, signal());
      expect(r.head.status).to.equal(200);
      held.push(await all(r.body as AsyncIterable<Buffer>)); // kept, not copied: the slabs must not be written again
    }
    const digest = (x: Buffer) => createHash('sha256').update(x).digest('hex');
    expect(held.map((h) => digest(Buffer.concat(h)))).to.deep.equal([0, 1, 2, 0].map((i) => digest(bodies[i])));
    expect(s.conns).to.equal(1);
  });

  it('reads into its slabs again once the chunks are given back, and bodies stay intact', async () => {
    const bodies = [randomBytes(6 << 20), randomBytes(6 << 20)];
    const s = await raw((sock, req) => {
      const body = bodies[Number(/GET \/(\d)/.exec(req)?.[1])];
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      sock.write(body);
    });
    const slabs = new SlabPool(1 << 20, 16);
    const p = new Http1Pool({ idleMs: 5000, maxIdle: 4, slabs });
    closers.push(() => p.close());
    const seen: Set<ArrayBufferLike>[] = [];
    const got: Buffer[] = [];
    for (const i of [0, 1]) {
      const r = await p.get(new URL(`http://127.0.0.1:${s.port}/${i}`), {}, signal());
      const parts: Buffer[] = [];
      const used = new Set<ArrayBufferLike>();
      for await (const c of r.body as AsyncIterable<Buffer>) {
        used.add(c.buffer);
        parts.push(Buffer.from(c)); // copied: the chunk itself is done with
        giveBack(c);
      }
      seen.push(used);
      got.push(Buffer.concat(parts));
    }
    expect(got[0].equals(bodies[0]) && got[1].equals(bodies[1])).to.equal(true);
    // 6 MiB through 1 MiB slabs given back at once: the same two or three, for both bodies
    expect(seen[0].size).to.be.at.most(3);
    expect([...seen[1]].every((b) => seen[0].has(b))).to.equal(true);
  });

  it('a chunk still held keeps its slab from being read into again, while given-back ones are', async () => {
    const body = randomBytes(8 << 20);
    const s = await raw((sock) => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      sock.write(body);
    });
    const slabs = new SlabPool(1 << 20, 16);
    const p = new Http1Pool({ idleMs: 5000, maxIdle: 4, slabs });
    closers.push(() => p.close());
    const copies: Buffer[] = [];
    const held: { view: Buffer; copy: Buffer }[] = [];
    for (const round of [0, 1, 2]) {
      const r = await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal());
      let k = 0;
      for await (const c of r.body as AsyncIterable<Buffer>) {
        copies.push(Buffer.from(c));
        // every third chunk of the first round is kept as it is; the rest go back at once
        if (round === 0 && k++ % 3 === 0) held.push({ view: c, copy: Buffer.from(c) });
        else giveBack(c);
      }
    }
    const all = Buffer.concat(copies);
    for (let i = 0; i < 3; i++)
      expect(all.subarray(i * body.length, (i + 1) * body.length).equals(body)).to.equal(true);
    expect(held.length).to.be.at.least(2);
    // two more bodies went through recycled slabs: the kept chunks were not written over
    for (const h of held) expect(h.view.equals(h.copy)).to.equal(true);
  });

  it('pauses the socket while the reader is behind (back-pressure), and the body still arrives whole', async () => {
    const body = randomBytes(16 << 20);
    let flushedAll = false;
    const s = await raw((sock) => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      sock.write(body, () => (flushedAll = true));
    });
    const r = await pool().get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal());
    await new Promise((res) => setTimeout(res, 300));
    // 16 MiB do not fit in the two kernels' buffers and our 1 MiB of unread chunks: the server is held
    expect(flushedAll).to.equal(false);
    const got = Buffer.concat(await all(r.body as AsyncIterable<Buffer>));
    expect(got.equals(body)).to.equal(true);
  });

  it('a kept-alive connection the server closed meanwhile is retried once on a new one', async () => {
    const s = await raw((sock) => {
      sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'); // says keep-alive, then closes
    });
    const p = pool();
    const one = await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal());
    expect(Buffer.concat(await all(one.body as AsyncIterable<Buffer>)).toString()).to.equal('ok');
    await new Promise((res) => setTimeout(res, 50)); // the FIN has arrived: the idle connection is gone
    const two = await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal());
    expect(Buffer.concat(await all(two.body as AsyncIterable<Buffer>)).toString()).to.equal('ok');
    expect(s.conns).to.equal(2);
  });

  it('a reused connection that the server drops as the request arrives is retried, once', async () => {
    const s = await raw((sock, _req, n) => {
      if (n === 0) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx');
      else sock.destroy(); // the race a keep-alive timeout makes
    });
    const p = pool();
    await all((await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal())).body as AsyncIterable<Buffer>);
    const r = await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal());
    expect(Buffer.concat(await all(r.body as AsyncIterable<Buffer>)).toString()).to.equal('x');
    expect(s.conns).to.equal(2);
  });

  it('a connection cut mid-body fails the body (nothing half-read passes as whole)', async () => {
    const s = await raw((sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some');
      setTimeout(() => sock.destroy(), 20);
    });
    const r = await pool().get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal());
    let err: Error | undefined;
    await all(r.body as AsyncIterable<Buffer>).catch((e: Error) => (err = e));
    expect(err?.message).to.match(/closed mid-body|hang up/);
  });

  it('malformed responses reject with the protocol error and the connection is not kept', async () => {
    const s = await raw((sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx'));
    const p = pool();
    let err: Error | undefined;
    await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal()).catch((e: Error) => (err = e));
    expect(err).to.be.instanceOf(HttpProtocolError);
    await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal()).catch(() => {});
    expect(s.conns).to.equal(2);
  });

  it('an abort before the head rejects with AbortError; during the body it fails the body; the pool goes on', async () => {
    let answer = true;
    const s = await raw((sock) => {
      if (answer) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    });
    const p = pool();
    const ac = new AbortController();
    const r = await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, ac.signal);
    const reading = all(r.body as AsyncIterable<Buffer>).catch((e: Error) => e.name);
    ac.abort();
    expect(await reading).to.equal('AbortError');
    answer = false;
    const ac2 = new AbortController();
    const pending = p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, ac2.signal).catch((e: Error) => e.name);
    setTimeout(() => ac2.abort(), 20);
    expect(await pending).to.equal('AbortError');
    answer = true;
    const ok = await p.get(new URL(`http://127.0.0.1:${s.port}/`), {}, signal());
    expect(ok.head.status).to.equal(200);
  });

  it('a refused connection rejects with its errno code', async () => {
    const server = createHttpServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r));
    let err: NodeJS.ErrnoException | undefined;
    await pool()
      .get(new URL(`http://127.0.0.1:${port}/`), {}, signal())
      .catch((e: NodeJS.ErrnoException) => (err = e));
    expect(err?.code).to.equal('ECONNREFUSED');
  });
});
