// XEP-0065 bytestream data: the one sender of a report into a connected
// SOCKS5 socket, shared by SI and Jingle (XEP-0260 carries the same stream).
import type { Hash } from 'node:crypto';
import type { Socket } from 'node:net';
import { ReportError, type OpenOptions, type Report } from '../../reports/source.js';
import { NS } from '../../xmpp/namespaces.js';
import type { ComponentModule, IqRoute } from '../../xmpp/router.js';

/** How send() reads the report: OpenOptions, and a hash to feed every byte sent, in order. */
export interface S5bRead extends OpenOptions {
  hash?: Hash;
}

export interface S5bSendOptions {
  /** a stream that takes no bytes for this long is cut */
  stallTimeoutMs: number;
}

/** A bytestream that did not complete; `sent` bytes had reached the kernel; `cause` is a ReportError when the download broke. */
export class StreamError extends Error {
  override name = 'StreamError';
  constructor(
    message: string,
    readonly sent: number,
    cause?: unknown,
  ) {
    super(message, { cause });
  }
}

/**
 * What the receiver must do once every byte is out for the transfer to
 * count: by default close the stream cleanly (SI: libpurple closes as soon
 * as it has `size` bytes). `closed` resolves with whether the close had an error.
 */
export type Confirm = (closed: Promise<boolean>) => Promise<void>;

const cleanClose: Confirm = async (closed) => {
  if (await closed) throw new Error('connection reset');
};

export class S5bSender implements ComponentModule {
  readonly features = [NS.BYTESTREAMS];
  readonly routes: readonly IqRoute[] = [];
  // Streams being pumped now: their number sets the read size (see send()).
  private pumping = 0;

  constructor(private readonly o: S5bSendOptions) {}

  /**
   * Streams the report into the socket with back-pressure, then waits for
   * `confirm`; resolves with the bytes sent, rejects with StreamError (the
   * socket destroyed, never ended, so a cut stream never looks whole). `read` says how the
   * report is read (OpenOptions: once for a stream that never starts over), and takes a hash
   * of the bytes sent (Jingle's checksum, where the report is not kept to hash afterwards).
   */
  async send(
    socket: Socket,
    report: Pick<Report, 'open' | 'size'>,
    confirm: Confirm = cleanClose,
    read: S5bRead = {},
  ): Promise<number> {
    // Two reusable buffers per transfer: one is read into while the socket
    // takes the other. 1 MiB reads are cheapest for one fast transfer, but
    // many at once share a 4 MiB budget, down to 64 KiB each (bench: 200 ×
    // 8 MiB at once reached 409 MB RSS with 1 MiB reads each). Reusing the
    // buffers leaves no per-chunk garbage: a new 1 MiB buffer per read kept
    // the collector busy for much of a large transfer (bench: 256 MiB in
    // ~330 ms instead of ~140 ms).
    const { size } = report;
    this.pumping++;
    const readSize = Math.max(64 << 10, Math.min(1 << 20, 2 ** Math.floor(Math.log2((4 << 20) / this.pumping))));
    const stallMs = this.o.stallTimeoutMs;
    let sent = 0;
    let writing = 0; // writes the socket has not taken yet
    // One timer, moved on (refresh) at every write that ends: not a new one per write.
    const stall = setTimeout(() => {
      // Waiting for the intranet is not the receiver's stall (the download has its own idle timeout).
      if (writing === 0 && sent < size) return void stall.refresh();
      socket.destroy(new Error(`no progress for ${stallMs} ms`));
    }, stallMs);
    const armStall = () => void stall.refresh();
    const closed = new Promise<boolean>((resolve) => socket.once('close', resolve));
    // Dino half-closes its side as soon as it accepts: we keep writing.
    socket.allowHalfOpen = true;
    socket.resume();
    socket.on('data', () => {}); // the receiver has nothing to say; drain whatever it sends
    socket.on('error', () => {}); // shows in the write callbacks and in 'close'
    armStall();
    try {
      const reader = await report.open({ once: read.once });
      const { hash } = read;
      try {
        // Writes the socket has not taken yet, oldest first: at most two, as with two buffers.
        const inFlight: Promise<void>[] = [];
        const write = (bufs: Buffer[], bytes: number, end: number): Promise<void> => {
          writing++;
          const p = new Promise<void>((resolve, reject) => {
            const done = (err?: Error | null) => {
              writing--;
              if (err) return reject(err);
              sent += bytes;
              // the kernel has these bytes: their buffers may be read into again (writes end in order)
              reader.release?.(end);
              armStall();
              resolve();
            };
            if (bufs.length === 1) return void socket.write(bufs[0], done);
            // corked: the buffers go to the kernel in one writev, not one syscall each
            socket.cork();
            for (let k = 0; k < bufs.length - 1; k++) socket.write(bufs[k]);
            socket.write(bufs[bufs.length - 1], done);
            socket.uncork();
          });
          p.catch(() => {}); // awaited later; not unhandled meanwhile
          inFlight.push(p);
          return p;
        };
        // The read path: two reusable buffers, one read into while the socket takes the other.
        // Allocated only when needed (a report at hand, or a reader behind a download).
        let slots: { buf: Buffer; written: Promise<void> }[] | undefined;
        let next = 0;
        let pos = 0;
        while (pos < size) {
          if (inFlight.length >= 2) await inFlight.shift();
          const want = Math.min(readSize, size - pos);
          // A report still arriving hands over the buffers it received: sent as they are, no copy.
          const bufs = reader.chunks ? await reader.chunks(pos, want) : undefined;
          if (bufs) {
            let n = 0;
            for (const b of bufs) n += b.length;
            if (n === 0) break;
            pos += n;
            if (hash) for (const b of bufs) hash.update(b);
            void write(bufs, n, pos);
            continue;
          }
          slots ??= [0, 1].map(() => ({
            buf: Buffer.allocUnsafe(Math.max(1, Math.min(readSize, size))),
            written: Promise.resolve(),
          }));
          const slot = slots[next];
          next ^= 1;
          await slot.written; // this buffer's previous contents are with the kernel
          const bytesRead = await reader.read(slot.buf, 0, Math.min(slot.buf.length, want), pos);
          if (bytesRead === 0) break;
          pos += bytesRead;
          hash?.update(slot.buf.subarray(0, bytesRead));
          slot.written = write([slot.buf.subarray(0, bytesRead)], bytesRead, pos);
        }
        await Promise.all(inFlight);
        // Shorter than offered: the report's fault, not the receiver's.
        if (pos < size) throw new ReportError('unavailable', `the report ended after ${pos} of ${size} bytes`);
      } finally {
        await reader.close();
      }
      if (!socket.destroyed && !socket.writableEnded) socket.end();
      // Every byte left our buffers: now the receiver's word, still under the stall timer.
      armStall();
      await confirm(closed);
      if (sent !== size) throw new Error(`closed after ${sent} of ${size} bytes`);
      return sent;
    } catch (err) {
      // A reset, not a FIN: a receiver must never take a cut stream for the end of the file.
      if (!socket.destroyed) socket.resetAndDestroy();
      throw new StreamError(`connection lost: ${(err as Error).message}`, sent, err);
    } finally {
      clearTimeout(stall);
      this.pumping--;
      socket.destroy();
    }
  }
}
