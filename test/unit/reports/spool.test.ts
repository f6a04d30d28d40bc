import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { ReportError } from '../../../src/reports/source.js';
import { Spool } from '../../../src/reports/spool.js';

/** Rejects if p takes longer than ms: no test may hang. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await within(p, 5000);
  } catch (err) {
    return err;
  }
  expect.fail('expected a rejection');
}

const hex = (algo: string, b: Buffer) => createHash(algo).update(b).digest('hex');

describe('reports/spool', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'spool-test-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  let n = 0;
  const freshDir = () => join(root, `dir-${n++}`);

  describe('open', () => {
    it('creates the directory (and its parents), private to the owner', async () => {
      const dir = join(freshDir(), 'a', 'b');
      const spool = await Spool.open(dir);
      expect(spool.dir).to.equal(dir);
      const st = await stat(dir);
      expect(st.isDirectory()).to.equal(true);
      expect(st.mode & 0o777).to.equal(0o700);
    });

    it('removes leftover spool-* files and nothing else', async () => {
      const dir = freshDir();
      await mkdir(dir);
      const keep = ['report.pdf', 'myspool-1', 'Spool-UPPER', 'spool', '.spool-hidden', 'notes.txt'];
      const remove = ['spool-0123456789abcdef01234567', 'spool-x', 'spool-'];
      for (const f of [...keep, ...remove]) await writeFile(join(dir, f), f);
      await Spool.open(dir);
      expect((await readdir(dir)).sort()).to.deep.equal([...keep].sort());
    });

    it('opening twice is fine', async () => {
      const dir = freshDir();
      await Spool.open(dir);
      await Spool.open(dir);
      expect(await readdir(dir)).to.deep.equal([]);
    });

    // Regression guard (was a bug): rm(…, { force: true }) without
    // `recursive` throws ERR_FS_EISDIR for a directory, so any directory whose
    // name starts with "spool-" in the spool dir makes Spool.open() - and so
    // the whole component's start - fail. The spool dir may be shared
    // (reports.spoolDir, or another user creating the predictable
    // /tmp/xmpp-reports-<domain>). Leftovers that are not files should be
    // skipped (or removed recursively), not fatal.
    it('a directory named spool-* does not make open() fail', async () => {
      const dir = freshDir();
      await mkdir(join(dir, 'spool-dir'), { recursive: true });
      await Spool.open(dir);
    });

    it('defaultDir is under the OS temp dir and names the domain', () => {
      const d = Spool.defaultDir('reports.example.com');
      expect(d.startsWith(tmpdir())).to.equal(true);
      expect(d).to.include('reports.example.com');
    });
  });

  describe('write', () => {
    let spool: Spool;
    let dir: string;
    before(async () => {
      dir = freshDir();
      spool = await Spool.open(dir);
    });
    afterEach(async () => {
      for (const e of await readdir(dir)) await rm(join(dir, e), { force: true });
    });

    it('streams to a private spool-* file with size, MD5 and SHA-256', async () => {
      const chunks = [randomBytes(10_000), randomBytes(1), randomBytes(70_000)];
      const all = Buffer.concat(chunks);
      const r = await within(spool.write(Readable.from(chunks), 1_000_000), 5000);
      expect(r.size).to.equal(all.length);
      expect(r.md5).to.equal(hex('md5', all));
      expect(r.sha256).to.equal(hex('sha256', all));
      expect(r.path.startsWith(join(dir, 'spool-'))).to.equal(true);
      expect((await readFile(r.path)).equals(all)).to.equal(true);
      expect((await stat(r.path)).mode & 0o777).to.equal(0o600);
      await spool.remove(r.path);
      expect(existsSync(r.path)).to.equal(false);
    });

    it('gives every write its own file', async () => {
      const [a, b] = await within(Promise.all([spool.write(Readable.from([Buffer.from('a')]), 10), spool.write(Readable.from([Buffer.from('b')]), 10)]), 5000);
      expect(a.path).not.to.equal(b.path);
      expect((await readFile(a.path)).toString()).to.equal('a');
      expect((await readFile(b.path)).toString()).to.equal('b');
    });

    it('an empty stream gives an empty file', async () => {
      const r = await within(spool.write(Readable.from([]), 10), 5000);
      expect(r.size).to.equal(0);
      expect(r.md5).to.equal(hex('md5', Buffer.alloc(0)));
      expect(existsSync(r.path)).to.equal(true);
    });

    it('exactly maxBytes is accepted', async () => {
      const r = await within(spool.write(Readable.from([Buffer.alloc(600), Buffer.alloc(400)]), 1000), 5000);
      expect(r.size).to.equal(1000);
    });

    it('too-large while streaming leaves no file', async () => {
      const err = await rejection(spool.write(Readable.from([Buffer.alloc(600), Buffer.alloc(401)]), 1000));
      expect(err).to.be.instanceOf(ReportError);
      expect((err as ReportError).kind).to.equal('too-large');
      expect((err as ReportError).detail).to.deep.equal({ maxBytes: 1000 });
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('too-large stops reading a source that never ends', async () => {
      let pulled = 0;
      const endless = new Readable({
        read() {
          pulled++;
          this.push(Buffer.alloc(1024));
        },
      });
      const err = await rejection(spool.write(endless, 10_000));
      expect((err as ReportError).kind).to.equal('too-large');
      expect(pulled).to.be.below(100);
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('a failing source rejects with its error and leaves no file', async () => {
      const src = new PassThrough();
      const p = spool.write(src, 1_000_000);
      src.write(Buffer.alloc(5000));
      setTimeout(() => src.destroy(new Error('connection reset')), 10);
      const err = await rejection(p);
      expect((err as Error).message).to.equal('connection reset');
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('an abort signal stops the write and leaves no file', async () => {
      const src = new PassThrough(); // never ends
      const ac = new AbortController();
      const p = spool.write(src, 1_000_000, ac.signal);
      src.write(Buffer.alloc(5000));
      setTimeout(() => ac.abort(), 20);
      const err = await rejection(p);
      expect((err as Error).name).to.equal('AbortError');
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('remove() of a missing file is harmless', async () => {
      await spool.remove(join(dir, 'spool-does-not-exist'));
    });
  });
});
