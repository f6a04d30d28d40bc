import { expect } from 'chai';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
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

  it('keeps an entry until its request ends', async () => {
    const j = new RequestJournal(dir);
    const n = j.note(entry('1'));
    expect(await n.written).to.equal(true);
    expect(await readdir(dir)).to.have.length(1);
    await n.forget();
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('gives a later run what an earlier one left, once, and never its own running entries', async () => {
    const killed = new RequestJournal(dir);
    await killed.note(entry('1')).written;
    await killed.note(entry('2')).written;
    await writeFile(join(dir, 'inflight-garbage.json'), '{not json');
    await writeFile(join(dir, 'spool-abc'), 'a spooled report, not ours');
    const next = new RequestJournal(dir);
    await next.note(entry('3')).written; // running now in the new run
    const { entries, unreadable } = await next.leftOver();
    expect(entries.map((e) => e.project).sort()).to.deep.equal(['1', '2']);
    expect(unreadable).to.equal(1);
    expect((await next.leftOver()).entries).to.deep.equal([]);
    expect((await readdir(dir)).sort()).to.have.length(2); // the new run's entry and the spool file
  });

  it('note() writes in the background, and forget() removes the entry after its writes', async () => {
    const j = new RequestJournal(dir);
    const n = j.note({ ...entry('7'), file: 'the report of project 7' });
    expect(await n.written).to.equal(true);
    void n.name('status-7.pdf');
    await n.forget(); // waits for the rewrite, so nothing is left behind
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('note().name() replaces the entry by a rename: a later run reads the new name, and no temporary file', async () => {
    const j = new RequestJournal(dir);
    const n = j.note(entry('8'));
    await n.name('status-8.html');
    expect(await readdir(dir)).to.have.length(1);
    const { entries } = await new RequestJournal(dir).leftOver();
    expect(entries.map((e) => e.file)).to.deep.equal(['status-8.html']);
    await n.forget();
    expect(await readdir(dir)).to.deep.equal([]);
  });
});
