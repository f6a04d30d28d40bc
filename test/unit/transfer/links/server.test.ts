import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { contentDisposition, linkId, parseRange, safeFileName } from '../../../../src/transfer/links/http.js';
import { LinkServer, type LinkServerOptions } from '../../../../src/transfer/links/server.js';

/** Rejects if p takes longer than ms: no test may hang. */
function within<T>(p: Promise<T>, ms: number, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const start = Date.now();
    const tick = () => {
      if (cond()) resolve(true);
      else if (Date.now() - start > ms) resolve(false);
      else setTimeout(tick, 5);
    };
    tick();
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP request over loopback, no keep-alive; bounded. */
function http(
  port: number,
  path: string,
  o: { method?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return within(
    new Promise<Reply>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.headers, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    }),
    5000,
    `${o.method ?? 'GET'} request`,
  );
}

/** Starts a GET, reads at least `atLeast` bytes, then cuts the connection; returns what arrived. */
function cutDownload(port: number, path: string, atLeast: number): Promise<Buffer> {
  return within(
    new Promise<Buffer>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        let got = 0;
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          got += c.length;
          if (got >= atLeast) {
            res.pause();
            req.destroy();
            resolve(Buffer.concat(chunks));
          }
        });
        res.on('end', () => reject(new Error('the whole file arrived before the cut')));
      });
      req.on('error', () => {});
      req.end();
    }),
    5000,
    'cut download',
  );
}

/** Waits until the server has finished (and counted) every response. */
async function idle(s: LinkServer): Promise<void> {
  expect(await waitFor(() => s.stats().activeResponses === 0, 3000), 'server idle').to.equal(true);
}

function pathOf(url: string): string {
  return new URL(url).pathname;
}

function tokenOf(url: string): string {
  return pathOf(url).split('/').slice(-2)[0];
}

/** Captures log lines, to check the token never appears in them. */
class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.lines.push(chunk.toString('utf8'));
    cb();
  }
}

