// Project names from the intranet (optional reports.metadataUrlTemplate,
// answering JSON {"name": "Apollo"}), for the vCards of project JIDs. Cached
// (names for an hour, misses for five minutes), one request per project in
// flight, bounded waits: a name that is not known in time is simply left out,
// and nothing here is on the path of a report transfer.
import fetch from 'node-fetch';
import { reportUrl } from './http-source.js';

export interface ProjectNamesOptions {
  urlTemplate: string;
  authHeader: string;
  basicUser: string;
  basicPassword: string;
  timeoutMs: number;
  ttlMs?: number;
  missTtlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

const MAX_BODY = 64 * 1024;

/** A name fit for a roster: one line, no control characters, at most 80 code points. */
export function cleanName(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const chars = Array.from(
    raw
      // eslint-disable-next-line no-control-regex -- control characters are exactly what is replaced
      .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  );
  if (chars.length === 0) return undefined;
  return chars.length > 80 ? chars.slice(0, 79).join('') + '…' : chars.join('');
}

export class ProjectNames {
  private readonly cache = new Map<string, { name: string | undefined; until: number }>();
  private readonly inFlight = new Map<string, Promise<string | undefined>>();
  private readonly now: () => number;

  constructor(private readonly opts: ProjectNamesOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The project's name, waiting at most waitMs; a fetch still running then goes on and fills the cache. Never throws. */
  async get(project: string, waitMs: number): Promise<string | undefined> {
    const hit = this.cache.get(project);
    if (hit && hit.until > this.now()) return hit.name;
    let p = this.inFlight.get(project);
    if (!p) {
      p = this.load(project).finally(() => this.inFlight.delete(project));
      this.inFlight.set(project, p);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), waitMs)));
    try {
      return await Promise.race([p, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async load(project: string): Promise<string | undefined> {
    let name: string | undefined;
    let ok = false;
    try {
      name = await this.fetchName(project);
      ok = true;
    } catch {
      // unknown: cached as a miss for a while, so a broken intranet is not asked on every vCard request
    }
    const ttl = ok && name !== undefined ? (this.opts.ttlMs ?? 3600_000) : (this.opts.missTtlMs ?? 300_000);
    if (this.cache.size >= (this.opts.maxEntries ?? 10_000)) this.cache.delete(this.cache.keys().next().value!);
    this.cache.delete(project);
    this.cache.set(project, { name, until: this.now() + ttl });
    return name;
  }

  private async fetchName(project: string): Promise<string | undefined> {
    const headers: Record<string, string> = { 'user-agent': 'xmpp-reports', accept: 'application/json' };
    if (this.opts.authHeader) headers.authorization = this.opts.authHeader;
    else if (this.opts.basicUser)
      headers.authorization =
        'Basic ' + Buffer.from(`${this.opts.basicUser}:${this.opts.basicPassword}`).toString('base64');
    const res = await fetch(reportUrl(this.opts.urlTemplate, project), {
      headers,
      signal: AbortSignal.timeout(this.opts.timeoutMs),
      follow: 3,
      size: MAX_BODY,
    });
    if (!res.ok) {
      res.body?.resume();
      return undefined;
    }
    const data = (await res.json()) as { name?: unknown } | null;
    return cleanName(data?.name);
  }
}
