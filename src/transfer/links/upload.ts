// XEP-0363 HTTP File Upload, client side, for the component: ask the server's
// upload service for a slot (§4), PUT the spooled report to it (§6) and hand
// the GET URL to the user (in the body and in jabber:x:oob, like a link).
// The upload uses node:http(s) rather than node-fetch: the file is streamed with
// back-pressure and an exact Content-Length, and a service that answers early
// (413, 403) before reading the body is reported with its status, not as EPIPE.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { xml, type Element } from '@xmpp/component';
import { conditionOf } from '../../xmpp/errors.js';
import { newId } from '../../xmpp/ids.js';
import { NS } from '../../xmpp/namespaces.js';

export interface UploadSlot {
  put: string;
  get: string;
  /** Only Authorization, Cookie and Expires (XEP-0363 §4), newlines stripped (§8). */
  headers: Record<string, string>;
}

export interface SlotRequest {
  from: string; // a JID of the component's domain, e.g. 1234@reports.example.com/reports
  service: string; // the upload service JID, e.g. upload.example.com
  name: string;
  size: number;
  mime: string;
  timeoutMs: number;
}

export type UploadFailure = 'too-large' | 'quota' | 'refused' | 'timeout' | 'bad-slot' | 'http' | 'io';

export class UploadError extends Error {
  override name = 'UploadError';
  constructor(
    readonly reason: UploadFailure,
    message: string,
    readonly detail: { condition?: string; maxFileSize?: number; retryAt?: Date; status?: number } = {},
  ) {
    super(message);
  }
}

/** Sends an IQ and resolves with the result stanza (Connection.request). */
export type IqRequest = (iq: Element, timeoutMs: number) => Promise<Element>;

// ---------------------------------------------------------------- stanzas

/** The slot request (XEP-0363 §4, example "Client requests a slot"). */
export function buildSlotRequest(o: {
  id: string;
  from: string;
  service: string;
  name: string;
  size: number;
  mime: string;
}): Element {
  return xml(
    'iq',
    { type: 'get', id: o.id, from: o.from, to: o.service },
    xml('request', {
      xmlns: NS.HTTP_UPLOAD,
      filename: o.name,
      size: String(o.size),
      'content-type': o.mime || undefined,
    }),
  );
}

const ALLOWED_HEADERS: Record<string, string> = {
  authorization: 'Authorization',
  cookie: 'Cookie',
  expires: 'Expires',
};

/**
 * Keeps the headers a slot may ask for: Authorization, Cookie, Expires
 * (XEP-0363 §4; others MUST be ignored), with newlines stripped (§8). A value
 * still unusable in an HTTP header (other control characters) is dropped.
 */
export function filterPutHeaders(headers: Array<{ name: string; value: string }>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of headers) {
    const name =
      ALLOWED_HEADERS[
        h.name
          .replace(/[\r\n]/g, '')
          .trim()
          .toLowerCase()
      ];
    if (!name) continue;
    const value = h.value.replace(/[\r\n]/g, '').trim();
    if (value === '' || /[^\t\x20-\x7e\x80-\xff]/.test(value)) continue;
    out[name] = name === 'Cookie' && out.Cookie ? `${out.Cookie}; ${value}` : value;
  }
  return out;
}

