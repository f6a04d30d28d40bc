// One request from start to end: who asks, for what, fetch, deliver, reply.
import { xml, type Element } from '@xmpp/component';
import type { Logger } from 'pino';
import { soon } from '../log.js';
import type { Addresses, Jid, Target } from '../xmpp/addresses.js';
import { ReportError, type ReportSource, type Report } from '../reports/source.js';
import { DeliveryError, type Delivery, type DeliveryProgress, type DeliveryRequest } from '../transfer/delivery.js';
import { oobMessage } from '../transfer/links/message.js';
import { ActiveRequests, type ActiveRequest, type ActiveRequestInfo } from './active.js';
import type { CommandParser } from './commands.js';
import { ConcurrencyGate, GateClosedError, QueueFullError, RateLimiter, SharedFetches, type Lease } from './limits.js';
import type { JournalNote, RequestJournal } from './journal.js';
import { formatSize, replies } from './replies.js';

export interface RequestDeps {
  addresses: Addresses;
  parser: CommandParser;
  source: ReportSource;
  delivery: Delivery;
  send: (el: Element) => Promise<void>;
  log: Logger;
  access: { allowedDomains: readonly string[]; allowJids: readonly string[]; denyJids: readonly string[] };
  maxBytes: number;
  example: string;
  limits: {
    requestsPerMinute: number;
    maxConcurrent: number;
    maxConcurrentPerUser: number;
    maxQueue: number;
    maxQueuedPerUser: number;
  };
  /** True when the intranet authorizes per user (requester header): downloads are then shared only per user. */
  perUserReports: boolean;
  /** Called once per report request with how it ended (delivered, declined, not-found, refused, …), for metrics. */
  onEnd?: (outcome: string) => void;
  /** Where requests being offered are noted, so a restart after a crash can tell their users. */
  journal?: RequestJournal;
  /** Resolves true once our link to the server is up (at once when it is), false when it stays down too long. */
  linkUp?: () => Promise<boolean>;
}

/** What a config reload may change; requests already running keep what they started with. */
export type ReloadableDeps = Partial<Pick<RequestDeps, 'source' | 'access' | 'maxBytes' | 'limits' | 'perUserReports'>>;

/** What a request can send back to its user. */
interface Output {
  say: (text: string) => Promise<void>;
  sendLink: (url: string, desc: string) => Promise<void>;
}

/** Offers of one report in all when our server link keeps dropping under them (see offer()). */
const OFFERS_AFTER_DROPS = 3;

export class Requests {
  private readonly active = new Set<Promise<void>>();
  private closed = false;
  private readonly shutdown = new AbortController();

  private rate: RateLimiter;
  private gate: ConcurrencyGate;
  private retiredGates: ConcurrencyGate[] = []; // replaced by a reload, still running or queueing requests
  private readonly jobs = new ActiveRequests();
  // A download is shared until its last byte has arrived (reports are handed on at their headers),
  // unless bytes the next request would need are gone (let go behind a lone reader: Report.share).
  private readonly shared = new SharedFetches<Report>(
    (r) => r.release(),
    (r) => r.arrived,
    (r) => r.share?.() ?? true,
  );

