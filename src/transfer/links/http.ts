// Pure helpers of the link server: link ids, Range headers, file names, MIME
// types and the public base URL.
import { createHash } from 'node:crypto';

/** The id a link is kept under: sha256(token), hex. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The loggable id of a token: never the token itself. */
export function linkId(token: string): string {
  return hashToken(token).slice(0, 8);
}

export type RangeResult = { kind: 'none' } | { kind: 'range'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * Reads a Range header (RFC 9110 §14.1.2) against a file of `size` bytes:
 * bytes=a-b, a- and -n. Multiple ranges, other units and invalid specs are
 * ignored (the whole file is sent); ranges starting past the end are
 * unsatisfiable (416).
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const m = /^\s*bytes\s*=\s*(.*?)\s*$/i.exec(header);
  if (!m) return { kind: 'none' };
  const spec = m[1];
  if (spec.includes(',')) return { kind: 'none' };
  let r = /^(\d{1,20})\s*-\s*(\d{0,20})$/.exec(spec);
  if (r) {
    const start = Number(r[1]);
    const last = r[2] === '' ? Infinity : Number(r[2]);
    if (last < start) return { kind: 'none' }; // invalid range-spec: ignored (§14.1.1)
    if (start >= size) return { kind: 'unsatisfiable' };
    return { kind: 'range', start, end: Math.min(last, size - 1) };
  }
  r = /^-\s*(\d{1,20})$/.exec(spec);
  if (r) {
    const n = Number(r[1]);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - n), end: size - 1 };
  }
  return { kind: 'none' };
}

/** Replaces lone surrogates, which encodeURIComponent refuses. */
function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** A file name safe to put in a URL and a header: no controls, no path separators. */
export function safeFileName(name: string): string {
  const clean = wellFormed(name)
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, '')
    .replace(/[/\\]/g, '_')
    .trim();
  return clean === '' || clean === '.' || clean === '..' ? 'report' : clean;
}

/** RFC 6266 Content-Disposition with an ASCII fallback and the RFC 8187 UTF-8 form. */
export function contentDisposition(name: string): string {
  const n = wellFormed(name);
  // Fallback: printable ASCII without the characters that need quoting or that some agents decode.
  const ascii = Array.from(n, (ch) =>
    /^[\x20-\x7e]$/.test(ch) && ch !== '"' && ch !== '\\' && ch !== '%' ? ch : '_',
  ).join('');
  const ext = encodeURIComponent(n).replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return `attachment; filename="${ascii}"; filename*=UTF-8''${ext}`;
}

/** The MIME type when it is a valid Content-Type value, else application/octet-stream. */
export function safeMime(mime: string): string {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[\x20-\x7e]*)?$/.test(mime)
    ? mime
    : 'application/octet-stream';
}

/**
 * Checks the public base URL (http: or https:, no credentials, query or
 * fragment) and returns it with a trailing slash, with its path.
 */
export function normalizeBaseUrl(raw: string): { base: string; path: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`publicBaseUrl is not a valid URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error('publicBaseUrl must be an http: or https: URL');
  if (url.username || url.password || url.search || url.hash)
    throw new Error('publicBaseUrl must not carry credentials, a query or a fragment');
  const base = url.href.endsWith('/') ? url.href : url.href + '/';
  return { base, path: new URL(base).pathname };
}
