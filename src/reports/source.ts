// What every report source gives: a report the transfers can read, with the
// facts a file offer needs (XEP-0096 name, size, date). A report may still be
// arriving from the intranet while it is sent: reads wait for its bytes, and
// a download that breaks makes them fail, so nothing half-received is ever
// reported as delivered.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { SpoolFile } from './spool.js';

/** Positional reads of a report, as FileHandle.read. */
export interface ReportReader {
  /** Bytes read into buf (0 at the end); waits for bytes not yet downloaded; rejects when the download failed. */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface ReportMeta {
  project: string;
  name: string; // file name offered to the user
  mime: string;
  size: number; // known before the first byte is sent: a file offer needs it
  date: Date;
}

export interface SpooledReport extends ReportMeta {
  open(): Promise<ReportReader>;
  /** Settles when the last byte is on local disk; rejects when the download failed. */
  readonly arrived: Promise<void>;
  /**
   * Waits until the whole report is on local disk, then gives its path and
   * SHA-256 (computed on the first call: only links and Jingle offers need
   * it, so an SI transfer never waits for a hash).
   */
  complete(): Promise<{ path: string; sha256: string }>;
  release(): Promise<void>;
}

/** SHA-256 of a file's first `size` bytes, hex, read in 1 MiB steps into one reused buffer. */
export async function sha256File(fh: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.max(1, Math.min(1 << 20, size)));
  for (let pos = 0; pos < size; ) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) throw new ReportError('unavailable', `the report shrank to ${pos} bytes while it was hashed`);
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return hash.digest('hex');
}

function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}

/** A report being written into the spool (see SpoolFile); release() stops the download if it still runs and removes the file. */
export function spooledReport(meta: ReportMeta, file: SpoolFile): SpooledReport {
  const arrived = file.done.then(() => {});
  arrived.catch(() => {}); // seen by readers; nobody need wait for it
  return {
    ...meta,
    arrived,
    open: () => file.open(),
    complete: once(async () => {
      await file.done;
      const fh = await open(file.path, 'r');
      try {
        return { path: file.path, sha256: await sha256File(fh, meta.size) };
      } finally {
        await fh.close();
      }
    }),
    release: () => file.remove(),
  };
}

/**
 * A report read where it lies (a local folder): no copy. The file is opened
 * once, so a report replaced (renamed over) while it is sent still goes out
 * as it was when offered; release() closes it.
 */
export async function localReport(meta: Omit<ReportMeta, 'size'>, path: string): Promise<SpooledReport> {
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
    open: async () => {
      if (closed) throw new ReportError('unavailable', 'report already released');
      return { read: (buf, offset, length, position) => track(fh.read(buf, offset, length, position).then((r) => r.bytesRead)), close: async () => {} };
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

/** A report as a readable stream of its bytes (reads of up to chunkSize). */
export function reportStream(reader: ReportReader, size: number, chunkSize: number): Readable {
  let pos = 0;
  return new Readable({
    highWaterMark: chunkSize,
    read(this: Readable, n: number) {
      const want = Math.min(Math.max(n, chunkSize), size - pos);
      if (want <= 0) return void this.push(null);
      const buf = Buffer.allocUnsafe(want);
      reader.read(buf, 0, want, pos).then(
        (got) => {
          if (got === 0) return void this.destroy(new ReportError('unavailable', `the report ended after ${pos} of ${size} bytes`));
          pos += got;
          this.push(buf.subarray(0, got));
        },
        (err: Error) => this.destroy(err),
      );
    },
  });
}

export type ReportErrorKind = 'not-found' | 'forbidden' | 'unavailable' | 'too-large';

/** A failure the chat user should hear about in plain words. */
export class ReportError extends Error {
  override name = 'ReportError';
  constructor(
    readonly kind: ReportErrorKind,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export interface FetchContext {
  requester: string; // bare JID of the user asking
  signal?: AbortSignal;
}

export interface ReportSource {
  readonly kind: string;
  fetch(project: string, ctx: FetchContext): Promise<SpooledReport>;
}

const MIME_BY_EXT: Record<string, string> = {
  pdf: 'application/pdf',
  html: 'text/html',
  htm: 'text/html',
  txt: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  json: 'application/json',
  xml: 'application/xml',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  zip: 'application/zip',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/vnd.oasis.opendocument.spreadsheet',
};

export function mimeForExtension(ext: string): string {
  return MIME_BY_EXT[ext.toLowerCase()] ?? 'application/octet-stream';
}

export function extensionForMime(mime: string): string | undefined {
  const base = mime.split(';')[0]!.trim().toLowerCase();
  return Object.keys(MIME_BY_EXT).find((ext) => MIME_BY_EXT[ext] === base);
}

/** The offered file name: the template with the project id, plus an extension. */
export function reportFileName(template: string, project: string, ext: string | undefined): string {
  const base = template.replace('{project}', project);
  return ext ? `${base}.${ext.toLowerCase()}` : base;
}
