// The I/O of slot takeover (state.ts decides): probe rounds on a timer, spare
// connections that take a dead slot and serve it like the primary, and the
// give-back of a spare when a slotless peer asks for it.
import { randomBytes } from 'node:crypto';
import type { Element } from '@xmpp/component';
import type { Logger } from 'pino';
import type { SpareLink } from '../connection.js';
import { PRIMARY, SlotWatch, type Conn, type SlotEvent } from './state.js';
import { buildSlotMessage, isSlotAddress, parseSlotMessage, type SlotMessage } from './stanzas.js';

export interface SlotKeeperOptions {
  domain: string;
  /** ejabberd's component_number for the domain */
  slots: number;
  /** the normal interval between probe rounds */
  checkMs: number;
  /** how long a probe waits for its echo or a pong */
  answerMs: number;
  /** how long a spare asked to give its slot back waits for the transfers of its users */
  releaseWaitMs: number;
  /** after a give-back, no takeover for this long */
  holdOffMs: number;
  /** a spare's handshake, at most (default 10 s) */
  spareTimeoutMs?: number;
}

export interface SlotKeeperDeps {
  /** sends through the primary connection */
  send(el: Element): Promise<void>;
  /** Connection.openSpare */
  openSpare(intercept: (el: Element) => boolean, timeoutMs: number): Promise<SpareLink>;
  online(): boolean;
  /** a request still running for a user this predicate accepts (bare JIDs) */
  busy(user: (bare: string) => boolean): boolean;
  log: Logger;
}

interface Spare {
  link: SpareLink;
  /** bare JIDs whose stanzas came through this spare (capped: past it, every user counts) */
  users: Set<string>;
  overflow: boolean;
  givingBack: boolean;
}

const MAX_USERS = 10000;
/** fast rounds (a dead slot, no slot, a spare on trial) stop after this long, then the normal interval */
const URGENT_FOR_MS = 60000;

export class SlotKeeper {
  readonly watch: SlotWatch;
  private readonly spares = new Map<Conn, Spare>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private spareNo = 0;
  private urgentSince: number | undefined;

  constructor(
    private readonly opts: SlotKeeperOptions,
    private readonly deps: SlotKeeperDeps,
  ) {
    this.watch = new SlotWatch(
      { slots: opts.slots, holdOffMs: opts.holdOffMs },
      randomBytes(4).toString('hex'),
      () => randomBytes(8).toString('hex'),
      () => Date.now(),
    );
  }

  get instance(): string {
    return this.watch.instance;
  }

  /** For /healthz and the metrics: see SlotWatch.status. */
  status(): { slots: number } & ReturnType<SlotWatch['status']> {
    return { slots: this.opts.slots, ...this.watch.status() };
  }

  start(): void {
    this.stopped = false;
    this.deps.log.info(
      { instance: this.instance, slots: this.opts.slots, checkMs: this.opts.checkMs },
      'watching the balancing slots',
    );
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.all([...this.spares.values()].map((s) => s.link.close()));
  }

  /**
   * Takes a stanza addressed to the slot protocol (xr-slot-…@domain), from any
   * connection: it never reaches the chat layer. False for everything else.
   */
  take(el: Element, conn: Conn = PRIMARY): boolean {
    if (el.name !== 'message' || !isSlotAddress(el.attrs.to, this.opts.domain)) return false;
    const m = parseSlotMessage(el, this.opts.domain);
    if (!m) return true; // not from us (a user writing to xr-slot-…): dropped
    const r = this.watch.received(m, conn);
    if (r.send) this.sendSlot(r.send);
    if (r.event) this.logEvent(r.event);
    if (r.giveBack) void this.giveBack(r.giveBack);
    return true;
  }