describe('transfer/links/server (real loopback HTTP)', function () {
  this.timeout(20000);
  let root: string;
  let srcDir: string;
  let stateDir: string;
  let clock: number;
  let sink: LogSink;
  let server: LinkServer | undefined;
  const HOUR = 3600_000;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'link-server-test-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  let n = 0;
  beforeEach(async () => {
    n++;
    srcDir = join(root, `src-${n}`);
    stateDir = join(root, `state-${n}`);
    await mkdir(srcDir);
    clock = Date.parse('2026-01-10T12:00:00Z');
    sink = new LogSink();
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  function options(o: Partial<LinkServerOptions> = {}): LinkServerOptions {
    return {
      bindHost: '127.0.0.1',
      bindPort: 0,
      publicBaseUrl: 'https://reports.example.com/files/',
      stateDir,
      defaultTtlMs: 24 * HOUR,
      defaultMaxDownloads: 5,
      log: pino({ level: 'debug' }, sink),
      now: () => clock,
      sweepIntervalMs: 3600_000, // tests sweep by hand
      ...o,
    };
  }

  async function start(o: Partial<LinkServerOptions> = {}): Promise<LinkServer> {
    server = await within(LinkServer.start(options(o)), 5000, 'start');
    return server;
  }

  let f = 0;
  async function spooled(bytes: Buffer | number, name = 'status-1234.pdf', mime = 'application/pdf') {
    const data = typeof bytes === 'number' ? randomBytes(bytes) : bytes;
    const path = join(srcDir, `spool-${++f}`);
    await writeFile(path, data, { mode: 0o600 });
    return { data, file: { path, name, mime, size: data.length, sha256: sha(data) } };
  }

  async function filesHeld(): Promise<string[]> {
    return (await readdir(join(stateDir, 'files'))).sort();
  }

  describe('pure helpers', () => {
    it('parseRange: a-b, a-, -n, clamping, unsatisfiable, ignored forms', () => {
      expect(parseRange(undefined, 100)).to.deep.equal({ kind: 'none' });
      expect(parseRange('bytes=0-9', 100)).to.deep.equal({ kind: 'range', start: 0, end: 9 });
      expect(parseRange('bytes=10-', 100)).to.deep.equal({ kind: 'range', start: 10, end: 99 });
      expect(parseRange('bytes=-10', 100)).to.deep.equal({ kind: 'range', start: 90, end: 99 });
      expect(parseRange('bytes=-1000', 100)).to.deep.equal({ kind: 'range', start: 0, end: 99 });
      expect(parseRange('bytes=50-5000', 100)).to.deep.equal({ kind: 'range', start: 50, end: 99 });
      expect(parseRange('BYTES = 1-1', 100)).to.deep.equal({ kind: 'range', start: 1, end: 1 });
      expect(parseRange('bytes=99999999999999999999-', 100)).to.deep.equal({ kind: 'unsatisfiable' });
      expect(parseRange('bytes=100-', 100)).to.deep.equal({ kind: 'unsatisfiable' });
      expect(parseRange('bytes=-0', 100)).to.deep.equal({ kind: 'unsatisfiable' });
      expect(parseRange('bytes=0-', 0)).to.deep.equal({ kind: 'unsatisfiable' });
      for (const ignored of [
        'bytes=5-1',
        'bytes=0-1,5-6',
        'items=0-1',
        'bytes=a-b',
        'bytes=',
        'bytes=-',
        'bytes=1-2-3',
        '0-1',
      ]) {
        expect(parseRange(ignored, 100), ignored).to.deep.equal({ kind: 'none' });
      }
    });

    it('contentDisposition quotes safely, with an RFC 8187 UTF-8 form', () => {
      expect(contentDisposition('status-1234.pdf')).to.equal(
        `attachment; filename="status-1234.pdf"; filename*=UTF-8''status-1234.pdf`,
      );
      expect(contentDisposition('a "b" \\c%.pdf')).to.equal(
        `attachment; filename="a _b_ _c_.pdf"; filename*=UTF-8''a%20%22b%22%20%5Cc%25.pdf`,
      );
      expect(contentDisposition("Bericht (ü)*'.pdf")).to.equal(
        `attachment; filename="Bericht (_)*'.pdf"; filename*=UTF-8''Bericht%20%28%C3%BC%29%2A%27.pdf`,
      );
      // one emoji is one placeholder, never half a surrogate pair; lone surrogates do not throw
      expect(contentDisposition('r😀.txt')).to.equal(
        `attachment; filename="r_.txt"; filename*=UTF-8''r%F0%9F%98%80.txt`,
      );
      expect(contentDisposition('x\uD800.txt')).to.contain(`filename*=UTF-8''x%EF%BF%BD.txt`);
    });

    it('safeFileName drops controls and path separators', () => {
      expect(safeFileName('a/b\\c.pdf')).to.equal('a_b_c.pdf');
      expect(safeFileName('x\r\ny\u0000.pdf')).to.equal('xy.pdf');
      expect(safeFileName('..')).to.equal('report');
      expect(safeFileName('  ')).to.equal('report');
    });
  });

  describe('publishing', () => {
    it('hands out URLs under the public base with 256 random bits, and never the same token', async () => {
      const s = await start();
      const { file } = await spooled(1000);
      const tokens = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const p = await s.publish(file);
        expect(p.url.startsWith('https://reports.example.com/files/')).to.equal(true);
        expect(p.url).to.equal(`https://reports.example.com/files/${p.token}/status-1234.pdf`);
        expect(p.token).to.match(/^[A-Za-z0-9_-]{43}$/);
        expect(Buffer.from(p.token, 'base64url').length * 8)
          .to.be.at.least(128)
          .and.to.equal(256);
        expect(p.link)
          .to.equal(linkId(p.token))
          .and.to.match(/^[0-9a-f]{8}$/);
        expect(p.expiresAt.getTime()).to.equal(clock + 24 * HOUR);
        tokens.add(p.token);
      }
      expect(tokens.size).to.equal(40);
      // same content: one file held for all 40 links
      expect(await filesHeld()).to.deep.equal([file.sha256]);
      expect(s.stats()).to.include({ links: 40, files: 1, storedBytes: 1000, published: 40 });
    });

    it('encodes the name in the URL and adds the missing slash to the base', async () => {
      const s = await start({ publicBaseUrl: 'https://proxy.example.com:8443/a/b' });
      const { file } = await spooled(10, 'Bericht #1 ü?.pdf');
      const p = await s.publish(file);
      expect(p.url).to.equal(`https://proxy.example.com:8443/a/b/${p.token}/Bericht%20%231%20%C3%BC%3F.pdf`);
      expect(new URL(p.url).pathname.split('/')).to.have.length(5); // '', a, b, token, name
    });

    it('takes its own copy: the caller may remove its file at once', async () => {
      const s = await start();
      const { data, file } = await spooled(50_000);
      const p = await s.publish(file);
      await rm(file.path);
      const r = await http(s.port, pathOf(p.url));
      expect(r.status).to.equal(200);
      expect(sha(r.body)).to.equal(sha(data));
    });

    it('refuses a file whose size differs, a bad hash, a bad TTL or limit', async () => {
      const s = await start();
      const { file } = await spooled(100);
      await expectRejection(s.publish({ ...file, size: 99 }), /100 bytes, expected 99/);
      await expectRejection(s.publish({ ...file, sha256: 'abc' }), /sha256/);
      await expectRejection(s.publish(file, { ttlMs: 0 }), /ttlMs/);
      await expectRejection(s.publish(file, { ttlMs: Infinity }), /ttlMs/);
      await expectRejection(s.publish(file, { maxDownloads: 1.5 }), /maxDownloads/);
      expect(s.stats().links).to.equal(0);
      expect(await filesHeld()).to.deep.equal([]);
      // the same hash must mean the same content
      await s.publish(file);
      const other = await spooled(101);
      await expectRejection(s.publish({ ...other.file, sha256: file.sha256 }), /held with 100 bytes/);
      expect(s.stats().links).to.equal(1);
    });
  });

  describe('downloads', () => {
    it('GET: the bytes, SHA-256 and headers', async () => {
      const s = await start();
      const { data, file } = await spooled(300_001, 'Status "Q1" ü.pdf');
      const p = await s.publish(file);
      const r = await http(s.port, pathOf(p.url));
      expect(r.status).to.equal(200);
      expect(r.body.length).to.equal(data.length);
      expect(sha(r.body)).to.equal(file.sha256);
      expect(r.headers['content-type']).to.equal('application/pdf');
      expect(r.headers['content-length']).to.equal(String(data.length));
      expect(r.headers['content-disposition']).to.equal(
        `attachment; filename="Status _Q1_ _.pdf"; filename*=UTF-8''Status%20%22Q1%22%20%C3%BC.pdf`,
      );
      expect(r.headers.etag).to.equal(`"${file.sha256}"`);
      expect(r.headers['accept-ranges']).to.equal('bytes');
      expect(r.headers['cache-control']).to.equal('private, no-store');
      expect(r.headers['x-content-type-options']).to.equal('nosniff');
      expect(r.headers['content-range']).to.equal(undefined);
    });

    it('HEAD: the same headers, no body, and it does not count', async () => {
      const s = await start();
      const { file } = await spooled(4096);
      const p = await s.publish(file, { maxDownloads: 1 });
      const get = async () => http(s.port, pathOf(p.url));
      for (let i = 0; i < 3; i++) {
        const h = await http(s.port, pathOf(p.url), { method: 'HEAD' });
        expect(h.status).to.equal(200);
        expect(h.body.length).to.equal(0);
        expect(h.headers['content-length']).to.equal('4096');
        expect(h.headers.etag).to.equal(`"${file.sha256}"`);
        expect(h.headers['content-disposition']).to.contain('status-1234.pdf');
      }
      const h = await http(s.port, pathOf(p.url), { method: 'HEAD', headers: { Range: 'bytes=0-9' } });
      expect(h.status).to.equal(206);
      expect(h.headers['content-range']).to.equal('bytes 0-9/4096');
      expect((await get()).status).to.equal(200);
      await idle(s);
      expect((await get()).status).to.equal(404);
    });

    it('Range: a-b, a-, -n, clamped end, 416, multiple ranges and If-Range', async () => {
      const s = await start();
      const { data, file } = await spooled(10_000);
      const p = await s.publish(file, { maxDownloads: 0 });
      const path = pathOf(p.url);
      const ranged = async (range: string, extra: Record<string, string> = {}) =>
        http(s.port, path, { headers: { Range: range, ...extra } });

      let r = await ranged('bytes=100-199');
      expect(r.status).to.equal(206);
      expect(r.headers['content-range']).to.equal('bytes 100-199/10000');
      expect(r.headers['content-length']).to.equal('100');
      expect(r.body.equals(data.subarray(100, 200))).to.equal(true);

      r = await ranged('bytes=9000-');
      expect(r.status).to.equal(206);
      expect(r.headers['content-range']).to.equal('bytes 9000-9999/10000');
      expect(r.body.equals(data.subarray(9000))).to.equal(true);

      r = await ranged('bytes=-250');
      expect(r.status).to.equal(206);
      expect(r.headers['content-range']).to.equal('bytes 9750-9999/10000');
      expect(r.body.equals(data.subarray(9750))).to.equal(true);

      r = await ranged('bytes=9990-20000');
      expect(r.status).to.equal(206);
      expect(r.headers['content-range']).to.equal('bytes 9990-9999/10000');
      expect(r.body.equals(data.subarray(9990))).to.equal(true);

      r = await ranged('bytes=0-0');
      expect(r.status).to.equal(206);
      expect(r.body.equals(data.subarray(0, 1))).to.equal(true);

      for (const bad of ['bytes=10000-', 'bytes=20000-30000', 'bytes=-0']) {
        r = await ranged(bad);
        expect(r.status, bad).to.equal(416);
        expect(r.headers['content-range'], bad).to.equal('bytes */10000');
        expect(r.body.length).to.equal(0);
      }

      for (const whole of ['bytes=0-1,5-6', 'bytes=5-1', 'lines=1-2']) {
        r = await ranged(whole);
        expect(r.status, whole).to.equal(200);
        expect(sha(r.body), whole).to.equal(file.sha256);
      }

      r = await ranged('bytes=0-9', { 'If-Range': `"${file.sha256}"` });
      expect(r.status).to.equal(206);
      r = await ranged('bytes=0-9', { 'If-Range': '"0000"' });
      expect(r.status).to.equal(200);
      expect(r.body.length).to.equal(10_000);
    });

    it('a cut download resumes with Range and counts once: maxDownloads 1 still lets it finish', async () => {
      const s = await start();
      const { data, file } = await spooled(8 * 1024 * 1024);
      const p = await s.publish(file, { maxDownloads: 1 });
      const path = pathOf(p.url);
      const head = await cutDownload(s.port, path, 100_000);
      expect(await waitFor(() => s.stats().activeResponses === 0, 5000), 'server noticed the cut').to.equal(true);
      expect(s.stats().downloads).to.equal(0);
      expect(head.equals(data.subarray(0, head.length))).to.equal(true);

      const rest = await http(s.port, path, { headers: { Range: `bytes=${head.length}-` } });
      expect(rest.status).to.equal(206);
      expect(rest.headers['content-range']).to.equal(`bytes ${head.length}-${data.length - 1}/${data.length}`);
      const whole = Buffer.concat([head, rest.body]);
      expect(whole.length).to.equal(data.length);
      expect(sha(whole)).to.equal(file.sha256);
      // counted when the server's response completes, just after the client saw its end
      await idle(s);
      expect(s.stats().downloads).to.equal(1);
      expect((await http(s.port, path)).status).to.equal(404); // exhausted now
      expect(await filesHeld()).to.deep.equal([]); // its only link is gone, so is the file
    });

    it('ranges that stop short of the end do not count; full GETs do, up to the limit', async () => {
      const s = await start();
      const { file } = await spooled(1000);
      const p = await s.publish(file, { maxDownloads: 2 });
      const path = pathOf(p.url);
      for (let i = 0; i < 5; i++)
        expect((await http(s.port, path, { headers: { Range: 'bytes=0-499' } })).status).to.equal(206);
      expect(s.stats().downloads).to.equal(0);
      expect((await http(s.port, path)).status).to.equal(200);
      expect(await waitFor(() => s.stats().downloads === 1, 3000)).to.equal(true);
      expect((await http(s.port, path, { headers: { Range: 'bytes=500-' } })).status).to.equal(206);
      expect(await waitFor(() => s.stats().downloads === 2, 3000)).to.equal(true);
      expect((await http(s.port, path)).status).to.equal(404);
      expect((await http(s.port, path, { method: 'HEAD' })).status).to.equal(404);
    });

    it('serves an empty file', async () => {
      const s = await start();
      const { file } = await spooled(Buffer.alloc(0), 'empty.txt', 'text/plain');
      const p = await s.publish(file);
      const r = await http(s.port, pathOf(p.url));
      expect(r.status).to.equal(200);
      expect(r.headers['content-length']).to.equal('0');
      expect(r.body.length).to.equal(0);
      await idle(s);
      expect(s.stats().downloads).to.equal(1);
    });

    it('accepts the path with or without the base prefix, and any name', async () => {
      const s = await start();
      const { file } = await spooled(100);
      const p = await s.publish(file, { maxDownloads: 0 });
      const token = tokenOf(p.url);
      for (const path of [
        `/files/${token}/status-1234.pdf`,
        `/${token}/status-1234.pdf`,
        `/${token}/other-name.bin`,
        `/files/${token}/x?download=1`,
      ]) {
        const r = await http(s.port, path);
        expect(r.status, path).to.equal(200);
        expect(r.headers['content-disposition'], path).to.contain('filename="status-1234.pdf"');
      }
    });

    it('405 for other methods, whatever the path', async () => {
      const s = await start();
      const { file } = await spooled(100);
      const p = await s.publish(file);
      for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
        for (const path of [pathOf(p.url), '/nothing']) {
          const r = await http(s.port, path, { method });
          expect(r.status, `${method} ${path}`).to.equal(405);
          expect(r.headers.allow).to.equal('GET, HEAD');
        }
      }
      expect((await http(s.port, pathOf(p.url))).status).to.equal(200);
    });
  });

  describe('404s reveal nothing', () => {
    it('unknown, expired, exhausted and malformed links get the very same answer', async () => {
      const s = await start();
      const { file } = await spooled(500);
      const expiring = await s.publish(file, { ttlMs: 1000 });
      const exhausted = await s.publish(file, { maxDownloads: 1 });
      const live = await s.publish(file);
      expect((await http(s.port, pathOf(exhausted.url))).status).to.equal(200);
      await idle(s);
      clock += 1000; // expiring's expiry instant: dead from here on

      const unknown = `/files/${randomBytes(32).toString('base64url')}/status-1234.pdf`;
      const token = tokenOf(live.url);
      const paths = [
        unknown,
        pathOf(expiring.url),
        pathOf(exhausted.url),
        '/',
        '/files/',
        `/files/${token}`,
        `/files/${token}/`,
        `/files/${token}/a/b`,
        `/other/${token}/status-1234.pdf`,
        `/files/${token.slice(0, 42)}/status-1234.pdf`,
        `/files/${token}x/status-1234.pdf`,
      ];
      const answers = await Promise.all(paths.map((path) => http(s.port, path)));
      const strip = (r: Reply) => ({
        status: r.status,
        body: r.body.toString('utf8'),
        type: r.headers['content-type'],
        length: r.headers['content-length'],
        cache: r.headers['cache-control'],
        etag: r.headers.etag,
        disp: r.headers['content-disposition'],
      });
      for (let i = 0; i < paths.length; i++) {
        expect(strip(answers[i]), paths[i]).to.deep.equal(strip(answers[0]));
      }
      expect(answers[0].status).to.equal(404);
      expect(answers[0].body.toString()).to.equal('Not Found\n');
      expect(Object.keys(answers[0].headers).sort()).to.deep.equal(Object.keys(answers[1].headers).sort());
      expect((await http(s.port, pathOf(live.url))).status).to.equal(200);
    });
  });

  describe('expiry', () => {
    it('expires at the configured time; the sweep removes the file with the last link to it', async () => {
      const s = await start({ defaultTtlMs: 10 * 60_000 });
      const { file } = await spooled(2000);
      const first = await s.publish(file);
      clock += 5 * 60_000;
      const second = await s.publish(file);
      const other = await spooled(3000);
      const third = await s.publish(other.file, { ttlMs: 60 * 60_000 });
      expect(await filesHeld()).to.deep.equal([file.sha256, other.file.sha256].sort());

      clock += 5 * 60_000 - 1;
      expect((await http(s.port, pathOf(first.url))).status).to.equal(200);
      clock += 1;
      expect((await http(s.port, pathOf(first.url))).status).to.equal(404);
      expect(await s.sweep()).to.equal(1);
      expect(await filesHeld(), 'the second link still needs the file').to.deep.equal(
        [file.sha256, other.file.sha256].sort(),
      );
      expect((await http(s.port, pathOf(second.url))).status).to.equal(200);

      clock += 5 * 60_000;
      expect(await s.sweep()).to.equal(1);
      expect(await filesHeld()).to.deep.equal([other.file.sha256]);
      expect((await http(s.port, pathOf(second.url))).status).to.equal(404);
      expect((await http(s.port, pathOf(third.url))).status).to.equal(200);
      expect(await s.sweep()).to.equal(0);
    });

    it('the timer sweeps on its own', async () => {
      const s = await start({ sweepIntervalMs: 20 });
      const { file } = await spooled(100);
      await s.publish(file, { ttlMs: 1000 });
      clock += 1000;
      expect(await waitFor(() => s.stats().links === 0, 3000)).to.equal(true);
      expect(await waitFor(() => !existsSync(join(stateDir, 'files', file.sha256)), 3000)).to.equal(true);
    });
  });

  describe('state across restarts', () => {
    it('links survive a restart; the state file holds no token', async () => {
      let s = await start();
      const { data, file } = await spooled(70_000);
      const p = await s.publish(file, { maxDownloads: 2 });
      expect((await http(s.port, pathOf(p.url))).status).to.equal(200);
      await s.close();
      server = undefined;

      const state = await readFile(join(stateDir, 'links.json'), 'utf8');
      expect(state).not.to.contain(p.token);
      const saved = JSON.parse(state) as { version: number; links: Array<Record<string, unknown>> };
      expect(saved.version).to.equal(1);
      expect(saved.links).to.have.length(1);
      expect(saved.links[0]).to.include({
        name: 'status-1234.pdf',
        mime: 'application/pdf',
        size: 70_000,
        sha256: file.sha256,
        downloads: 1,
        maxDownloads: 2,
        expiresAt: p.expiresAt.getTime(),
      });

      s = await start();
      const r = await http(s.port, pathOf(p.url));
      expect(r.status).to.equal(200);
      expect(sha(r.body)).to.equal(sha(data));
      await idle(s);
      expect((await http(s.port, pathOf(p.url))).status, 'the count survived too').to.equal(404);
    });

    it('links that expired while down are dropped at start, with their files', async () => {
      let s = await start();
      const a = await spooled(100);
      const b = await spooled(200);
      const short = await s.publish(a.file, { ttlMs: 60_000 });
      const long = await s.publish(b.file, { ttlMs: 10 * 60_000 });
      await s.close();
      server = undefined;
      clock += 2 * 60_000;
      s = await start();
      expect(await filesHeld()).to.deep.equal([b.file.sha256]);
      expect(s.stats().links).to.equal(1);
      expect((await http(s.port, pathOf(short.url))).status).to.equal(404);
      expect((await http(s.port, pathOf(long.url))).status).to.equal(200);
      const saved = JSON.parse(await readFile(join(stateDir, 'links.json'), 'utf8')) as { links: unknown[] };
      expect(saved.links).to.have.length(1);
    });

    it('removes files no link references, and leftover temporary files, but nothing else in the state dir', async () => {
      let s = await start();
      const { file } = await spooled(100);
      const p = await s.publish(file);
      await s.close();
      server = undefined;
      const stray = 'a'.repeat(64);
      await writeFile(join(stateDir, 'files', stray), 'orphan');
      await writeFile(join(stateDir, 'files', '.tmp-0123'), 'half a copy');
      await writeFile(join(stateDir, 'files', 'junk'), 'junk');
      await writeFile(join(stateDir, 'links.json.tmp-abcdef'), '{');
      await writeFile(join(stateDir, 'unrelated.txt'), 'not ours');
      s = await start();
      expect(await filesHeld()).to.deep.equal([file.sha256]);
      expect(existsSync(join(stateDir, 'links.json.tmp-abcdef'))).to.equal(false);
      expect(existsSync(join(stateDir, 'unrelated.txt'))).to.equal(true);
      expect((await http(s.port, pathOf(p.url))).status).to.equal(200);
    });

    it('a link whose file vanished is dropped; an unreadable state file is set aside', async () => {
      let s = await start();
      const { file } = await spooled(100);
      const p = await s.publish(file);
      await s.close();
      server = undefined;
      await rm(join(stateDir, 'files', file.sha256));
      s = await start();
      expect(s.stats().links).to.equal(0);
      expect((await http(s.port, pathOf(p.url))).status).to.equal(404);
      await s.close();
      server = undefined;

      await writeFile(join(stateDir, 'links.json'), '{"links": nope');
      await writeFile(join(stateDir, 'files', file.sha256), 'x'.repeat(100));
      s = await start();
      expect(s.stats().links).to.equal(0);
      expect(await filesHeld()).to.deep.equal([]);
      expect((await readdir(stateDir)).some((e) => e.startsWith('links.json.corrupt-'))).to.equal(true);
    });
  });

  describe('operations', () => {
    it('never logs the token, only its short hash', async () => {
      const s = await start();
      const { file } = await spooled(5000);
      const p = await s.publish(file, { maxDownloads: 1 });
      await http(s.port, pathOf(p.url), { headers: { Range: 'bytes=0-9' } });
      await http(s.port, pathOf(p.url));
      await http(s.port, pathOf(p.url));
      await s.close();
      server = undefined;
      const text = sink.lines.join('');
      expect(text).not.to.contain(p.token);
      expect(text).not.to.contain(p.token.slice(0, 20));
      const events = sink.lines.map((l) => JSON.parse(l) as { msg: string; link?: string });
      for (const msg of ['link published', 'link downloaded', 'link removed']) {
        const e = events.find((x) => x.msg === msg);
        expect(e, msg).to.not.equal(undefined);
        expect(e!.link, msg).to.equal(p.link);
      }
    });

    it('stats count requests, 404s, bytes and downloads', async () => {
      const s = await start();
      const { file } = await spooled(1234);
      const p = await s.publish(file);
      await http(s.port, pathOf(p.url));
      await http(s.port, '/nope');
      await idle(s);
      expect(s.stats()).to.deep.equal({
        links: 1,
        files: 1,
        storedBytes: 1234,
        published: 1,
        downloads: 1,
        requests: 2,
        notFound: 1,
        bytesSent: 1234,
        activeResponses: 0,
      });
    });

    it('close() ends a stalled download after the grace time and refuses new connections; back-pressure holds', async () => {
      const s = await start();
      const { file } = await spooled(32 * 1024 * 1024);
      const p = await s.publish(file);
      const port = s.port;
      // a reader that stops reading: back-pressure keeps the response open
      const req = request({ host: '127.0.0.1', port, path: pathOf(p.url), agent: false }, (res) => {
        res.once('data', () => res.pause());
        res.on('error', () => {});
      });
      req.on('error', () => {});
      req.end();
      try {
        expect(await waitFor(() => s.stats().activeResponses === 1, 3000)).to.equal(true);
        // The reader is stalled: the server reads the file only as fast as the socket drains.
        let last = -1;
        let since = Date.now();
        const steady = await waitFor(() => {
          const sent = s.stats().bytesSent;
          if (sent !== last) {
            last = sent;
            since = Date.now();
          }
          return Date.now() - since >= 250;
        }, 8000);
        expect(steady, 'sending stopped while the reader is stalled').to.equal(true);
        expect(last).to.be.below(file.size / 2);
        const t0 = Date.now();
        await within(s.close(200), 5000, 'close');
        server = undefined;
        expect(Date.now() - t0).to.be.at.least(150);
        expect(s.stats().activeResponses, 'the stalled response was ended').to.equal(0);
        expect(s.stats().downloads).to.equal(0);
        await expectRejection(http(port, '/'), /ECONNREFUSED/);
      } finally {
        req.destroy();
      }
    });

    it('refuses a bad public base URL or a busy port', async () => {
      await expectRejection(LinkServer.start(options({ publicBaseUrl: 'ftp://x/' })), /http/);
      await expectRejection(LinkServer.start(options({ publicBaseUrl: 'https://u:p@x/' })), /credentials/);
      const s = await start();
      await expectRejection(
        LinkServer.start(options({ bindPort: s.port, stateDir: join(root, `busy-${n}`) })),
        /cannot listen/,
      );
    });
  });
});

async function expectRejection(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await within(p, 5000);
  } catch (err) {
    expect((err as Error).message).to.match(re);
    return;
  }
  expect.fail(`expected a rejection matching ${re}`);
}
