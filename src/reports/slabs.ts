// Read slabs that are read into again once every chunk cut from them is back.
// The HTTP client (http1.ts) reads a body into 1 MiB slabs and hands out views
// of them, which the spool holds until they are sent (no copy). A new slab for
// every MiB is garbage the size of the report: V8 counts each slab's bytes as
// external memory and runs a full mark-compact every few tens of MiB of them,
// which with the component's ~10 MB heap cost about 0.7 s of CPU per GiB
// (bench/http-path.ts si with XR_BALLAST_MB=10: 70 mark-compacts for 1.25 GiB
// against 9 without the ballast). Recycled slabs make no such garbage.
//
// The rule that keeps bytes intact: a slab is read into again only after its
// reader has moved on from it (retire) and every chunk lent out of it has been
// given back by its last holder (giveBack). A chunk that is never given back
// (a body drained and dropped, a decoder's input) only keeps its slab from
// coming back; the collector then takes it as before.

/** A slab, the chunks of it still out, and whether its reader has left it. */
interface Slab {
  readonly buf: Buffer;
  readonly pool: SlabPool;
  out: number;
  retired: boolean;
}

/** Slabs by their memory: a chunk (a view) finds its slab by its ArrayBuffer. */
const OWNER = new WeakMap<ArrayBufferLike, Slab>();
/** Chunks lent and not yet given back, each counted once in its slab's `out`. */
const LENT = new WeakSet<Buffer>();

export class SlabPool {
  private readonly free: Buffer[] = [];

  /** `size` bytes per slab; at most `maxFree` unused slabs are kept for reuse (the rest go to the collector). */
  constructor(
    readonly size: number,
    private readonly maxFree: number,
  ) {}

  /** Slabs waiting to be read into again. */
  get idle(): number {
    return this.free.length;
  }

  /** A slab to read into: a recycled one if there is one. */
  take(): Buffer {
    const buf = this.free.pop();
    if (buf) {
      OWNER.get(buf.buffer)!.retired = false;
      return buf;
    }
    // its own ArrayBuffer (never Buffer's shared pool), so its views name it alone
    const fresh = Buffer.allocUnsafeSlow(this.size);
    OWNER.set(fresh.buffer, { buf: fresh, pool: this, out: 0, retired: false });
    return fresh;
  }

  /** `chunk`, a view of a slab of this pool, goes to a holder that gives it back with giveBack(). */
  lend(chunk: Buffer): Buffer {
    const s = OWNER.get(chunk.buffer);
    if (s?.pool === this && !LENT.has(chunk)) {
      LENT.add(chunk);
      s.out++;
    }
    return chunk;
  }

  /** The reader is done with `buf` (it moved to another slab, or its connection closed). */
  retire(buf: Buffer): void {
    const s = OWNER.get(buf.buffer);
    if (!s || s.pool !== this || s.retired) return;
    s.retired = true;
    if (s.out === 0) this.recycle(s);
  }

  /** @internal */
  recycle(s: Slab): void {
    if (this.free.length < this.maxFree && !this.free.includes(s.buf)) this.free.push(s.buf);
  }
}

/**
 * The holder of `chunk` will never read it again, nor has anything else of it (a view cut from
 * it, a write still under way). Any other buffer is ignored, so a holder may give back every
 * chunk it had, whatever made it; a chunk is counted once however often it comes back.
 */
export function giveBack(chunk: Buffer): void {
  if (!LENT.delete(chunk)) return;
  const s = OWNER.get(chunk.buffer);
  if (!s) return;
  s.out--;
  if (s.out === 0 && s.retired) s.pool.recycle(s);
}
