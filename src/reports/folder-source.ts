// Reports from a local folder: <project>.<ext>. The file is found by listing
// the folder and comparing names, so no user text ever becomes a path. It is
// sent from where it lies, not copied: copying (and hashing) 256 MiB took
// longer than sending it (bench item 1).
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ReportError,
  mimeForExtension,
  once,
  reportFileName,
  sha256File,
  type FetchContext,
  type ReportMeta,
  type ReportSource,
  type Report,
} from './source.js';

export class FolderSource implements ReportSource {
  readonly kind = 'folder';
  constructor(
    private readonly folder: string,
    private readonly opts: { maxBytes: number; fileName: string },
  ) {}

  async fetch(project: string, _ctx: FetchContext): Promise<Report> {
    let entries: string[];
    try {
      entries = await readdir(this.folder);
    } catch (err) {
      throw new ReportError('unavailable', `report folder cannot be read: ${(err as Error).message}`);
    }
    const match = entries.sort().find((e) => {
      const dot = e.lastIndexOf('.');
      return dot > 0 && e.slice(0, dot) === project && /^[A-Za-z0-9]{1,8}$/.test(e.slice(dot + 1));
    });
    if (!match) throw new ReportError('not-found', `no report for project ${project}`);
    const full = join(this.folder, match);
    const st = await stat(full);
    if (!st.isFile()) throw new ReportError('not-found', `no report for project ${project}`);
    if (st.size > this.opts.maxBytes)
      throw new ReportError('too-large', 'report is larger than the limit', {
        size: st.size,
        maxBytes: this.opts.maxBytes,
      });
    const ext = match.slice(match.lastIndexOf('.') + 1);
    const report = await localReport(
      { project, name: reportFileName(this.opts.fileName, project, ext), mime: mimeForExtension(ext), date: st.mtime },
      full,
    );
    if (report.size > this.opts.maxBytes) {
      // it grew between stat and open
      await report.release();
      throw new ReportError('too-large', 'report is larger than the limit', {
        size: report.size,
        maxBytes: this.opts.maxBytes,
      });
    }
    return report;
  }
}

/**
 * A report read where it lies (a local folder): no copy. The file is opened
 * once, so a report replaced (renamed over) while it is sent still goes out
 * as it was when offered; release() closes it.
 */
async function localReport(meta: Omit<ReportMeta, 'size'>, path: string): Promise<Report> {
  const fh = await open(path, 'r');
  let size: number;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ReportError('not-found', 'not a regular file');
    size = st.size;
  } catch (err) {
    await fh.close();
    throw err;
  }
  const readers = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    readers.add(p);
    void p.finally(() => readers.delete(p)).catch(() => {});
    return p;
  };
  let closed = false;
  return {
    ...meta,
    size,
    arrived: Promise.resolve(),
    open: () => {
      if (closed) return Promise.reject(new ReportError('unavailable', 'report already released'));
      const reader = {
        read: (buf: Buffer, offset: number, length: number, position: number) =>
          track(fh.read(buf, offset, length, position).then((r) => r.bytesRead)),
        close: () => Promise.resolve(),
      };
      return Promise.resolve(reader);
    },
    complete: once(async () => ({ path, sha256: await track(sha256File(fh, size)) })),
    release: async () => {
      if (closed) return;
      closed = true;
      // a read still under way would fail with EBADF: let it end first
      await Promise.allSettled([...readers]);
      await fh.close();
    },
  };
}
