import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FolderSource } from '../../../src/reports/folder-source.js';
import { ReportError, type ReportErrorKind } from '../../../src/reports/source.js';
import { readReport } from '../../support/reports.js';

async function reportError(p: Promise<unknown>, kind: ReportErrorKind): Promise<ReportError> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof ReportError)) throw err;
    expect(err.kind, err.message).to.equal(kind);
    return err;
  }
  expect.fail(`expected a ReportError ${kind}`);
}

const CTX = { requester: 'alice@example.com' };
const SECRET = 'TOP SECRET, outside the report folder';

describe('reports/folder-source', () => {
  // root/
  //   outside.txt, passwd.txt, etc/passwd.txt   files that must never be served
  //   reports/                                  the report folder
  let root: string;
  let folder: string;
  let source: FolderSource;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'folder-source-test-'));
    folder = join(root, 'reports');
    await mkdir(folder);
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'outside.txt'), SECRET);
    await writeFile(join(root, 'passwd.txt'), SECRET);
    await writeFile(join(root, 'etc', 'passwd.txt'), SECRET);
    await writeFile(join(root, '..txt'), SECRET);
    await writeFile(join(folder, '1234.pdf'), 'pdf report of 1234');
    await writeFile(join(folder, '5678.TXT'), 'text report of 5678');
    await writeFile(join(folder, '9999.csv'), 'csv');
    await writeFile(join(folder, '9999.pdf'), 'pdf');
    await writeFile(join(folder, '4242'), 'no extension');
    await writeFile(join(folder, '4343.tar.gz'), 'double extension');
    await writeFile(join(folder, '7777.toolongext'), 'extension of 11 characters');
    await writeFile(join(folder, '8888.p-f'), 'extension with a dash');
    await mkdir(join(folder, '1111.pdf')); // a directory named like a report
    await writeFile(join(folder, 'big.pdf'), Buffer.alloc(2000));
    await utimes(join(folder, '1234.pdf'), new Date('2024-01-02T03:04:05Z'), new Date('2024-01-02T03:04:05Z'));
    source = new FolderSource(folder, { maxBytes: 1000, fileName: 'status-{project}' });
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('finds a report by id with its extension', async () => {
    const r = await source.fetch('1234', CTX);
    try {
      const body = Buffer.from('pdf report of 1234');
      expect(r.project).to.equal('1234');
      expect(r.name).to.equal('status-1234.pdf');
      expect(r.mime).to.equal('application/pdf');
      expect(r.size).to.equal(body.length);
      expect(r.date.toISOString()).to.equal('2024-01-02T03:04:05.000Z');
      expect((await readReport(r)).equals(body)).to.equal(true);
      // read where it lies: no copy
      expect(await r.complete()).to.deep.equal({
        path: join(folder, '1234.pdf'),
        sha256: createHash('sha256').update(body).digest('hex'),
      });
    } finally {
      await r.release();
    }
    expect(existsSync(join(folder, '1234.pdf')), 'the original stays').to.equal(true);
  });

  it('sends the report as it was when fetched, even if it is replaced meanwhile; release() ends reading', async () => {
    const path = join(folder, '6060.pdf');
    await writeFile(path, 'first version');
    const r = await source.fetch('6060', CTX);
    await writeFile(path + '.new', 'second, longer version');
    await rename(path + '.new', path); // how report generators publish a new file
    expect((await readReport(r)).toString()).to.equal('first version');
    await r.release();
    await r.release(); // twice is harmless
    const err = await r.open().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ReportError);
    await rm(path);
  });

  it('lower-cases the offered extension and keeps the MIME type', async () => {
    const r = await source.fetch('5678', CTX);
    await r.release();
    expect(r.name).to.equal('status-5678.txt');
    expect(r.mime).to.equal('text/plain');
  });

  it('takes the first match in name order when several extensions exist', async () => {
    const r = await source.fetch('9999', CTX);
    await r.release();
    expect(r.name).to.equal('status-9999.csv');
  });

  it('matches the name before the last dot', async () => {
    const r = await source.fetch('4343.tar', CTX);
    await r.release();
    expect(r.name).to.equal('status-4343.tar.gz');
    await reportError(source.fetch('4343', CTX), 'not-found');
  });

  it('a missing report is not-found', async () => {
    const err = await reportError(source.fetch('0000', CTX), 'not-found');
    expect(err.message).to.include('0000');
  });

  it('a file without an extension, or with an odd one, is not a report', async () => {
    await reportError(source.fetch('4242', CTX), 'not-found');
    await reportError(source.fetch('7777', CTX), 'not-found');
    await reportError(source.fetch('8888', CTX), 'not-found');
  });

  it('a directory named like a report is not-found', async () => {
    await reportError(source.fetch('1111', CTX), 'not-found');
  });

  it('ids that look like paths never read outside the folder', async () => {
    const ids = [
      '../outside',
      '../passwd',
      '../etc/passwd',
      '..',
      '.',
      '',
      '1234/..',
      '/',
      `${root}/outside`,
      '..\\outside',
      '../reports/1234',
      './1234',
      '1234/',
      '1234.pdf/..',
      '%2e%2e/outside',
      '\0',
    ];
    for (const id of ids) {
      let body: Buffer | undefined;
      try {
        const r = await source.fetch(id, CTX);
        body = await readReport(r);
        await r.release();
      } catch (err) {
        expect(err, `id ${JSON.stringify(id)}`).to.be.instanceOf(ReportError);
        expect((err as ReportError).kind, `id ${JSON.stringify(id)}`).to.equal('not-found');
        continue;
      }
      expect(body.toString(), `id ${JSON.stringify(id)}`).not.to.include('SECRET');
      expect.fail(`id ${JSON.stringify(id)} returned a report`);
    }
  });

  it('a file bigger than maxBytes is too-large and not spooled', async () => {
    const err = await reportError(source.fetch('big', CTX), 'too-large');
    expect(err.detail).to.include({ size: 2000, maxBytes: 1000 });
  });

  it('a report folder that does not exist is unavailable', async () => {
    const s = new FolderSource(join(root, 'no-such-folder'), { maxBytes: 1000, fileName: 'status-{project}' });
    await reportError(s.fetch('1234', CTX), 'unavailable');
  });

  it('uses the configured file name template', async () => {
    const s = new FolderSource(folder, { maxBytes: 1000, fileName: 'Projekt {project} Status' });
    const r = await s.fetch('1234', CTX);
    await r.release();
    expect(r.name).to.equal('Projekt 1234 Status.pdf');
  });

  it('a symlink in the folder that points at a directory is not-found', async () => {
    const link = join(folder, '3333.pdf');
    await symlink(join(root, 'etc'), link);
    try {
      await reportError(source.fetch('3333', CTX), 'not-found');
    } finally {
      await rm(link, { force: true });
    }
  });
});
