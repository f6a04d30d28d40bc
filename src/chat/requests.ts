// One request from start to end: who asks, for what, fetch, deliver, reply.
import { xml, type Element } from '@xmpp/component';
import type { Logger } from 'pino';
import type { Addresses, Jid, Target } from '../xmpp/addresses.js';
import { ReportError, type ReportSource, type SpooledReport } from '../reports/source.js';
import { DeliveryError, type Delivery } from '../transfer/delivery.js';
import type { CommandParser } from './commands.js';
import { replies } from './replies.js';

export interface RequestDeps {
  addresses: Addresses;
  parser: CommandParser;
  source: ReportSource;
  delivery: Delivery;
  send: (el: Element) => Promise<void>;
  log: Logger;
  allowedDomains: readonly string[];
  maxBytes: number;
  example: string;
}

export class Requests {
  private readonly active = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly deps: RequestDeps) {}

  get activeCount(): number {
    return this.active.size;
  }

  /** Handles a message stanza; never throws. Requests run concurrently. */
  handleMessage(el: Element, from: Jid, target: Target): void {
    const type = el.attrs.type ?? 'normal';
    // No answers to errors, group chats or bodiless messages (chat states,
    // receipts): that is how bot loops start.
    if (type === 'error' || type === 'groupchat' || type === 'headline') return;
    const body = el.getChildText('body');
    if (body === null || body.trim() === '') return;
    const replyFrom = target.kind === 'project' ? this.deps.addresses.projectFull(target.project) : this.deps.addresses.domain;
    const say = (text: string) => this.deps.send(xml('message', { from: replyFrom, to: from.full, type: type === 'chat' ? 'chat' : 'normal' }, xml('body', {}, text)));
    const task = this.run(body, from, target, say).catch((err: unknown) => {
      this.deps.log.error({ jid: from.bare, err: (err as Error).message }, 'request failed unexpectedly');
    });
    this.active.add(task);
    void task.finally(() => this.active.delete(task));
  }

  private async run(body: string, from: Jid, target: Target, say: (text: string) => Promise<void>): Promise<void> {
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
    const log = this.deps.log.child({ jid: from.full, project });
    if (!this.deps.allowedDomains.includes(from.domain)) {
      log.warn('request refused: requester domain not allowed');
      return say(replies.notAllowed(this.deps.allowedDomains.join(', ')));
    }
    if (this.closed) return say(replies.unavailable(project));
    log.info('report requested');
    await say(replies.fetching(project));
    const started = Date.now();
    let report: SpooledReport;
    try {
      report = await this.deps.source.fetch(project, { requester: from.bare });
    } catch (err) {
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
            return say(replies.unavailable(project));
        }
      }
      log.error({ err: (err as Error).message }, 'report fetch failed');
      return say(replies.internal(project));
    }
    log.info({ bytes: report.size, sha256: report.sha256, ms: Date.now() - started }, 'report fetched');
    // The spooled copy is removed before the final reply, so a user who got
    // an answer never leaves a file behind.
    let final: string;
    try {
      final = await this.deliver(report, from, project, say, log);
    } finally {
      await report.release().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not remove spooled report'));
    }
    await say(final);
  }

  /** Hands the report over; returns the closing line for the user. */
  private async deliver(report: SpooledReport, from: Jid, project: string, say: (text: string) => Promise<void>, log: Logger): Promise<string> {
    if (report.size === 0) return replies.empty(project);
    if (!from.resource) return replies.ready(report.name, report.size);
    try {
      if (this.deps.delivery.sendsFiles) await say(replies.sending(report.name, report.size));
      const outcome = await this.deps.delivery.deliver({ report, to: from.full, from: this.deps.addresses.projectFull(project), log });
      if (outcome.kind === 'notified') return replies.ready(report.name, report.size);
      return replies.delivered(report.name, report.size, outcome.method);
    } catch (err) {
      if (!(err instanceof DeliveryError)) {
        log.error({ err: (err as Error).message }, 'delivery failed unexpectedly');
        return replies.failed(report.name, 'an internal error');
      }
      switch (err.reason) {
        case 'declined':
          return replies.declined(report.name);
        case 'offer-timeout':
          return replies.offerTimeout(report.name);
        case 'unsupported':
          return replies.noFileTransfer(report.name);
        case 'lost':
          return replies.lost(report.name, err.sent, report.size);
        case 'failed':
          return replies.failed(report.name, err.message);
      }
    }
  }

  /** Stops taking requests and waits (bounded) for running ones. */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    if (this.active.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.active]), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
  }
}
