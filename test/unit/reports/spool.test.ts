import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { SlabPool } from '../../../src/reports/slabs.js';
import { ReportError, type ReportReader } from '../../../src/reports/source.js';
import { Spool, WRITE_BATCH, spooledReport, type SpoolFile } from '../../../src/reports/spool.js';
import { feed } from '../../support/reports.js';

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

/** Spools input whole: the path and the final size. */
async function write(
  spool: Spool,
  input: Readable,
  maxBytes: number,
  signal?: AbortSignal,
): Promise<{ path: string; size: number }> {
  const file = spool.begin(input, { maxBytes, ...(signal ? { signal } : {}) });
  return { path: file.path, size: await file.done };
}

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

    it('streams to a private spool-* file with its size', async () => {
      const chunks = [randomBytes(10_000), randomBytes(1), randomBytes(70_000)];
      const all = Buffer.concat(chunks);
      const r = await within(write(spool, Readable.from(chunks), 1_000_000), 5000);
      expect(r.size).to.equal(all.length);
      expect(r.path.startsWith(join(dir, 'spool-'))).to.equal(true);
      expect((await readFile(r.path)).equals(all)).to.equal(true);
      expect((await stat(r.path)).mode & 0o777).to.equal(0o600);
      await rm(r.path);
      expect(existsSync(r.path)).to.equal(false);
    });

    it('gives every write its own file', async () => {
      const [a, b] = await within(
        Promise.all([
          write(spool, Readable.from([Buffer.from('a')]), 10),
          write(spool, Readable.from([Buffer.from('b')]), 10),
        ]),
        5000,
      );
      expect(a.path).not.to.equal(b.path);
      expect((await readFile(a.path)).toString()).to.equal('a');
      expect((await readFile(b.path)).toString()).to.equal('b');
    });

    it('an empty stream gives an empty file', async () => {
      const r = await within(write(spool, Readable.from([]), 10), 5000);
      expect(r.size).to.equal(0);
      expect(existsSync(r.path)).to.equal(true);
    });

    it('exactly maxBytes is accepted', async () => {
      const r = await within(write(spool, Readable.from([Buffer.alloc(600), Buffer.alloc(400)]), 1000), 5000);
      expect(r.size).to.equal(1000);
    });

    it('too-large while streaming leaves no file', async () => {
      const err = await rejection(write(spool, Readable.from([Buffer.alloc(600), Buffer.alloc(401)]), 1000));
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
      const err = await rejection(write(spool, endless, 10_000));
      expect((err as ReportError).kind).to.equal('too-large');
      expect(pulled).to.be.below(100);
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('a failing source rejects with its error and leaves no file', async () => {
      const src = new PassThrough();
      const p = write(spool, src, 1_000_000);
      src.write(Buffer.alloc(5000));
      setTimeout(() => src.destroy(new Error('connection reset')), 10);
      const err = await rejection(p);
      expect((err as Error).message).to.equal('connection reset');
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('an abort signal stops the write and leaves no file', async () => {
      const src = new PassThrough(); // never ends
      const ac = new AbortController();
      const p = write(spool, src, 1_000_000, ac.signal);
      src.write(Buffer.alloc(5000));
      setTimeout(() => ac.abort(), 20);
      const err = await rejection(p);
      expect((err as Error).name).to.equal('AbortError');
      expect(await readdir(dir)).to.deep.equal([]);
    });
  });

  describe('begin: read while it is written', () => {
    let dir: string;
    let spool: Spool;
    beforeEach(async () => {
      dir = freshDir();
      spool = await Spool.open(dir);
    });

    const readAt = async (f: SpoolFile, pos: number, len: number) => {
      const r = await f.open();
      const buf = Buffer.alloc(len);
      try {
        const n = await within(r.read(buf, 0, len, pos), 3000);
        return buf.subarray(0, n);
      } finally {
        await r.close();
      }
    };

    it('a read gives what has arrived, waits for what has not, and 0 at the end', async () => {
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 100, expectedSize: 6 });
      src.write('abc');
      expect((await readAt(file, 0, 6)).toString()).to.equal('abc');
      const r = await file.open();
      const buf = Buffer.alloc(3);
      const later = r.read(buf, 0, 3, 3); // beyond what is written: waits
      let settled = false;
      void later.then(() => (settled = true));
      await new Promise((res) => setTimeout(res, 30));
      expect(settled).to.equal(false);
      src.end('def');
      expect(await within(later, 3000)).to.equal(3);
      expect(buf.toString()).to.equal('def');
      expect(await within(r.read(buf, 0, 3, 6), 3000)).to.equal(0);
      await r.close();
      expect(await within(file.done, 3000)).to.equal(6);
      await file.remove();
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('a live reader gets bytes from memory before they are on disk, and a late one from the file', async () => {
      const src = new PassThrough();
      // no announced size: spooled to a file (an announced small one would stay in memory only)
      const file = spool.begin(src, { maxBytes: 1 << 20 });
      const r = await file.open();
      src.write('abcd');
      const buf = Buffer.alloc(8);
      // well under a write batch, before the flush timer: nothing on disk yet
      expect(await within(r.read(buf, 0, 4, 0), 3000)).to.equal(4);
      expect(file.written).to.equal(0);
      expect(buf.subarray(0, 4).toString()).to.equal('abcd');
      src.write('ef');
      src.write('gh');
      expect(await within(r.read(buf, 0, 8, 5), 3000)).to.equal(3); // across two chunks, from the middle of one
      expect(buf.subarray(0, 3).toString()).to.equal('fgh');
      src.end();
      expect(await within(file.done, 3000)).to.equal(8);
      await r.close();
      expect((await readAt(file, 2, 8)).toString()).to.equal('cdefgh'); // all on disk now
      await file.remove();
    });

    it('a small report stays in memory for a late reader; a large one is read back from the file', async () => {
      const small = Buffer.alloc(100 << 10, 7);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 8 << 20, expectedSize: small.length });
      src.end(small);
      expect(await within(file.done, 3000)).to.equal(small.length);
      // its size announced and within the keep budget: no file at all
      expect(existsSync(file.path)).to.equal(false);
      expect((await readAt(file, 0, small.length)).equals(small)).to.equal(true);

      const big = randomBytes(2 << 20);
      const src2 = new PassThrough();
      const file2 = spool.begin(src2, { maxBytes: 8 << 20 });
      for (let i = 0; i < big.length; i += 64 << 10) src2.write(big.subarray(i, i + (64 << 10)));
      src2.end();
      expect(await within(file2.done, 3000)).to.equal(big.length);
      expect((await readAt(file2, 0, big.length)).equals(big)).to.equal(true);
      rmSync(file2.path);
      let failed = false;
      await readAt(file2, 0, 1024).catch(() => (failed = true));
      expect(failed, 'the early bytes of a large report come from the file').to.equal(true);
      await file.remove();
      await file2.remove();
    });

    it('a report kept in memory only gets its file when complete() asks for a path, and release() removes it', async () => {
      const body = randomBytes(100 << 10);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 8 << 20, expectedSize: body.length });
      const report = spooledReport(
        { project: 'p', name: 'p.pdf', mime: 'application/pdf', size: body.length, date: new Date() },
        file,
      );
      src.end(body);
      await within(report.arrived, 3000);
      expect(await readdir(dir)).to.deep.equal([]);
      const { path, sha256 } = await within(report.complete(), 3000);
      expect(sha256).to.equal(createHash('sha256').update(body).digest('hex'));
      expect((await readFile(path)).equals(body)).to.equal(true);
      await report.release();
      expect(await readdir(dir)).to.deep.equal([]);
      expect(spool.keptBytes).to.equal(0);
    });

    it('small reports stay in memory only within a budget (16 MiB), which their removal gives back', async () => {
      const body = randomBytes(1 << 20);
      const files: SpoolFile[] = [];
      for (let i = 0; i < 20; i++) {
        const src = new PassThrough();
        const f = spool.begin(src, { maxBytes: 8 << 20, expectedSize: body.length });
        src.end(body);
        expect(await within(f.done, 3000)).to.equal(body.length);
        files.push(f);
      }
      expect(spool.keptBytes).to.equal(16 << 20);
      for (const f of files) rmSync(f.path, { force: true }); // reads from a file fail now
      const fromMemory = await Promise.all(
        files.map((f) =>
          readAt(f, 0, body.length).then(
            (b) => b.equals(body),
            () => false,
          ),
        ),
      );
      expect(fromMemory.filter(Boolean)).to.have.length(16); // the first 16; the rest needed their files
      expect(fromMemory.slice(0, 16).every(Boolean)).to.equal(true);
      for (const f of files) await f.remove();
      expect(spool.keptBytes).to.equal(0);
    });

    it('chunks() hands a live reader views of the buffers that arrived, and nothing once they are only on disk', async () => {
      const src = new PassThrough();
      const a = Buffer.from('abcd');
      const b = Buffer.from('efgh');
      // larger than what the spool keeps in memory whole (1 MiB), so its bytes leave memory once on disk
      const filler = Buffer.alloc(2 << 20, 1);
      const total = 8 + filler.length;
      const file = spool.begin(src, { maxBytes: 4 << 20, expectedSize: total });
      const r = await file.open();
      src.write(a);
      src.write(b);
      const first = await within(r.chunks!(1, 5), 3000);
      if (!first) return expect.fail('the bytes are in memory: chunks() must give them');
      expect(first.map((x) => x.toString())).to.deep.equal(['bcd', 'ef']);
      // no copy: the views share the memory of what was written in
      expect(first[0].buffer).to.equal(a.buffer);
      expect(first[1].buffer).to.equal(b.buffer);
      src.end(filler);
      expect(await within(file.done, 3000)).to.equal(total);
      expect(file.inMemory).to.equal(0);
      expect(await within(r.chunks!(2, 4), 3000)).to.equal(undefined); // on disk only: read() it
      const buf = Buffer.alloc(4);
      expect(await within(r.read(buf, 0, 4, 2), 3000)).to.equal(4);
      expect(buf.toString()).to.equal('cdef');
      expect(await within(r.chunks!(total, 4), 3000)).to.deep.equal([]); // the end
      expect(first.map((x) => x.toString())).to.deep.equal(['bcd', 'ef']); // still what arrived
      await r.close();
      await file.remove();
    });

    it('takes the download on while a batch is written, holding at most two batches in memory', async () => {
      const chunk = 64 << 10;
      const total = 16 << 20;
      let sent = 0;
      let most = 0;
      const at: { file?: SpoolFile } = {}; // the spool file, once begun
      const src = new Readable({
        read() {
          most = Math.max(most, at.file?.inMemory ?? 0);
          if (sent >= total) return void this.push(null);
          sent += chunk;
          this.push(Buffer.alloc(chunk, sent & 0xff));
        },
      });
      const file = (at.file = spool.begin(src, { maxBytes: total, expectedSize: total }));
      expect(await within(file.done, 10000)).to.equal(total);
      // more than one batch at some point: chunks were taken while the one before was on its way to disk
      expect(most).to.be.greaterThan(WRITE_BATCH);
      expect(most).to.be.at.most(2 * WRITE_BATCH + chunk);
      const back = await readFile(file.path);
      expect(back.length).to.equal(total);
      for (let i = 0; i < total / chunk; i++) expect(back[i * chunk]).to.equal((chunk * (i + 1)) & 0xff);
      await file.remove();
    });

    it('fewer bytes than announced fail the reads waiting past them, and leave no file', async () => {
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 100, expectedSize: 10 });
      const r = await file.open();
      const waiting = r.read(Buffer.alloc(4), 0, 4, 6);
      src.end('abcdef');
      const err = await rejection(waiting);
      expect(err).to.be.instanceOf(ReportError);
      expect((err as ReportError).message).to.equal('the intranet sent 6 of the 10 bytes it announced');
      await r.close();
      await rejection(file.done);
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('more bytes than announced fail the spool', async () => {
      const file = spool.begin(Readable.from([Buffer.alloc(6), Buffer.alloc(6)]), { maxBytes: 100, expectedSize: 10 });
      const err = await rejection(file.done);
      expect((err as ReportError).message).to.equal('the intranet sent more than the 10 bytes it announced');
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('describe() words the failure readers see', async () => {
      const src = new PassThrough();
      const file = spool.begin(src, {
        maxBytes: 100,
        describe: (e) => new ReportError('unavailable', `download failed: ${e.message}`),
      });
      src.write('ab');
      const r = await file.open();
      const waiting = r.read(Buffer.alloc(4), 0, 4, 2);
      src.destroy(new Error('socket hang up'));
      expect(((await rejection(waiting)) as Error).message).to.equal('download failed: socket hang up');
      await r.close();
    });

    it('a report kept in memory only ends as a spooled one does: a broken source, too large, an abort, remove()', async () => {
      const broken = new PassThrough();
      const f1 = spool.begin(broken, {
        maxBytes: 100,
        expectedSize: 10,
        describe: (e) => new ReportError('unavailable', `download failed: ${e.message}`),
      });
      broken.write('ab');
      const r1 = await f1.open();
      const waiting = r1.read(Buffer.alloc(4), 0, 4, 2);
      broken.destroy(new Error('socket hang up'));
      expect(((await rejection(waiting)) as Error).message).to.equal('download failed: socket hang up');
      await r1.close();

      const big = new PassThrough();
      const f2 = spool.begin(big, { maxBytes: 4, expectedSize: 4 });
      big.write('abcdef');
      expect(await rejection(f2.done)).to.include({ kind: 'too-large' });
      expect(big.destroyed, 'the source is stopped').to.equal(true);

      const ctl = new AbortController();
      const slow = new PassThrough();
      const f3 = spool.begin(slow, { maxBytes: 100, expectedSize: 10, signal: ctl.signal });
      slow.write('ab');
      ctl.abort();
      expect(((await rejection(f3.done)) as Error).name).to.equal('AbortError');
      expect(slow.destroyed).to.equal(true);

      const never = new PassThrough();
      const f4 = spool.begin(never, { maxBytes: 100, expectedSize: 10 });
      never.write('ab');
      await within(f4.remove(), 3000);
      expect(never.destroyed).to.equal(true);
      expect(spool.keptBytes).to.equal(0);
      expect(await readdir(dir)).to.deep.equal([]);
    });

    it('remove() stops an unfinished download, fails its readers and removes the file', async () => {
      const src = new PassThrough(); // never ends
      const file = spool.begin(src, { maxBytes: 100 });
      src.write('ab');
      const r = await file.open();
      const waiting = rejection(r.read(Buffer.alloc(4), 0, 4, 2));
      await within(file.remove(), 3000);
      await waiting;
      await r.close();
      expect(src.destroyed).to.equal(true);
      expect(await readdir(dir)).to.deep.equal([]);
    });
  });

  describe('a lone reader that reads once (SI): the bytes it passed are let go', () => {
    let spool: Spool;
    let dir: string;
    beforeEach(async () => {
      dir = freshDir();
      spool = await Spool.open(dir);
    });

    /** Reads the whole report as a sender does (chunks() while in memory, read() from the file); the most held unwritten. */
    async function readAll(
      r: Awaited<ReturnType<SpoolFile['open']>>,
      size: number,
      file: SpoolFile,
      pause?: { at: number; until: Promise<void> },
    ): Promise<{ bytes: Buffer; most: number }> {
      const parts: Buffer[] = [];
      let pos = 0;
      let most = 0;
      while (pos < size) {
        if (pause && pos >= pause.at) {
          await pause.until;
          pause = undefined;
        }
        most = Math.max(most, file.inMemory);
        const views = await within(r.chunks!(pos, 1 << 20), 10000);
        if (views) {
          for (const v of views) parts.push(Buffer.from(v));
          pos += views.reduce((n, v) => n + v.length, 0);
        } else {
          const buf = Buffer.alloc(Math.min(1 << 20, size - pos));
          const n = await within(r.read(buf, 0, buf.length, pos), 10000);
          parts.push(buf.subarray(0, n));
          pos += n;
        }
      }
      return { bytes: Buffer.concat(parts), most };
    }

    it('writes none of what arrives after it opened, holds little, and gives every byte in order', async () => {
      const data = randomBytes(24 << 20);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
      const head = data.subarray(0, 1 << 20);
      src.write(head); // arrived before the offer was answered: written as always
      await within(new Promise((r) => setTimeout(r, 50)), 1000);
      const r = await file.open({ once: true });
      const feeding = feed(src, data.subarray(head.length));
      const { bytes, most } = await readAll(r, data.length, file);
      await within(feeding, 10000);
      expect(await within(file.done, 10000)).to.equal(data.length);
      expect(createHash('sha256').update(bytes).digest('hex')).to.equal(
        createHash('sha256').update(data).digest('hex'),
      );
      // the download waited for the reader: never more than 8 MiB (and a chunk) held for it
      expect(most).to.be.at.most((8 << 20) + (64 << 10));
      // on disk: only the first MiB, taken before the reader came
      expect((await stat(file.path)).size).to.equal(head.length);
      // nobody else can have it now: a second reader, a shared request, a path
      expect(file.share()).to.equal(false);
      expect(await rejection(file.open())).to.be.instanceOf(ReportError);
      expect(await rejection(file.onDisk())).to.be.instanceOf(ReportError);
      await r.close();
      await file.remove();
      expect(await readdir(dir)).to.deep.equal([]);
      expect(spool.keptBytes).to.equal(0);
    });

    it('lets nothing go of a report of at most 4 MiB: a request that shares it, and its file, get it whole', async () => {
      const data = randomBytes(3 << 20);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
      const r = await file.open({ once: true });
      const feeding = feed(src, data);
      const { bytes } = await readAll(r, data.length, file);
      await within(feeding, 10000);
      expect(bytes.equals(data)).to.equal(true);
      expect(file.share()).to.equal(true);
      const second = await file.open();
      const again = await readAll(second, data.length, file);
      expect(again.bytes.equals(data)).to.equal(true);
      await within(file.onDisk(), 10000);
      expect((await readFile(file.path)).equals(data)).to.equal(true);
      await r.close();
      await second.close();
      await file.remove();
    });

    it('a request that shares it before anything went keeps every byte: the second reader and the file get it whole', async () => {
      const data = randomBytes(12 << 20);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
      const r = await file.open({ once: true });
      src.write(data.subarray(0, 2 << 20));
      await within(new Promise((res) => setTimeout(res, 50)), 1000);
      expect(file.share()).to.equal(true); // 2 MiB in, nothing let go yet
      const feeding = feed(src, data.subarray(2 << 20));
      const first = await readAll(r, data.length, file);
      await within(feeding, 10000);
      expect(first.bytes.equals(data)).to.equal(true);
      const r2 = await file.open();
      const second = await readAll(r2, data.length, file);
      expect(second.bytes.equals(data)).to.equal(true);
      await within(file.onDisk(), 10000);
      expect((await readFile(file.path)).equals(data)).to.equal(true);
      await r.close();
      await r2.close();
      await file.remove();
    });

    it('a request that shares it before its first reader opens: that reader passes nothing, the second gets it whole', async () => {
      const data = randomBytes(12 << 20);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
      expect(file.share()).to.equal(true); // the second request came while the offers were out
      const r = await file.open({ once: true });
      const feeding = feed(src, data);
      const first = await readAll(r, data.length, file);
      await within(feeding, 10000);
      expect(first.bytes.equals(data)).to.equal(true);
      const r2 = await file.open({ once: true });
      const second = await readAll(r2, data.length, file);
      expect(second.bytes.equals(data)).to.equal(true);
      await within(file.done, 10000); // the last write may still be on its way
      expect((await readFile(file.path)).equals(data)).to.equal(true);
      await r.close();
      await r2.close();
      await file.remove();
    });

    it('a reader that stops: the download goes on into the file after 500 ms held, and the reader catches up from it', async () => {
      const data = randomBytes(32 << 20);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
      const r = await file.open({ once: true });
      let resume!: () => void;
      const until = new Promise<void>((res) => (resume = res));
      const feeding = feed(src, data);
      // the reader stops at 6 MiB: 8 MiB later the download is held back, then goes to the file
      const reading = readAll(r, data.length, file, { at: 6 << 20, until });
      expect(await within(file.done, 10000)).to.equal(data.length); // done while the reader waits
      await within(feeding, 1000);
      expect(file.inMemory).to.equal(0);
      resume();
      const { bytes } = await reading;
      expect(bytes.equals(data)).to.equal(true);
      // what the reader had passed before the hold is not in the file: nobody else can have the report
      expect(file.share()).to.equal(false);
      await r.close();
      await file.remove();
    });

    it('a second reader (not once) alone, or once after another: every byte stays for all', async () => {
      const data = randomBytes(10 << 20);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length });
      const a = await file.open(); // IBB, Jingle: may start over
      const b = await file.open({ once: true });
      const feeding = feed(src, data);
      const [ra, rb] = await Promise.all([readAll(a, data.length, file), readAll(b, data.length, file)]);
      await within(feeding, 10000);
      expect(ra.bytes.equals(data) && rb.bytes.equals(data)).to.equal(true);
      // the readers took the last bytes from memory: the file has them once the last write is done
      await within(file.done, 10000);
      expect((await readFile(file.path)).equals(data)).to.equal(true);
      expect(file.share()).to.equal(true);
      await file.remove();
    });

    it('a download that breaks while passing fails the reader and leaves no file', async () => {
      const data = randomBytes(8 << 20);
      const src = new PassThrough();
      const file = spool.begin(src, { maxBytes: 1 << 30, expectedSize: 16 << 20 });
      const r = await file.open({ once: true });
      const reading = readAll(r, 16 << 20, file);
      reading.catch(() => {});
      for (let at = 0; at < data.length; at += 64 << 10) src.write(data.subarray(at, at + (64 << 10)));
      await within(new Promise((res) => setTimeout(res, 100)), 1000);
      src.destroy(new Error('connection reset'));
      expect(await rejection(reading)).to.be.instanceOf(Error);
      expect(await rejection(file.done)).to.be.instanceOf(Error);
      await file.remove();
      expect(await readdir(dir)).to.deep.equal([]);
      expect(spool.keptBytes).to.equal(0);
    });
  });

  describe('chunks go back to their slabs once nobody holds them (slabs.ts)', () => {
    let spool: Spool;
    beforeEach(async () => {
      spool = await Spool.open(freshDir());
    });

    const CHUNK = 64 << 10;
    /** A report of `size` random bytes being spooled from `src`, and the slab pool its chunks come from. */
    function begin(size: number): { pool: SlabPool; data: Buffer; src: PassThrough; file: SpoolFile } {
      const pool = new SlabPool(CHUNK, 1024);
      const data = randomBytes(size);
      const src = new PassThrough();
      return { pool, data, src, file: spool.begin(src, { maxBytes: 1 << 30, expectedSize: data.length }) };
    }
    /**
     * Writes data into src as http1.ts reads a body: each 64 KiB chunk a view of a slab from `pool`,
     * which is read into again as soon as it is back (so a chunk given back too early is overwritten
     * by a later one). Resolves with how many distinct slabs it used.
     */
    async function feedSlabs(src: PassThrough, data: Buffer, pool: SlabPool): Promise<number> {
      const used = new Set<ArrayBufferLike>();
      for (let off = 0; off < data.length; off += CHUNK) {
        const slab = pool.take();
        used.add(slab.buffer);
        const n = data.copy(slab, 0, off, Math.min(data.length, off + CHUNK));
        const ok = src.write(pool.lend(slab.subarray(0, n)));
        pool.retire(slab); // the next read goes into another slab
        if (!ok) await new Promise((r) => src.once('drain', r));
        else await new Promise((r) => setImmediate(r));
      }
      src.end();
      return used.size;
    }

    /**
     * Reads as S5bSender does: views from chunks(), whose bytes are taken (copied out, as the kernel
     * takes a write) and released only `lag` reads later; read() where chunks() has none.
     * `release: false`: takes every view and releases none (a transfer whose writes never ended).
     */
    async function sendAll(
      r: ReportReader,
      size: number,
      o: { lag?: number; release?: boolean } = {},
    ): Promise<Buffer> {
      const lag = o.lag ?? 2;
      const out: Buffer[] = [];
      const inFlight: { views: Buffer[]; end: number }[] = [];
      const settle = (keep: number) => {
        while (inFlight.length > keep) {
          const w = inFlight.shift()!;
          for (const v of w.views) out.push(Buffer.from(v));
          if (o.release !== false) r.release!(w.end);
        }
      };
      let pos = 0;
      while (pos < size) {
        const views = await within(r.chunks!(pos, 256 << 10), 10000);
        if (!views) {
          settle(0);
          const buf = Buffer.alloc(Math.min(1 << 20, size - pos));
          const n = await within(r.read(buf, 0, buf.length, pos), 10000);
          out.push(buf.subarray(0, n));
          pos += n;
          continue;
        }
        for (const v of views) pos += v.length;
        inFlight.push({ views, end: pos });
        settle(lag);
        await new Promise((res) => setImmediate(res)); // the download goes on meanwhile
      }
      settle(0);
      return Buffer.concat(out);
    }

    it('a lone reader (SI): every chunk comes back after its release, and the slabs are read into again intact', async () => {
      const { pool, data, src, file } = begin(24 << 20);
      const r = await file.open({ once: true });
      const feeding = feedSlabs(src, data, pool);
      const got = await sendAll(r, data.length);
      const slabs = await within(feeding, 10000);
      expect(got.equals(data)).to.equal(true);
      // without give back: 384 slabs, one per chunk; the hold ahead of the reader (8 MiB) and the
      // first 4 MiB (written to the file) set how many are out at once
      expect(slabs).to.be.below(data.length / CHUNK - 100);
      await r.close();
      await file.remove();
      expect(pool.idle).to.equal(slabs);
    });

    it('two readers of a shared report: a chunk comes back only when both are past it', async () => {
      const { pool, data, src, file } = begin(12 << 20);
      expect(file.share()).to.equal(true);
      const a = await file.open({ once: true });
      const b = await file.open();
      const feeding = feedSlabs(src, data, pool);
      const [ga, gb] = await Promise.all([sendAll(a, data.length, { lag: 1 }), sendAll(b, data.length, { lag: 6 })]);
      await within(feeding, 10000);
      expect(ga.equals(data)).to.equal(true);
      expect(gb.equals(data)).to.equal(true);
      await a.close();
      await b.close();
      await within(file.done, 10000);
      expect((await readFile(file.path)).equals(data)).to.equal(true);
      await file.remove();
    });

    it('a reader that closes holding views it never released: nothing of that report is read into again', async () => {
      const { pool, data, src, file } = begin(12 << 20);
      const r = await file.open({ once: true });
      const feeding = feedSlabs(src, data, pool);
      // takes views and never releases them: 12 MiB of them would be kept, so the file stops recycling
      const got = await sendAll(r, data.length, { release: false, lag: 1 << 20 });
      const slabs = await within(feeding, 10000);
      expect(got.equals(data)).to.equal(true);
      await r.close();
      await file.remove();
      expect(slabs).to.equal(data.length / CHUNK);
      expect(pool.idle).to.equal(0);
    });

    it('a small report kept in memory: its chunks come back when it is released, not before', async () => {
      const { pool, data, src, file } = begin(512 << 10);
      const r = await file.open({ once: true });
      const feeding = feedSlabs(src, data, pool);
      const got = await sendAll(r, data.length, { lag: 0 });
      expect(await within(feeding, 10000)).to.equal(8);
      expect(got.equals(data)).to.equal(true);
      await r.close();
      expect(pool.idle).to.equal(0); // the report is still held whole
      await file.remove();
      expect(pool.idle).to.equal(8);
    });
  });
});
