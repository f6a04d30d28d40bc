// XEP-0047 in-band bytestreams, sender side: open (with the block-size
// fallback of §2.1), IQ-carried data with a window of blocks in flight, close.
import type { Element } from '@xmpp/component';
import type { Report } from '../../reports/source.js';
import { requestCondition, requestFailure } from '../../xmpp/errors.js';
import { newId } from '../../xmpp/ids.js';
import { FALLBACK_BLOCK_SIZE, buildClose, buildData, buildOpen, nextSeq } from './stanzas.js';

/** How much of the spooled file IbbSender reads at once (whole blocks). */
const READ_AHEAD = 256 * 1024;

export interface IbbSendOptions {
  from: string;
  to: string;
  sid: string;
  report: Pick<Report, 'open' | 'size'>;
  blockSize: number;
  window: number;
  ackTimeoutMs: number;
  request: (iq: Element, timeoutMs: number) => Promise<Element>;
  onProgress?: (acked: number) => void;
}

/** An in-band stream that did not complete; `cause` is a ReportError when the report's download broke. */
export class IbbError extends Error {
  override name = 'IbbError';
  constructor(
    message: string,
    readonly acked: number,
    o: { condition?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: o.cause });
    this.condition = o.condition;
  }
  readonly condition: string | undefined;
}

/** One IBB transfer; abort() ends it (e.g. the receiver sent <close/>). */
export class IbbSender {
  private failure: IbbError | undefined;
  private acked = 0;
  blockSize = 0;

  constructor(private readonly o: IbbSendOptions) {}

  // Wakes the send loop when a block's ack (or error) comes, and at once on an
  // abort: an abort must not wait for acks that will never come. A fresh
  // promise per wait: racing every wait against one long-lived "aborted"
  // promise kept a reaction per block alive until the end of the stream.
  private wake: () => void = () => {};

  abort(reason: string): void {
    this.failure ??= new IbbError(reason, this.acked);
    this.wake();
  }

  private async openStream(): Promise<number> {
    const { o } = this;
    let blockSize = Math.min(o.blockSize, 65535);
    for (;;) {
      try {
        await o.request(buildOpen({ id: newId(), from: o.from, to: o.to, sid: o.sid, blockSize }), o.ackTimeoutMs);
        return blockSize;
      } catch (err) {
        const condition = requestCondition(err);
        // XEP-0047 §2.1: resource-constraint means "try a smaller block size".
        if (condition === 'resource-constraint' && blockSize > FALLBACK_BLOCK_SIZE) {
          blockSize = FALLBACK_BLOCK_SIZE;
          continue;
        }
        throw new IbbError(`in-band open refused: ${requestFailure(err)}`, 0, condition ? { condition } : {});
      }
    }
  }

  /** Resolves with the bytes acknowledged (== size) or rejects with IbbError. */
  async send(): Promise<number> {
    const { o } = this;
    this.blockSize = await this.openStream();
    const size = o.report.size;
    const reader = await o.report.open();
    const inFlight = new Set<Promise<void>>();
    let offset = 0;
    let seq = 0;
    // Blocks are cut from reads of up to READ_AHEAD bytes: one file read per
    // block (4096 bytes by default for many clients) cost a thread-pool round
    // trip each, a third of the component's CPU per block in the bench.
    const readSize = Math.max(this.blockSize, Math.floor(READ_AHEAD / this.blockSize) * this.blockSize);
    // One read-ahead buffer for the whole stream: every block cut from it is
    // base64-encoded at once, so it is free again by the next read. A new
    // 256 KiB buffer per read left a gigabyte of garbage per gigabyte sent,
    // and the collector let RSS grow with it (bench item 4: 1 GiB by IBB).
    const readBuf = Buffer.allocUnsafe(Math.max(1, Math.min(readSize, size)));
    let ahead = readBuf.subarray(0, 0);
    let aheadAt = 0; // file offset of ahead[0]
    try {
      while ((offset < size || inFlight.size > 0) && !this.failure) {
        while (inFlight.size < o.window && offset < size && !this.failure) {
          const len = Math.min(this.blockSize, size - offset);
          if (offset + len > aheadAt + ahead.length) {
            const want = Math.min(readSize, size - offset);
            const buf = readBuf.subarray(0, want);
            let got = 0;
            try {
              // a report still downloading gives what has arrived: read on to whole blocks
              while (got < want) {
                const n = await reader.read(buf, got, want - got, offset + got);
                if (n === 0) break;
                got += n;
              }
            } catch (err) {
              // the report's download broke: the stream is closed early, then this is thrown
              this.failure ??= new IbbError((err as Error).message, this.acked, { cause: err });
              break;
            }
            if (got !== want) {
              this.failure ??= new IbbError('the report shrank while it was sent', this.acked);
              break;
            }
            ahead = buf;
            aheadAt = offset;
          } else {
            // Let stanzas that arrived meanwhile (a <close/>, an abort) in before the next block, as a file read did.
            await new Promise<void>((resolve) => setImmediate(resolve));
            if (this.failure) break;
          }
          const block = ahead.subarray(offset - aheadAt, offset - aheadAt + len);
          const iq = buildData({
            id: newId(),
            from: o.from,
            to: o.to,
            sid: o.sid,
            seq,
            data: block.toString('base64'),
          });
          seq = nextSeq(seq);
          offset += len;
          const p: Promise<void> = o.request(iq, o.ackTimeoutMs).then(
            () => {
              this.acked += len;
              o.onProgress?.(this.acked);
            },
            (err: unknown) => {
              const condition = requestCondition(err);
              this.failure ??= new IbbError(
                `block not acknowledged: ${requestFailure(err)}`,
                this.acked,
                condition ? { condition } : {},
              );
            },
          );
          inFlight.add(p);
          void p.finally(() => {
            inFlight.delete(p);
            this.wake();
          });
        }
        if (inFlight.size > 0 && !this.failure) await new Promise<void>((resolve) => (this.wake = resolve));
      }
      if (!this.failure) await Promise.all(inFlight);
    } finally {
      await reader.close();
    }
    // libpurple never answers <close/>: send it, but do not make success wait for a reply.
    // A <close/> before the last byte tells the receiver the file is incomplete (XEP-0047 §2.3).
    o.request(buildClose({ id: newId(), from: o.from, to: o.to, sid: o.sid }), 5000).catch(() => {});
    if (this.failure) throw this.failure;
    return this.acked;
  }
}
