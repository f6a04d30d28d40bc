// Reports from a local folder: <project>.<ext>. The file is found by listing
// the folder and comparing names, so no user text ever becomes a path. It is
// sent from where it lies, not copied: copying (and hashing) 256 MiB took
// longer than sending it (bench item 1).
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ReportError, localReport, mimeForExtension, reportFileName, type FetchContext, type ReportSource, type SpooledReport } from './source.js';

export class FolderSource implements ReportSource {
  readonly kind = 'folder';
  constructor(
    private readonly folder: string,
    private readonly opts: { maxBytes: number; fileName: string },
  ) {}

  async fetch(project: string, _ctx: FetchContext): Promise<SpooledReport> {
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
    if (st.size > this.opts.maxBytes) throw new ReportError('too-large', 'report is larger than the limit', { size: st.size, maxBytes: this.opts.maxBytes });
    const ext = match.slice(match.lastIndexOf('.') + 1);
    const report = await localReport({ project, name: reportFileName(this.opts.fileName, project, ext), mime: mimeForExtension(ext), date: st.mtime }, full);
    if (report.size > this.opts.maxBytes) {
      // it grew between stat and open
      await report.release();
      throw new ReportError('too-large', 'report is larger than the limit', { size: report.size, maxBytes: this.opts.maxBytes });
    }
    return report;
  }
}
