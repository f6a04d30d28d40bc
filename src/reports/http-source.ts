// Reports from the intranet over HTTP(S). The project id is percent-encoded
// into the URL template; the body is streamed to the spool with a size limit
// and an idle timeout, and HTTP outcomes become errors the user can read.
// When the intranet says how large the report is, the report is handed on at
// once and sent while it is still arriving.
import { httpGet, type HttpGetResponse } from './http-get.js';
import { spooledReport, type Spool } from './spool.js';
import {
  ReportError,
  extensionForMime,
  mimeForExtension,
  reportFileName,
  type FetchContext,
  type ReportSource,
  type Report,
} from './source.js';

export interface HttpSourceOptions {
  urlTemplate: string;
  authHeader: string;
  basicUser: string;
  basicPassword: string;
  requesterHeader: string;
  timeoutMs: number;
  maxBytes: number;
  fileName: string;
  maxRedirects?: number;
}

/**
 * The report URL for a project; the id is always percent-encoded. "." and ".."
 * are refused: URL parsing resolves them (even encoded as %2e) and would
 * leave the project's path.
 */
export function reportUrl(template: string, project: string): string {
  if (project === '' || project === '.' || project === '..' || /\p{Cs}/u.test(project))
    throw new ReportError('not-found', `not a project id: ${JSON.stringify(project)}`);
  return template.split('{project}').join(encodeURIComponent(project));
}

/** Error texts may quote the URL: never with credentials in it. */
function scrub(text: string): string {
  return text.replace(/\/\/[^/@\s]*@/g, '//');
}

export class HttpSource implements ReportSource {
  readonly kind = 'http';
  constructor(
    private readonly spool: Spool,
    private readonly opts: HttpSourceOptions,
  ) {}

  private headers(ctx: FetchContext): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'xmpp-reports', accept: '*/*' };
    if (this.opts.authHeader) h.authorization = this.opts.authHeader;
    else if (this.opts.basicUser)
      h.authorization = 'Basic ' + Buffer.from(`${this.opts.basicUser}:${this.opts.basicPassword}`).toString('base64');
    if (this.opts.requesterHeader) h[this.opts.requesterHeader.toLowerCase()] = ctx.requester;
    return h;
  }

  async fetch(project: string, ctx: FetchContext): Promise<Report> {
    const url = reportUrl(this.opts.urlTemplate, project);
    const abort = new AbortController();
    const onOuterAbort = () => abort.abort();
    ctx.signal?.addEventListener('abort', onOuterAbort, { once: true });
    let timedOut = false;
    // Re-armed on every chunk: a slow but moving download is fine, a stalled one is not.
    // refresh() moves the one timer on, cheaper per 64 KiB chunk than a new one.
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.opts.timeoutMs);
    const rearm = () => void timer.refresh();
    const logUrl = scrub(url);
    const done = () => {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onOuterAbort);
    };
    const describe = (err: Error): Error => {
      if (err instanceof ReportError) return err;
      if (timedOut)
        return new ReportError('unavailable', `intranet stalled for ${this.opts.timeoutMs} ms during the download`, {
          url: logUrl,
          cause: 'timeout',
        });
      return new ReportError('unavailable', `download failed: ${scrub(err.message)}`, { url: logUrl });
    };
    let handedOver = false;
    try {
      let res: HttpGetResponse;
      try {
        res = await httpGet(url, {
          headers: this.headers(ctx),
          signal: abort.signal,
          maxRedirects: this.opts.maxRedirects ?? 5,
        });
      } catch (err) {
        if (timedOut)
          throw new ReportError('unavailable', `intranet did not answer within ${this.opts.timeoutMs} ms`, {
            url: logUrl,
            cause: 'timeout',
          });
        throw new ReportError('unavailable', `intranet unreachable: ${scrub((err as Error).message)}`, {
          url: logUrl,
          cause: (err as { code?: string }).code ?? 'network',
        });
      }
      if (res.status === 404 || res.status === 410)
        throw new ReportError('not-found', `no report for project ${project}`, { url: logUrl, status: res.status });
      if (res.status === 401 || res.status === 403)
        throw new ReportError('forbidden', `intranet refused access (${res.status})`, {
          url: logUrl,
          status: res.status,
        });
      if (!res.ok || !res.body)
        throw new ReportError('unavailable', `intranet answered ${res.status}`, { url: logUrl, status: res.status });
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > this.opts.maxBytes) {
        throw new ReportError('too-large', 'report is larger than the limit', {
          size: declared,
          maxBytes: this.opts.maxBytes,
        });
      }
      // Content-Length is the size of what we read only when nothing was decoded (httpGet inflates gzip, deflate, br).
      const encoding = (res.headers.get('content-encoding') ?? 'identity').trim().toLowerCase();
      const known = Number.isSafeInteger(declared) && declared >= 0 && encoding === 'identity' ? declared : undefined;
      const mime = (res.headers.get('content-type') ?? '').split(';')[0].trim() || 'application/octet-stream';
      const ext = extensionForMime(mime) ?? /\.([A-Za-z0-9]{1,8})$/.exec(new URL(res.url || url).pathname)?.[1];
      const lastModified = Date.parse(res.headers.get('last-modified') ?? '');
      // The body goes straight into the spool (which pipes it, so a body cut mid-way fails at once);
      // the idle timer moves on at each chunk there, without a stream stage of its own.
      const file = this.spool.begin(res.body, {
        maxBytes: this.opts.maxBytes,
        signal: abort.signal,
        describe,
        onChunk: rearm,
        ...(known !== undefined ? { expectedSize: known } : {}),
      });
      handedOver = true;
      // A refused or failed download must not leave the intranet connection open.
      void file.done.then(done, () => {
        done();
        abort.abort();
      });
      // With the size known, the report can be offered now and sent while it arrives;
      // otherwise (chunked, compressed) the offer waits for the last byte.
      const size = known ?? (await file.done);
      return spooledReport(
        {
          project,
          name: reportFileName(this.opts.fileName, project, ext),
          mime: ext ? (mimeForExtension(ext) === 'application/octet-stream' ? mime : mimeForExtension(ext)) : mime,
          size,
          date: Number.isFinite(lastModified) ? new Date(lastModified) : new Date(),
        },
        file,
      );
    } finally {
      if (!handedOver) {
        done();
        abort.abort();
      }
    }
  }
}
