import { expect } from 'chai';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RequestJournal, type InFlight } from '../../../src/chat/journal.js';

const entry = (project: string): InFlight => ({
  to: 'alice@example.com/phone',
  from: `${project}@reports.example.com/reports`,
  project,
  file: `status-${project}.pdf`,
  startedAt: '2026-12-01T10:00:00.000Z',
});

describe('chat/journal', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xr-journal-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const files = async () => (await readdir(dir)).filter((n) => n.startsWith('inflight-'));

  it('keeps an entry until its request ends: a later run gets the ones not ended', async () => {
    const killed = new RequestJournal(dir);
    const a = killed.note(entry('1'));
    const b = killed.note(entry('2'));
    expect(await a.written).to.equal(true);
    expect(await b.written).to.equal(true);
    await a.forget();
    const { entries, unreadable } = await new RequestJournal(dir).leftOver();
    expect(entries.map((e) => e.project)).to.deep.equal(['2']);
    expect(unreadable).to.equal(0);
  });

  it('an entry is in the file once written resolves, before its request ends', async () => {
    const j = new RequestJournal(dir);
    const n = j.note(entry('1'));
    expect(await n.written).to.equal(true);
    const [name] = await files();
    expect(await readFile(join(dir, name), 'utf8')).to.include('"project":"1"');
  });

  it('a write that fails says so without throwing, and the next one works again', async () => {
    const j = new RequestJournal(dir);
    const n = j.note(entry('1'));
    expect(await n.written).to.equal(true);
    await n.forget();
    await rm(dir, { recursive: true, force: true }); // the spool folder taken away under the component
    const lost = j.note(entry('2'));
    expect(await lost.written).to.equal(false);
    await lost.name('status-2.pdf');
    await lost.forget();
    await mkdir(dir);
    const back = j.note(entry('3'));
    expect(await back.written).to.equal(true);
    expect((await new RequestJournal(dir).leftOver()).entries.map((e) => e.project)).to.deep.equal(['3']);
  });

  it('the file is emptied when no request is left in it, written into by the next one, and goes at close()', async () => {
    const j = new RequestJournal(dir);
    const n = j.note({ ...entry('7'), file: 'the report of project 7' });
    expect(await n.written).to.equal(true);
    void n.name('status-7.pdf');
    await n.forget(); // after the name's write
    const [name] = await files();
    expect((await stat(join(dir, name))).size).to.equal(0);
    const m = j.note(entry('8'));
    expect(await m.written).to.equal(true);
    expect(await files()).to.deep.equal([name]); // the same file, no new one
    expect(await readFile(join(dir, name), 'utf8')).to.match(/^\{"b":2,"e":\{[^\n]*"project":"8"[^\n]*\}\}\n$/);
    j.close(); // an entry is left: it stays for the next run
    expect((await new RequestJournal(dir).leftOver()).entries.map((e) => e.project)).to.deep.equal(['8']);
    // a request that ends after close() still writes its end: nothing is left for a later run to tell
    const late = new RequestJournal(dir);
    const l = late.note(entry('10'));
    expect(await l.written).to.equal(true);
    late.close();
    await l.forget();
    expect((await new RequestJournal(dir).leftOver()).entries).to.deep.equal([]);
    const k = new RequestJournal(dir);
    const q = k.note(entry('9'));
    expect(await q.written).to.equal(true);
    await q.forget();
    expect(await files()).to.have.length(1);
    k.close(); // nothing left in it: removed
    expect(await files()).to.deep.equal([]);
  });

  it('gives a later run what an earlier one left, once, and never its own running entries', async () => {
    const killed = new RequestJournal(dir);
    await killed.note(entry('1')).written;
    await killed.note(entry('2')).written;
    await writeFile(join(dir, 'spool-abc'), 'a spooled report, not ours');
    const next = new RequestJournal(dir);
    await next.note(entry('3')).written; // running now in the new run
    const { entries, unreadable } = await next.leftOver();
    expect(entries.map((e) => e.project).sort()).to.deep.equal(['1', '2']);
    expect(unreadable).to.equal(0);
    expect((await next.leftOver()).entries).to.deep.equal([]);
    expect((await readdir(dir)).sort()).to.have.length(2); // the new run's file and the spool file
  });

  it('name() puts the file name in: a later run reads the new name', async () => {
    const j = new RequestJournal(dir);
    const n = j.note(entry('8'));
    await n.name('status-8.html');
    const { entries } = await new RequestJournal(dir).leftOver();
    expect(entries.map((e) => e.file)).to.deep.equal(['status-8.html']);
  });

  it('reads the file per request an earlier version wrote (inflight-*.json), and drops unreadable ones', async () => {
    await writeFile(join(dir, 'inflight-abc123-1.json'), JSON.stringify(entry('4')));
    await writeFile(join(dir, 'inflight-garbage.json'), '{not json');
    await writeFile(join(dir, '.inflight-abc123-1.json'), JSON.stringify(entry('4'))); // a rewrite a crash cut short
    const { entries, unreadable } = await new RequestJournal(dir).leftOver();
    expect(entries.map((e) => e.project)).to.deep.equal(['4']);
    expect(unreadable).to.equal(1);
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('a line cut by a power loss is dropped, the lines before it stand', async () => {
    const lines = [{ b: 1, e: entry('5') }, { b: 2, e: entry('6') }, { n: 1, file: 'status-5.html' }, { x: 2 }].map(
      (r) => JSON.stringify(r),
    );
    await writeFile(join(dir, 'inflight-abc123-1.log'), `${lines.join('\n')}\n{"b":3,"e":{"to":"al`);
    const { entries, unreadable } = await new RequestJournal(dir).leftOver();
    expect(entries.map((e) => [e.project, e.file])).to.deep.equal([['5', 'status-5.html']]);
    expect(unreadable).to.equal(1);
  });

  it('a rotation cut short (two files of one run with the same entries) tells each user once', async () => {
    await writeFile(
      join(dir, 'inflight-abc123-1.log'),
      [{ b: 1, e: entry('5') }, { n: 1, file: 'status-5.html' }, { b: 2, e: entry('6') }, { x: 2 }]
        .map((r) => `${JSON.stringify(r)}\n`)
        .join(''),
    );
    await writeFile(
      join(dir, 'inflight-abc123-2.log'),
      `${JSON.stringify({ b: 1, e: { ...entry('5'), file: 'status-5.html' } })}\n`,
    );
    const { entries } = await new RequestJournal(dir).leftOver();
    expect(entries.map((e) => [e.project, e.file])).to.deep.equal([['5', 'status-5.html']]);
  });

  it('a file that grows is rewritten with the live entries only, and stays bounded', async function () {
    this.timeout(20000);
    const j = new RequestJournal(dir);
    const kept = j.note(entry('long'));
    await kept.name('status-long.pdf');
    let most = 0;
    // ~330 bytes a request, the live entry stays: several rotations of 1 MiB
    for (let i = 0; i < 8000; i++) {
      const n = j.note(entry(String(i)));
      await n.written;
      void n.name(`status-${i}.pdf`);
      await n.forget();
      if (i % 500 === 0) for (const f of await files()) most = Math.max(most, (await stat(join(dir, f))).size);
    }
    expect(await files()).to.have.length(1);
    expect(most).to.be.at.most((1 << 20) + 4096);
    const { entries } = await new RequestJournal(dir).leftOver();
    expect(entries.map((e) => [e.project, e.file])).to.deep.equal([['long', 'status-long.pdf']]);
  });
});
