import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ProjectNames, cleanName } from '../../../src/reports/metadata.js';

describe('reports/metadata (project names for vCards)', () => {
  let server: Server;
  let base = '';
  const hits: Array<{ url: string; auth: string | undefined }> = [];
  let delayMs = 0;
  before(async () => {
    server = createServer((req, res) => {
      hits.push({ url: req.url ?? '', auth: req.headers.authorization });
      const m = /^\/meta\/([^/]+)\.json$/.exec(req.url ?? '');
      const id = decodeURIComponent(m?.[1] ?? '');
      setTimeout(() => {
        if (id === '1234')
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: ' Apollo\n(moon) ' }));
        else if (id === 'bad') res.writeHead(200).end('not json');
        else if (id === 'noname') res.writeHead(200).end('{"title": 3}');
        else res.writeHead(404).end();
      }, delayMs);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    hits.length = 0;
    delayMs = 0;
  });

  const names = (now?: () => number) =>
    new ProjectNames({
      urlTemplate: `${base}/meta/{project}.json`,
      authHeader: 'Bearer t',
      basicUser: '',
      basicPassword: '',
      timeoutMs: 2000,
      ...(now ? { now } : {}),
    });

  it('reads {name} with the intranet credentials, cleaned to one line, and caches it', async () => {
    const n = names();
    expect(await n.get('1234', 1000)).to.equal('Apollo (moon)');
    expect(await n.get('1234', 1000)).to.equal('Apollo (moon)');
    expect(hits).to.deep.equal([{ url: '/meta/1234.json', auth: 'Bearer t' }]);
  });

  it('has no name for 404, bad JSON or a missing name, and remembers misses for a while', async () => {
    let t = 0;
    const n = names(() => t);
    expect(await n.get('404', 1000)).to.equal(undefined);
    expect(await n.get('bad', 1000)).to.equal(undefined);
    expect(await n.get('noname', 1000)).to.equal(undefined);
    expect(await n.get('404', 1000)).to.equal(undefined);
    expect(hits).to.have.length(3);
    t += 301_000;
    await n.get('404', 1000);
    expect(hits).to.have.length(4);
  });

  it('never waits longer than asked; a slow answer fills the cache for next time', async () => {
    delayMs = 300;
    const n = names();
    const t0 = Date.now();
    expect(await n.get('1234', 50)).to.equal(undefined);
    expect(Date.now() - t0).to.be.below(250);
    await new Promise((r) => setTimeout(r, 400));
    expect(await n.get('1234', 0)).to.equal('Apollo (moon)');
    expect(hits).to.have.length(1);
  });

  it('percent-encodes the project id into the URL', async () => {
    await names().get('a b', 1000);
    expect(hits[0].url).to.equal('/meta/a%20b.json');
  });

  it('cleans names: control characters, length, non-strings', () => {
    expect(cleanName('x'.repeat(200))!.length).to.equal(80);
    expect(cleanName('\u0000\t ')).to.equal(undefined);
    expect(cleanName(42)).to.equal(undefined);
  });
});