function httpUrl(raw: string | undefined, what: string): string {
  if (!raw) throw new UploadError('bad-slot', `the upload slot has no ${what} URL`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UploadError('bad-slot', `the upload slot's ${what} URL is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new UploadError('bad-slot', `the upload slot's ${what} URL is not http(s)`);
  return url.href;
}

/** Reads <slot><put url><header name/>…</put><get url/></slot> from the IQ result (XEP-0363 §4). */
export function parseSlot(result: Element): UploadSlot {
  const slot = result.is('slot', NS.HTTP_UPLOAD) ? result : result.getChild('slot', NS.HTTP_UPLOAD);
  if (!slot) throw new UploadError('bad-slot', 'the upload service answered without a slot');
  const put = slot.getChild('put');
  const get = slot.getChild('get');
  const headers = filterPutHeaders(
    (put?.getChildren('header') ?? []).map((h) => ({ name: h.attrs.name ?? '', value: h.text() })),
  );
  return { put: httpUrl(put?.attrs.url, 'PUT'), get: httpUrl(get?.attrs.url, 'GET'), headers };
}

/** Turns an IQ error from the upload service into an UploadError (XEP-0363 §5). */
export function slotError(error: Element | undefined, fallback = 'undefined-condition'): UploadError {
  const condition = conditionOf(error) ?? fallback;
  const text = error?.getChildText('text', NS.STANZAS) ?? '';
  const tooLarge = error?.getChild('file-too-large', NS.HTTP_UPLOAD);
  if (tooLarge) {
    const max = Number(tooLarge.getChildText('max-file-size') ?? NaN);
    return new UploadError('too-large', text || 'file too large for the upload service', {
      condition,
      ...(Number.isSafeInteger(max) ? { maxFileSize: max } : {}),
    });
  }
  const retry = error?.getChild('retry', NS.HTTP_UPLOAD)?.attrs.stamp;
  if (retry || condition === 'resource-constraint') {
    const at = retry ? new Date(retry) : undefined;
    return new UploadError('quota', text || 'upload quota reached', {
      condition,
      ...(at && !Number.isNaN(at.getTime()) ? { retryAt: at } : {}),
    });
  }
  return new UploadError('refused', `upload slot refused (${condition}${text ? `: ${text}` : ''})`, { condition });
}

/**
 * What a disco#info result says about an upload service (XEP-0363 §3): whether
 * it speaks urn:xmpp:http:upload:0 and its max-file-size (XEP-0128 form).
 */
export function parseServiceInfo(query: Element): { supported: boolean; maxFileSize?: number } {
  const supported = query.getChildren('feature').some((f) => f.attrs.var === NS.HTTP_UPLOAD);
  for (const x of query.getChildren('x', NS.DATA_FORMS)) {
    const fields = x.getChildren('field');
    const formType = fields.find((f) => f.attrs.var === 'FORM_TYPE')?.getChildText('value');
    if (formType !== NS.HTTP_UPLOAD) continue;
    const max = Number(fields.find((f) => f.attrs.var === 'max-file-size')?.getChildText('value') ?? NaN);
    if (Number.isSafeInteger(max) && max > 0) return { supported, maxFileSize: max };
  }
  return { supported };
}

// ---------------------------------------------------------------- requests

/**
 * Asks the upload service for a slot; rejects with an UploadError. Note:
 * ejabberd's mod_http_upload refuses size 0 (bad-request), so empty reports
 * need another way (the built-in link).
 */
export async function requestSlot(request: IqRequest, o: SlotRequest): Promise<UploadSlot> {
  const iq = buildSlotRequest({ id: newId(), ...o });
  let result: Element;
  try {
    result = await request(iq, o.timeoutMs);
  } catch (err) {
    const e = err as Error & { condition?: string; element?: Element };
    if (e.name === 'TimeoutError')
      throw new UploadError('timeout', `the upload service did not answer within ${o.timeoutMs} ms`);
    if (e.condition || e.element) throw slotError(e.element, e.condition);
    throw new UploadError('refused', `upload slot request failed: ${e.message}`);
  }
  return parseSlot(result);
}

/** A URL fit for error texts: scheme and host only (slot paths may be secret). */
function hostOf(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

/**
 * PUTs the file to the slot (XEP-0363 §6): Content-Length and Content-Type
 * set, the slot's headers added, streamed with back-pressure. Fails when no
 * progress is made for timeoutMs, or on a status other than 2xx.
 */
export async function uploadFile(
  put: string,
  headers: Record<string, string>,
  path: string,
  size: number,
  mime: string,
  timeoutMs: number,
): Promise<void> {
  const url = new URL(put);
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UploadError('bad-slot', 'the PUT URL is not http(s)');
  const where = hostOf(url);
  const st = await stat(path);
  // The service refuses a Content-Length other than the slot's size (§6); a file that changed would hang or break the request.
  if (st.size !== size) throw new UploadError('io', `the file has ${st.size} bytes, the slot was asked for ${size}`);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  let req: ClientRequest | undefined;
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      req?.destroy(new Error('timeout'));
    }, timeoutMs);
  };
  let sent = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback) {
      sent += chunk.length;
      arm();
      cb(null, chunk);
    },
  });
  const fail = (err: unknown): UploadError => {
    if (err instanceof UploadError) return err;
    if (timedOut)
      return new UploadError(
        'timeout',
        `upload to ${where} made no progress for ${timeoutMs} ms (${sent} of ${size} bytes sent)`,
      );
    return new UploadError('io', `upload to ${where} failed after ${sent} of ${size} bytes: ${(err as Error).message}`);
  };
  arm();
  try {
    const r = send(url, {
      method: 'PUT',
      headers: { ...headers, 'Content-Type': mime || 'application/octet-stream', 'Content-Length': String(size) },
    });
    req = r;
    let sending: Promise<void> | undefined;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      r.once('response', resolve);
      r.once('error', reject);
      sending = pipeline(createReadStream(path, { highWaterMark: 1 << 16 }), meter, r);
      // A service may answer (and close) before reading everything: the status
      // is what matters then, so a failed send only rejects via r's 'error'.
      sending.catch(() => {});
    });
    arm();
    // Keep at most 512 bytes of the answer for the error text; drain the rest.
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      arm();
      if (text.length < 512) text += chunk.slice(0, 512 - text.length);
    });
    await new Promise<void>((resolve, reject) => {
      res.once('end', resolve);
      res.once('error', reject);
      res.once('close', () => (res.complete ? resolve() : reject(new Error('connection closed during the answer'))));
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      const detail = text.replace(/\s+/g, ' ').trim().slice(0, 200);
      throw new UploadError(
        'http',
        `upload to ${where} refused: HTTP ${status}${res.statusMessage ? ' ' + res.statusMessage : ''}${detail ? ` (${detail})` : ''}`,
        { status },
      );
    }
    await sending;
    if (sent !== size) throw new UploadError('io', `upload to ${where}: sent ${sent} bytes, expected ${size}`);
  } catch (err) {
    req?.destroy();
    throw fail(err);
  } finally {
    clearTimeout(timer);
  }
}