  private sendSlot(m: SlotMessage): void {
    this.deps.send(buildSlotMessage(m, this.opts.domain)).catch(() => {
      // the link is down: the round counts the probe as unanswered, which is true
    });
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.round(), ms);
    this.timer.unref();
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    if (!this.deps.online()) return this.schedule(this.opts.checkMs);
    const { probes } = this.watch.beginRound([PRIMARY, ...this.spares.keys()]);
    for (const p of probes) this.sendSlot(p);
    await sleep(this.opts.answerMs);
    if (this.stopped) return;
    const r = this.watch.endRound();
    this.deps.log.debug(
      { round: r.round, self: r.self, peers: r.peers, dropped: r.dropped, unknown: r.unknown },
      'balancing probe round',
    );
    for (const e of r.events) this.logEvent(e);
    for (const a of r.actions) {
      if (a.do === 'close-spare') await this.closeSpare(a.conn, 'it holds no balancing slot');
      else if (a.do === 'ask-release') this.sendSlot({ kind: 'release', token: a.token, instance: this.instance });
    }
    if (r.actions.some((a) => a.do === 'open-spare')) await this.openSpare();
    const now = Date.now();
    if (!this.watch.urgent) this.urgentSince = undefined;
    else this.urgentSince ??= now;
    const fast = this.urgentSince !== undefined && now - this.urgentSince < URGENT_FOR_MS;
    this.schedule(fast ? 50 : Math.max(50, this.opts.checkMs - this.opts.answerMs));
  }

  private async openSpare(): Promise<void> {
    const conn = `spare-${++this.spareNo}`;
    this.watch.spareStarting();
    const spare: Spare = {
      link: undefined as unknown as SpareLink,
      users: new Set(),
      overflow: false,
      givingBack: false,
    };
    try {
      spare.link = await this.deps.openSpare((el) => {
        if (this.take(el, conn)) return true;
        const from = el.attrs.from;
        if (from && !spare.overflow) {
          if (spare.users.size >= MAX_USERS) spare.overflow = true;
          else spare.users.add(from.split('/')[0].toLowerCase());
        }
        return false;
      }, this.opts.spareTimeoutMs ?? 10000);
    } catch (err) {
      this.watch.spareFailed();
      this.deps.log.warn({ err: (err as Error).message }, 'could not open a spare connection for a balancing slot');
      return;
    }
    if (this.stopped) return void spare.link.close();
    this.spares.set(conn, spare);
    this.watch.spareOnline(conn);
    this.deps.log.debug({ conn, server: spare.link.server }, 'spare connection online');
    spare.link.onClosed(() => {
      if (!this.spares.has(conn)) return;
      this.spares.delete(conn);
      this.watch.connGone(conn);
      if (!this.stopped) this.deps.log.warn({ conn }, 'spare connection lost');
    });
  }

  private async closeSpare(conn: Conn, why: string, o: { gaveBack?: boolean } = {}): Promise<void> {
    const s = this.spares.get(conn);
    if (!s) return;
    this.spares.delete(conn);
    this.watch.connGone(conn, o);
    this.deps.log.debug({ conn, why }, 'closing a spare connection');
    await s.link.close();
  }

  /** A slotless peer asked: wait (bounded) for the transfers of this spare's users, then close it. */
  private async giveBack(conn: Conn): Promise<void> {
    const s = this.spares.get(conn);
    if (!s || s.givingBack) return;
    s.givingBack = true;
    const started = Date.now();
    const mine = (bare: string) => s.overflow || s.users.has(bare);
    while (this.deps.busy(mine) && Date.now() - started < this.opts.releaseWaitMs && !this.stopped) await sleep(100);
    const busy = this.deps.busy(mine);
    await this.closeSpare(conn, 'a peer asked for its slot', { gaveBack: true });
    this.deps.log.info(
      { conn, waitedMs: Date.now() - started, users: s.users.size, ...(busy ? { cutShort: true } : {}) },
      busy
        ? 'balancing slot given back before its transfers ended (xmpp.balancing.releaseWaitMs)'
        : 'balancing slot given back',
    );
  }

  private logEvent(e: SlotEvent): void {
    const log = this.deps.log;
    switch (e.event) {
      case 'dead':
        return log.warn(
          { dropped: e.dropped, ...(e.heldOff ? { heldOff: true } : {}) },
          e.heldOff
            ? 'balancing slot dead; left to the instance that asked for it'
            : 'balancing slot dead: the server drops its stanzas; taking it over',
        );
      case 'taken':
        return log.info(
          { conn: e.conn, ...(e.deadForMs !== undefined ? { deadForMs: e.deadForMs } : {}) },
          'balancing slot taken over',
        );
      case 'slotless':
        return log.warn({ rounds: e.rounds }, 'this instance holds no balancing slot; asking for one');
      case 'recovered':
        return log.info({ deadForMs: e.deadForMs }, 'every balancing slot is served again');
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
