// Identifiers the component makes up: stanza ids, and stream/session ids.
import { randomFillSync } from 'node:crypto';

// Random bytes are taken from a pool filled 4 KiB at a time: randomBytes() per id cost a call into
// OpenSSL and a new Buffer each, four times per small report (bench item 7). Every id still gets
// bytes nobody else got.
const pool = Buffer.allocUnsafe(4096);
let used = pool.length;

function random(n: number): Buffer {
  if (n > pool.length) return randomFillSync(Buffer.allocUnsafe(n));
  if (used + n > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const out = pool.subarray(used, used + n);
  used += n;
  return out;
}

/** A stanza id no peer can guess or collide with (iqCaller matches replies by id only). */
export function newId(): string {
  return 'xr-' + random(9).toString('base64url');
}

/** A stream, session or candidate id: a short prefix that names its kind, then random hex (safe in every XEP's attribute). */
export function newSid(prefix: string, bytes = 12): string {
  return prefix + random(bytes).toString('hex');
}
