import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, deflateSync } from 'node:zlib';
import { httpGet } from '../../../src/reports/http-get.js';

async function listen(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; base: string }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function text(body: NodeJS.ReadableStream): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c as Buffer);
  return Buffer.concat(parts).toString();
}

describe('reports/http-get', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });
  const opts = (headers: Record<string, string> = {}) => ({
    headers,
    signal: new AbortController().signal,
    maxRedirects: 5,
  });

  it('keeps credentials on a redirect within the origin and drops them when it leaves it', async () => {
    const seen: Record<string, IncomingHttpHeaders> = {};
    const b = await listen((req, res) => {
      seen['b' + req.url] = req.headers;
      res.end('other');
    });
    const a = await listen((req, res) => {
      seen['a' + req.url] = req.headers;
      if (req.url === '/start') return void res.writeHead(302, { location: '/same' }).end();
      if (req.url === '/same') return void res.writeHead(307, { location: `${b.base}/away` }).end();
      res.end('?');
    });
    servers.push(a.server, b.server);
    const res = await httpGet(`${a.base}/start`, opts({ authorization: 'Bearer s3cret', 'x-requester': 'u@e' }));
    expect(await text(res.body)).to.equal('other');
    expect(res.url).to.equal(`${b.base}/away`);
    expect(seen['a/same'].authorization).to.equal('Bearer s3cret');
    expect(seen['b/away'].authorization).to.equal(undefined);
    expect(seen['b/away']['x-requester']).to.equal('u@e');
  });

  it('decodes br and deflate bodies', async () => {
    const s = await listen((req, res) => {
      if (req.url === '/br')
        return void res.writeHead(200, { 'content-encoding': 'br' }).end(brotliCompressSync('brotli!'));
      res.writeHead(200, { 'content-encoding': 'deflate' }).end(deflateSync('deflated!'));
    });
    servers.push(s.server);
    expect(await text((await httpGet(`${s.base}/br`, opts())).body)).to.equal('brotli!');
    expect(await text((await httpGet(`${s.base}/deflate`, opts())).body)).to.equal('deflated!');
  });

  it('refuses a URL with credentials in it, and a redirect to another protocol', async () => {
    let failed = '';
    await httpGet('http://user:pw@127.0.0.1:1/x', opts()).catch((e: Error) => (failed = e.message));
    expect(failed)
      .to.match(/credentials/)
      .and.not.match(/pw/);
    const s = await listen((_req, res) => res.writeHead(301, { location: 'file:///etc/passwd' }).end());
    servers.push(s.server);
    failed = '';
    await httpGet(`${s.base}/`, opts()).catch((e: Error) => (failed = e.message));
    expect(failed).to.match(/unsupported protocol file:/);
  });

  it('an abort before the answer rejects with AbortError', async () => {
    const s = await listen(() => {}); // never answers
    servers.push(s.server);
    const ac = new AbortController();
    const p = httpGet(`${s.base}/`, { headers: {}, signal: ac.signal, maxRedirects: 0 });
    setTimeout(() => ac.abort(), 20);
    let name = '';
    await p.catch((e: Error) => (name = e.name));
    expect(name).to.equal('AbortError');
  });

  it("bodies read into the connections' slabs arrive byte-exact, at once, to slow readers and over a reused connection", async () => {
    // Bodies of several MiB, three connections at once: each read lands in its connection's slab.
    const bodies = [0, 1, 2].map((i) => randomBytes((3 << 20) + i * 12345));
    const ports: number[] = [];
    const s = await listen((req, res) => {
      ports.push(req.socket.remotePort ?? 0);
      const body = bodies[Number(req.url?.slice(1))];
      res.writeHead(200, { 'content-length': body.length });
      // in 64 KiB writes, as a file is streamed
      let at = 0;
      const more = (): void => {
        while (at < body.length) {
          const ok = res.write(body.subarray(at, at + (64 << 10)));
          at += 64 << 10;
          if (!ok) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    servers.push(s.server);
    const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const read = async (i: number, slow: boolean): Promise<string> => {
      const res = await httpGet(`${s.base}/${i}`, opts());
      const h = createHash('sha256');
      for await (const c of res.body as AsyncIterable<Buffer>) {
        h.update(c);
        // a reader that falls behind: the socket is paused meanwhile
        if (slow) await new Promise((r) => setTimeout(r, 2));
      }
      return h.digest('hex');
    };
    expect(await Promise.all([read(0, false), read(1, true), read(2, false)])).to.deep.equal(bodies.map(digest));
    // one after the other: the kept-alive connection is reused
    ports.length = 0;
    expect(await read(0, false)).to.equal(digest(bodies[0]));
    expect(await read(2, true)).to.equal(digest(bodies[2]));
    expect(ports[1]).to.equal(ports[0]);
  });
});