  constructor(private readonly deps: RequestDeps) {
    const l = deps.limits;
    this.rate = new RateLimiter({ limit: l.requestsPerMinute });
    this.gate = new ConcurrencyGate({
      maxTotal: l.maxConcurrent,
      maxPerKey: l.maxConcurrentPerUser,
      maxQueue: l.maxQueue,
      maxQueuedPerKey: l.maxQueuedPerUser,
    });
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** Report requests queued, being fetched or sent (for admins). */
  list(): ActiveRequestInfo[] {
    return this.jobs.list();
  }

  /** Cancels one; its user is told. Undefined when no such request is running. */
  cancel(id: string): ActiveRequestInfo | undefined {
    return this.jobs.cancel(id);
  }

  /**
   * The requester's full JID sent unavailable presence: offers waiting for it
   * (and transfers to it) end now, freeing its slots, instead of at the offer
   * timeout; each request then takes its usual way on (a link, or the reason).
   */
  receiverGone(jid: string): void {
    const n = this.jobs.receiverGone(jid);
    if (n > 0) this.deps.log.info({ jid, requests: n }, 'requester went offline; ending its offers');
  }

  /** Reports being sent now (for metrics). */
  get transferCount(): number {
    return this.jobs.transfers;
  }

  /** Applies a config reload. New limits apply to requests arriving from now on. */
  update(patch: ReloadableDeps): void {
    const limitsChanged =
      patch.limits !== undefined && JSON.stringify(patch.limits) !== JSON.stringify(this.deps.limits);
    Object.assign(this.deps, patch);
    if (!limitsChanged) return;
    const l = this.deps.limits;
    this.rate = new RateLimiter({ limit: l.requestsPerMinute });
    this.retiredGates = [...this.retiredGates, this.gate].filter((g) => g.running + g.queued > 0);
    this.gate = new ConcurrencyGate({
      maxTotal: l.maxConcurrent,
      maxPerKey: l.maxConcurrentPerUser,
      maxQueue: l.maxQueue,
      maxQueuedPerKey: l.maxQueuedPerUser,
    });
  }

  /** Handles a message stanza; never throws. Requests run concurrently. */
  handleMessage(el: Element, from: Jid, target: Target): void {
    const type = el.attrs.type ?? 'normal';
    // No answers to errors, group chats or bodiless messages (chat states,
    // receipts): that is how bot loops start.
    if (type === 'error' || type === 'groupchat' || type === 'headline') return;
    const body = el.getChildText('body');
    if (body === null || body.trim() === '') return;
    const replyFrom =
      target.kind === 'project' ? this.deps.addresses.projectFull(target.project) : this.deps.addresses.domain;
    const msgType = type === 'chat' ? 'chat' : 'normal';
    const say = (text: string) =>
      this.deps.send(xml('message', { from: replyFrom, to: from.full, type: msgType }, xml('body', {}, text)));
    const sendLink = (url: string, desc: string) =>
      this.deps.send(oobMessage({ from: replyFrom, to: from.full, url, desc, type: msgType }));
    const job = this.jobs.add(from.full, this.shutdown.signal);
    const task = this.run(body, from, target, { say, sendLink }, job).catch((err: unknown) => {
      job.outcome = 'error';
      this.deps.log.error({ jid: from.bare, err: (err as Error).message }, 'request failed unexpectedly');
    });
    this.active.add(task);
    void task.finally(() => {
      this.active.delete(task);
      this.jobs.remove(job);
      if (job.project !== undefined && job.outcome !== undefined) this.deps.onEnd?.(job.outcome);
    });
  }

  private async run(body: string, from: Jid, target: Target, out: Output, job: ActiveRequest): Promise<void> {
    const { say } = out;
    const { parser, example, addresses } = this.deps;
    const cmd = parser.parse(body, target);
    switch (cmd.kind) {
      case 'help':
        return say(replies.help(addresses.domain, example));
      case 'invalid-id':
        return say(replies.invalidId(cmd.text, example));
      case 'missing-id':
        return say(replies.missingId(example));
      case 'unknown':
        return say(replies.unknown(cmd.text, example));
      case 'report':
        break;
    }
    const project = cmd.project;
    job.project = project;
    const log = this.deps.log.child({ jid: from.full, project });
    const { access } = this.deps;
    if (
      access.denyJids.includes(from.bare) ||
      (!access.allowJids.includes(from.bare) && !access.allowedDomains.includes(from.domain))
    ) {
      log.warn('request refused: requester not allowed');
      job.outcome = 'refused';
      return say(replies.notAllowed(access.allowedDomains.join(', ')));
    }
    if (this.closed) {
      job.outcome = 'shutting-down';
      return say(replies.shuttingDown());
    }
    const rate = this.rate.take(from.bare);
    if (!rate.ok) {
      log.warn({ retryAfterMs: Math.round(rate.retryAfterMs) }, 'request refused: rate limit');
      job.outcome = 'rate-limited';
      return say(replies.rateLimited(Math.max(1, Math.ceil(rate.retryAfterMs / 1000))));
    }
    soon(() => log.info('report requested'));
    try {
      await this.gate.run(
        from.bare,
        () => this.serve(project, from, out, log, job),
        (position) => {
          job.stage = 'queued';
          soon(() => log.info({ position }, 'request queued'));
          void say(replies.queued(position)).catch(() => {});
        },
        // eager: the intranet request is written before this message's stanza has been through
        // the rest of @xmpp's middleware (0.1 ms earlier at 100 KiB, bench item 7)
        true,
      );
    } catch (err) {
      if (err instanceof QueueFullError) {
        log.warn({ err: err.message }, 'request refused: queue full');
        job.outcome = 'busy';
        return say(replies.busy());
      }
      if (err instanceof GateClosedError) {
        job.outcome = 'shutting-down';
        return say(replies.shuttingDown());
      }
      throw err;
    }
  }

  /** Fetches (sharing identical downloads in flight) and delivers one report. */
  private async serve(project: string, from: Jid, out: Output, log: Logger, job: ActiveRequest): Promise<void> {
    const { say } = out;
    job.stage = 'fetching';
    if (job.cancelled) {
      job.outcome = 'cancelled';
      return say(replies.cancelledByAdmin(`the report of project ${project}`));
    }
    // The intranet request goes out first: its answer is the longest wait of a small report.
    // With a per-user intranet header, users may see different reports: share only per user then.
    const key = this.deps.perUserReports ? `${project} ${from.bare}` : project;
    const started = Date.now();
    const leased = this.shared.acquire(key, () =>
      this.deps.source.fetch(project, { requester: from.bare, signal: this.shutdown.signal }),
    );
    leased.catch(() => {}); // awaited below
    // Written once the intranet request is on its socket (Node's HTTP client writes it on the next
    // tick, and this line's write would go first); awaited before anything else is said.
    const told = new Promise<void>((resolve) => setImmediate(resolve)).then(() => say(replies.fetching(project)));
    told.catch(() => {});
    // The client's disco#info is asked now, in parallel with the download, not after it (issue 15).
    const projectJid = this.deps.addresses.projectFull(project);
    const probe = from.resource ? this.deps.delivery.probe?.(projectJid, from.full) : undefined;
    // Noted in the journal now, while the report downloads, so the write is not on the critical path;
    // the file name follows once known. On disk before any offer (see deliver()).
    const note = from.resource
      ? this.deps.journal?.note({
          to: from.full,
          from: projectJid,
          project,
          file: `the report of project ${project}`,
          startedAt: new Date().toISOString(),
        })
      : undefined;
    const forget = () =>
      note?.forget().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'journal entry not removed'));
    log.debug('report download and disco#info started');
    let lease: Lease<Report>;
    try {
      lease = await leased;
    } catch (err) {
      await forget();
      await told;
      job.outcome = err instanceof ReportError ? err.kind : 'error';
      if (err instanceof ReportError) {
        log.warn({ reason: err.kind, ...err.detail, err: err.message }, 'report fetch failed');
        switch (err.kind) {
          case 'not-found':
            return say(replies.notFound(project));
          case 'forbidden':
            return say(replies.forbidden(project));
          case 'too-large':
            return say(replies.tooLarge(project, this.deps.maxBytes));
          case 'unavailable':
            // Reachable but failing (HTTP 5xx) is not the same story as unreachable.
            return say(
              typeof err.detail.status === 'number'
                ? replies.intranetError(project, err.detail.status)
                : replies.unavailable(project),
            );
        }
      }
      log.error({ err: (err as Error).message }, 'report fetch failed');
      return say(replies.internal(project));
    }
    const report = lease.value;
    const fetchMs = Date.now() - started;
    soon(() => log.info({ bytes: report.size, ms: fetchMs }, 'report fetched'));
    try {
      await told;
    } catch (err) {
      await forget();
      await lease.release().catch(() => {});
      throw err;
    }
    // The spooled copy is removed before the final reply, so a user who got
    // an answer never leaves a file behind.
    let final: string;
    try {
      job.stage = 'sending';
      job.file = { name: report.name, size: report.size };
      // A download shared with other requests is not aborted for one of them: an admin's cancel during it takes effect here.
      if (job.cancelled) {
        job.outcome = 'cancelled';
        final = replies.cancelledByAdmin(report.name);
      } else {
        void note?.name(report.name);
        final = await this.deliver(report, from, project, out, log, job, probe, note);
      }
    } finally {
      await forget();
      await lease
        .release()
        .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not remove spooled report'));
    }
    await say(final);
  }

  /** Hands the report over; returns the closing line for the user. */
  private async deliver(
    report: Report,
    from: Jid,
    project: string,
    out: Output,
    log: Logger,
    job: ActiveRequest,
    probe: DeliveryRequest['probe'],
    note: JournalNote | undefined,
  ): Promise<string> {
    const { say } = out;
    job.outcome = report.size === 0 ? 'empty' : 'notified';
    if (report.size === 0) return replies.empty(project);
    if (!from.resource) return replies.ready(report.name, report.size);
    // SI and Jingle await progress('offering') before they offer: the journal entry is on disk by then.
    const noted = note?.written.then((ok) => {
      if (!ok) log.warn('could not note the request in the journal');
    });
    const progress = async (p: DeliveryProgress) => {
      if (p.kind === 'offering') return noted;
      if (p.kind === 'offered') return say(replies.sending(report.name, report.size));
      await Promise.all([noted, say(replies.linkInstead(report.name, p.why))]);
    };
    return this.offer(report, from, project, out, log, job, progress, probe);
  }

  private async offer(
    first: Report,
    from: Jid,
    project: string,
    out: Output,
    log: Logger,
    job: ActiveRequest,
    progress: (p: DeliveryProgress) => Promise<void>,
    probe: DeliveryRequest['probe'],
  ): Promise<string> {
    const { say } = out;
    let report = first;
    // a report fetched anew for a later offer (see below), released here
    let again: Report | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const outcome = await this.deps.delivery.deliver({
            report,
            to: from.full,
            from: this.deps.addresses.projectFull(project),
            log,
            signal: job.signal,
            progress,
            // a second attempt (after our own connection dropped) asks again
            probe: attempt === 1 ? probe : undefined,
          });
          job.outcome = outcome.kind;
          if (outcome.kind === 'notified') return replies.ready(report.name, report.size);
          if (outcome.kind === 'linked') {
            // XEP-0066: body == URL plus <x xmlns='jabber:x:oob'> is what Conversations and others show as a file.
            await out.sendLink(outcome.url, `${report.name} (${formatSize(report.size)})`);
            return replies.linked(report.name, report.size, outcome.expiresAt);
          }
          return replies.delivered(report.name, report.size, outcome.method);
        } catch (err) {
          job.outcome = err instanceof DeliveryError ? err.reason : 'error';
          if (!(err instanceof DeliveryError)) {
            log.error({ err: (err as Error).message }, 'delivery failed unexpectedly');
            return replies.failed(report.name, 'an internal error');
          }
          if (err.reason === 'interrupted' && attempt < OFFERS_AFTER_DROPS && !this.closed) {
            // Our own link to the server dropped mid-way; once it is back, offer again (say() waits for it).
            // A cluster node that is stopping can take the link back for a moment and drop it again,
            // so this is tried more than once; the user is told the first time.
            log.warn({ bytes: err.sent, attempt }, 'delivery interrupted by a server disconnect; offering again');
            if (attempt === 1) await say(replies.interrupted(report.name));
            // Every new offer waits for the link, not only the first, which the line above waits for:
            // an offer made while it is still down fails at once and counts as a delivery failure.
            if (this.deps.linkUp && !(await this.deps.linkUp())) return failureText(err, report);
            if (report.share && !report.share()) {
              try {
                // its first reader let the bytes it sent go (Report.share): fetch the report anew
                const stale = again;
                again = undefined; // released once: here, or in finally if the fetch below fails
                await stale?.release();
                again = await this.deps.source.fetch(project, { requester: from.bare, signal: this.shutdown.signal });
                if (again.size !== first.size) throw new Error('the report changed on the intranet meanwhile');
                report = again;
              } catch (e) {
                log.warn({ err: (e as Error).message }, 'report could not be fetched again for another offer');
                return replies.failed(report.name, 'the report could not be fetched again');
              }
            }
            continue;
          }
          if (err.reason === 'cancelled' && job.cancelled) return replies.cancelledByAdmin(report.name);
          if (err.reason === 'source')
            log.warn(
              { method: err.method, bytes: err.sent, err: err.message },
              'report download broke during the transfer',
            );
          return failureText(err, report);
        }
      }
    } finally {
      await again?.release().catch(() => {});
    }
  }

  /**
   * Tells the users of requests an earlier run left in the journal (it was
   * killed while offering or sending them) that their file did not arrive.
   */
  async recover(): Promise<void> {
    const journal = this.deps.journal;
    if (!journal) return;
    const { entries, unreadable } = await journal.leftOver();
    if (unreadable > 0) this.deps.log.warn({ entries: unreadable }, 'unreadable journal entries dropped');
    for (const e of entries) {
      this.deps.log.warn(
        { jid: e.to, project: e.project, file: e.file, startedAt: e.startedAt },
        'request cut by a restart; telling its user',
      );
      await this.deps
        .send(xml('message', { from: e.from, to: e.to, type: 'chat' }, xml('body', {}, replies.restarted(e.file))))
        .catch((err: unknown) =>
          this.deps.log.warn({ jid: e.to, err: (err as Error).message }, 'could not tell the user'),
        );
    }
  }

  /**
   * Stops taking requests, lets running ones finish within graceMs, then
   * cuts the rest (their users are told) and waits briefly for their replies.
   */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    this.gate.close();
    for (const g of this.retiredGates) g.close();
    try {
      if (this.active.size === 0) return;
      this.deps.log.info({ active: this.active.size, graceMs }, 'waiting for running requests');
      if (await this.settledWithin(graceMs)) return;
      this.deps.log.warn({ active: this.active.size }, 'grace period over; cutting running transfers');
      this.shutdown.abort();
      await this.settledWithin(5000);
    } finally {
      this.deps.journal?.close();
    }
  }

  private async settledWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      Promise.allSettled([...this.active]).then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
    ]);
    clearTimeout(timer);
    return done;
  }
}

function failureText(err: DeliveryError, report: Report): string {
  switch (err.reason) {
    case 'declined':
      return replies.declined(report.name);
    case 'offer-timeout':
      return replies.offerTimeout(report.name);
    case 'unsupported':
      return replies.noFileTransfer(report.name);
    case 'no-method':
      return replies.noWay(report.name);
    case 'lost':
      return replies.lost(report.name, err.sent, report.size);
    case 'interrupted':
      return replies.failed(report.name, 'the connection to the chat server dropped');
    case 'cancelled':
      return replies.cutByShutdown(report.name);
    case 'source':
      // nothing reached the user yet: to them it is the intranet failing, as before any offer
      return err.sent > 0 ? replies.sourceBroke(report.name, report.project) : replies.unavailable(report.project);
    case 'failed':
      return replies.failed(report.name, err.message);
  }
}
