// Reports for unit tests: over a file on disk, or stand-ins without bytes.
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { sha256File, type ReportReader, type Report } from '../../src/reports/source.js';

const META = { mime: 'application/pdf', date: new Date('2026-11-25T10:00:00Z') };

/** A report over an existing file; every open() opens it anew. */
export function fileReport(path: string, size: number, meta: Partial<Omit<Report, 'size'>> = {}): Report {
  const project = meta.project ?? '1';
  return {
    project,
    name: `status-${project}.pdf`,
    ...META,
    ...meta,
    size,
    arrived: Promise.resolve(),
    open: async (): Promise<ReportReader> => {
      const fh = await open(path, 'r');
      return {
        read: async (buf, offset, length, position) => (await fh.read(buf, offset, length, position)).bytesRead,
        close: () => fh.close(),
      };
    },
    complete: async () => {
      const fh = await open(path, 'r');
      try {
        return { path, sha256: await sha256File(fh, size) };
      } finally {
        await fh.close();
      }
    },
    release: async () => {},
  };
}

/** A report whose bytes are never read (choosing, limits, metrics). */
export function stubReport(
  project: string,
  size: number,
  meta: Partial<Omit<Report, 'project' | 'size'>> = {},
): Report {
  return fileReport('/nonexistent', size, { project, ...meta });
}

/** Every byte of a report, read as a transfer would. */
export async function readReport(r: Pick<Report, 'open' | 'size'>): Promise<Buffer> {
  const reader = await r.open();
  try {
    const buf = Buffer.alloc(r.size);
    for (let pos = 0; pos < r.size;) {
      const n = await reader.read(buf, pos, r.size - pos, pos);
      if (n === 0) return buf.subarray(0, pos);
      pos += n;
    }
    return buf;
  } finally {
    await reader.close();
  }
}

/** Writes data into src in 64 KiB chunks, as an HTTP body arrives, honouring back-pressure; ends src unless told not to. */
export async function feed(src: Writable, data: Buffer, end = true): Promise<void> {
  for (let at = 0; at < data.length; at += 64 << 10) {
    if (!src.write(data.subarray(at, at + (64 << 10)))) await new Promise((r) => src.once('drain', r));
  }
  if (end) src.end();
}

/** What a running component's spool folder holds besides its request journal, emptied while no request runs. */
export async function spoolContents(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir)) {
    if (/^inflight-.*\.log$/.test(name) && (await stat(join(dir, name))).size === 0) continue;
    out.push(name);
  }
  return out;
}
