// Streams a report to a temporary file, counting and hashing on the way, so a
// report is never held whole in memory and its size limit holds even when the
// source lies about Content-Length.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ReportError } from './source.js';

export interface SpoolResult {
  path: string;
  size: number;
  md5: string;
  sha256: string;
}

const PREFIX = 'spool-';

export class Spool {
  private constructor(readonly dir: string) {}

  /** Opens the spool dir and removes what a crashed run left behind. */
  static async open(dir: string): Promise<Spool> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const entry of await readdir(dir)) {
      if (entry.startsWith(PREFIX)) await rm(join(dir, entry), { force: true, recursive: true });
    }
    return new Spool(dir);
  }

  static defaultDir(domain: string): string {
    return join(tmpdir(), `xmpp-reports-${domain}`);
  }

  async write(input: Readable, maxBytes: number, signal?: AbortSignal): Promise<SpoolResult> {
    const path = join(this.dir, PREFIX + randomBytes(12).toString('hex'));
    const md5 = createHash('md5');
    const sha256 = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
        size += chunk.length;
        if (size > maxBytes) {
          cb(new ReportError('too-large', `report is larger than the limit of ${maxBytes} bytes`, { maxBytes }));
          return;
        }
        md5.update(chunk);
        sha256.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(input, meter, createWriteStream(path, { mode: 0o600 }), signal ? { signal } : {});
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    return { path, size, md5: md5.digest('hex'), sha256: sha256.digest('hex') };
  }

  /** Removes every spooled file (at shutdown: nothing of ours outlives the process). */
  async clear(): Promise<void> {
    for (const entry of await readdir(this.dir).catch(() => [] as string[])) {
      if (entry.startsWith(PREFIX)) await rm(join(this.dir, entry), { force: true, recursive: true });
    }
  }

  async remove(path: string): Promise<void> {
    await rm(path, { force: true });
  }
}
