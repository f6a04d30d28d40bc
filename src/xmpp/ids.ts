// Identifiers the component makes up: stanza ids, and stream/session ids.
import { randomBytes } from 'node:crypto';

/** A stanza id no peer can guess or collide with (iqCaller matches replies by id only). */
export function newId(): string {
  return 'xr-' + randomBytes(9).toString('base64url');
}

/** A stream, session or candidate id: a short prefix that names its kind, then random hex (safe in every XEP's attribute). */
export function newSid(prefix: string, bytes = 12): string {
  return prefix + randomBytes(bytes).toString('hex');
}
