// What every report source gives: a report the transfers can read, with the
// facts a file offer needs (XEP-0096 name, size, date). A report may still be
// arriving from the intranet while it is sent: reads wait for its bytes, and
// a download that breaks makes them fail, so nothing half-received is ever
// reported as delivered.
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

/** Positional reads of a report, as FileHandle.read. */
export interface ReportReader {
  /** Bytes read into buf (0 at the end); waits for bytes not yet downloaded; rejects when the download failed. */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /**
   * Optional, for a report still arriving: the bytes from `position` (at most `max`) as the very
   * buffers they arrived in, without a copy; waits like read() ([] at the end). Nobody writes into
   * them while the caller may still hold them: until it calls release() past them, or closes the
   * reader after releasing all it took (closed with some unreleased, they are never reused).
   * Undefined when those bytes are no longer in memory (a reader that fell behind): read() them instead.
   */
  chunks?(position: number, max: number): Promise<Buffer[] | undefined>;
  /**
   * The caller holds nothing any more of what chunks() gave below `upTo` (its writes of them are
   * done), so their memory may be read into again.
   */
  release?(upTo: number): void;
  close(): Promise<void>;
}

export interface ReportMeta {
  project: string;
  name: string; // file name offered to the user
  mime: string;
  size: number; // known before the first byte is sent: a file offer needs it
  date: Date;
}

/** How a reader will read a report (Report.open). */
export interface OpenOptions {
  /**
   * It reads the report once, start to end, and never starts over (SI's bytestream): a source may
   * then let the bytes it has passed go instead of keeping them (a spooled download, alone).
   */
  once?: boolean;
}

export interface Report extends ReportMeta {
  open(o?: OpenOptions): Promise<ReportReader>;
  /**
   * Another request takes this report too (a shared download): every byte is kept for it from now
   * on. False when bytes it would need are gone already; that request then fetches its own.
   * Absent where nothing is ever let go.
   */
  share?(): boolean;
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
  for (let pos = 0; pos < size;) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) throw new ReportError('unavailable', `the report shrank to ${pos} bytes while it was hashed`);
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return hash.digest('hex');
}

/** f(), called once; later calls share its promise. */
export function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
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
  fetch(project: string, ctx: FetchContext): Promise<Report>;
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
  const base = mime.split(';')[0].trim().toLowerCase();
  return Object.keys(MIME_BY_EXT).find((ext) => MIME_BY_EXT[ext] === base);
}

/** The offered file name: the template with the project id, plus an extension. */
export function reportFileName(template: string, project: string, ext: string | undefined): string {
  const base = template.replace('{project}', project);
  return ext ? `${base}.${ext.toLowerCase()}` : base;
}
