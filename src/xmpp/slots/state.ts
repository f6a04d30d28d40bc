// What this instance knows about ejabberd's balancing slots, from its probes
// (stanzas.ts), and what it should do about it. Pure: the clock and the token
// source are given; slots/keeper.ts does the I/O.
//
// A probe round sends fresh tokens, plus the tokens known to land on each of
// this instance's connections ("homes") and those found dead before. Each
// token ends the round as: back on one of our connections (self), answered by
// a peer (pong), or dropped: nobody holds its slot. Pongs need a token that
// lands on us (the probe's reply), so a round without one cannot tell a peer
// from a dead slot: its silent tokens count as unknown.
import type { SlotMessage } from './stanzas.js';

/** A connection of this instance: 'primary' (the one outbound stanzas go through) or a spare's id. */
export type Conn = string;
export const PRIMARY: Conn = 'primary';

export interface SlotWatchOptions {
  /** ejabberd's component_number */
  slots: number;
  /** after this instance gave a slot back, it takes no dead slot over for this long (the asker's turn) */
  holdOffMs: number;
  /** fresh tokens per round (default 4 per slot, at most 32): the chance a slot gets none is (1-1/slots)^probes */
  probes?: number;
  /**
   * after start, no takeover for this long (default holdOffMs): instances
   * started one after the other each take a slot of their own, rather than
   * the first taking the next one's slot and then giving it back
   */
  startGraceMs?: number;
  /** pongs answered per second at most (default 50); the rest are dropped */
  maxAnswersPerSecond?: number;
  /** rounds without any probe back before this instance calls itself slotless (default 2) */
  slotlessRounds?: number;
}

export type SlotEvent =
  /** tokens of a slot nobody holds were dropped (first round of an episode) */
  | { event: 'dead'; dropped: number; heldOff: boolean }
  /** a spare of ours received its first probe: it holds a slot */
  | { event: 'taken'; conn: Conn; deadForMs: number | undefined }
  /** no probe came back to any of our connections for some rounds */
  | { event: 'slotless'; rounds: number }
  /** every token is accounted for again (a dead slot is held by someone) */
  | { event: 'recovered'; deadForMs: number };

export type SlotAction =
  | { do: 'open-spare' }
  /** a spare that received none of its probes holds no slot */
  | { do: 'close-spare'; conn: Conn }
  /** send a release from a fresh token: a peer holding a slot with a spare gives it back */
  | { do: 'ask-release'; token: string };

export interface RoundResult {
  round: number;
  self: Record<Conn, number>;
  peers: string[];
  dropped: number;
  unknown: number;
  events: SlotEvent[];
  actions: SlotAction[];
}

type Outcome = { kind: 'self'; conn: Conn } | { kind: 'peer'; instance: string };

interface Round {
  n: number;
  conns: Set<Conn>;
  withReply: boolean;
  tokens: Map<string, Outcome | undefined>;
}

interface Spare {
  openedAt: number;
  confirmed: boolean;
  releasing: boolean;
}

const MAX_DEAD = 4;

export class SlotWatch {
  private roundNo = 0;
  private round: Round | undefined;
  /** a token known to land on each connection */
  private readonly homes = new Map<Conn, string>();
  /** tokens that were dropped, re-probed until someone holds their slot */
  private readonly dead = new Set<string>();
  private deadSince: number | undefined;
  private silentRounds = 0;
  private slotlessSaid = false;
  private readonly spares = new Map<Conn, Spare>();
  private spareOpening = false;
  private holdOffUntil = 0;
  private answers = { second: 0, count: 0 };
  /** probes that came back to each connection in the last round that ended; undefined before the first */
  private lastSelf: Record<Conn, number> | undefined;

  constructor(
    private readonly opts: SlotWatchOptions,
    readonly instance: string,
    private readonly newToken: () => string,
    private readonly now: () => number,
  ) {
    if (!Number.isInteger(opts.slots) || opts.slots < 1) throw new Error('slots must be a positive integer');
    this.holdOffUntil = now() + (opts.startGraceMs ?? opts.holdOffMs);
  }

  private get probesPerRound(): number {
    return this.opts.probes ?? Math.min(32, 4 * this.opts.slots);
  }

  /** A probe should run soon rather than at the normal interval: a slot is dead, we hold none, or a spare awaits its verdict. */
  get urgent(): boolean {
    return this.dead.size > 0 || this.silentRounds > 0 || [...this.spares.values()].some((s) => !s.confirmed);
  }

  get roundOpen(): boolean {
    return this.round !== undefined;
  }

  /** The spares that hold a slot (confirmed) and are not being given back. */
  get heldSpares(): Conn[] {
    return [...this.spares].filter(([, s]) => s.confirmed && !s.releasing).map(([c]) => c);
  }

  /** Starts a round over the connections online now; the caller sends the probes and ends it answerMs later. */
  beginRound(conns: readonly Conn[]): { round: number; probes: SlotMessage[] } {
    const n = ++this.roundNo;
    // homes of connections that are gone say nothing any more
    for (const c of [...this.homes.keys()]) if (!conns.includes(c)) this.homes.delete(c);
    const reply = this.homes.get(PRIMARY) ?? [...this.homes.values()][0];
    const tokens = new Map<string, Outcome | undefined>();
    for (const t of this.homes.values()) tokens.set(t, undefined);
    for (const t of this.dead) tokens.set(t, undefined);
    for (let i = 0; i < this.probesPerRound; i++) tokens.set(this.newToken(), undefined);
    this.round = { n, conns: new Set(conns), withReply: reply !== undefined, tokens };
    const probes = [...tokens.keys()].map((token): SlotMessage => ({
      kind: 'probe',
      token,
      instance: this.instance,
      ...(reply ? { reply } : {}),
    }));
    return { round: n, probes };
  }

  /**
   * A slot message arrived on connection conn. Returns the message to send
   * back (a pong), an event (a spare's first probe), or a give-back request.
   */
  received(m: SlotMessage, conn: Conn): { send?: SlotMessage; event?: SlotEvent; giveBack?: Conn } {
    if (m.instance === this.instance) {
      if (m.kind === 'probe') return { ...this.probeBack(m.token, conn) };
      return {}; // our own release, or a pong of ours, never expected back
    }
    switch (m.kind) {
      case 'probe':
        if (!m.reply || !this.mayAnswer()) return {};
        return {
          send: {
            kind: 'pong',
            token: m.reply,
            instance: this.instance,
            probe: m.token,
            ...(conn !== PRIMARY ? { spare: true } : {}),
          },
        };
      case 'pong':
        this.pong(m.probe ?? '', m.instance);
        return {};
      case 'release': {
        const conn = this.heldSpares[0];
        if (!conn) return {};
        this.spares.get(conn)!.releasing = true;
        // no takeover while we wait for transfers and the asker takes the slot
        this.holdOffUntil = Number.POSITIVE_INFINITY;
        return { giveBack: conn };
      }
    }
  }

  private probeBack(token: string, conn: Conn): { event?: SlotEvent } {
    const r = this.round;
    if (r?.tokens.has(token)) r.tokens.set(token, { kind: 'self', conn });
    if (!this.homes.has(conn)) this.homes.set(conn, token);
    this.dead.delete(token);
    const spare = this.spares.get(conn);
    if (spare && !spare.confirmed) {
      spare.confirmed = true;
      return {
        event: {
          event: 'taken',
          conn,
          deadForMs: this.deadSince === undefined ? undefined : this.now() - this.deadSince,
        },
      };
    }
    return {};
  }

  private pong(token: string, instance: string): void {
    const r = this.round;
    if (r?.tokens.has(token) && r.tokens.get(token) === undefined) r.tokens.set(token, { kind: 'peer', instance });
    this.dead.delete(token);
    for (const [c, t] of this.homes) if (t === token) this.homes.delete(c); // that slot is a peer's now
  }

  private mayAnswer(): boolean {
    const second = Math.floor(this.now() / 1000);
    if (second !== this.answers.second) this.answers = { second, count: 0 };
    return ++this.answers.count <= (this.opts.maxAnswersPerSecond ?? 50);
  }

  /** Ends the round: what came back, what to log, what to do. */
  endRound(): RoundResult {
    const r = this.round;
    if (!r) throw new Error('no probe round is open');
    this.round = undefined;
    const now = this.now();
    const self: Record<Conn, number> = {};
    for (const c of r.conns) self[c] = 0;
    const peers = new Set<string>();
    const silent: string[] = [];
    for (const [token, o] of r.tokens) {
      if (!o) silent.push(token);
      else if (o.kind === 'self') self[o.conn] = (self[o.conn] ?? 0) + 1;
      else peers.add(o.instance);
    }
    // a home that did not come back to its connection this round is no home
    for (const [c, t] of [...this.homes]) {
      const o = r.tokens.get(t);
      if (r.tokens.has(t) && !(o?.kind === 'self' && o.conn === c)) this.homes.delete(c);
    }
    const events: SlotEvent[] = [];
    const actions: SlotAction[] = [];
    const dropped = r.withReply ? silent.length : 0;
    const closing = new Set<Conn>();
    for (const [c, s] of this.spares) {
      if (r.conns.has(c) && !s.releasing && (self[c] ?? 0) === 0) {
        actions.push({ do: 'close-spare', conn: c });
        closing.add(c);
      }
    }
    // a spare on trial (online, no verdict yet) or one being opened: no second one
    const trying = this.spareOpening || [...this.spares].some(([c, s]) => !s.confirmed && !closing.has(c));
    const total = Object.values(self).reduce((a, b) => a + b, 0);
    if (dropped > 0) {
      for (const t of silent) if (this.dead.size < MAX_DEAD) this.dead.add(t);
      const heldOff = now < this.holdOffUntil;
      if (this.deadSince === undefined) {
        this.deadSince = now;
        events.push({ event: 'dead', dropped, heldOff });
      }
      if (!heldOff && !trying && total > 0) actions.push({ do: 'open-spare' });
    } else if (r.withReply) {
      this.dead.clear();
      if (this.deadSince !== undefined) events.push({ event: 'recovered', deadForMs: now - this.deadSince });
      this.deadSince = undefined;
    }
    this.lastSelf = self;
    if (total === 0) {
      this.silentRounds++;
      if (this.silentRounds >= (this.opts.slotlessRounds ?? 2)) {
        if (!this.slotlessSaid) events.push({ event: 'slotless', rounds: this.silentRounds });
        this.slotlessSaid = true;
        // ask for a slot, and try a handshake: the slot may be free already
        actions.push({ do: 'ask-release', token: this.newToken() });
        if (!trying && !actions.some((a) => a.do === 'open-spare')) actions.push({ do: 'open-spare' });
      }
    } else {
      this.silentRounds = 0;
      this.slotlessSaid = false;
    }
    return { round: r.n, self, peers: [...peers], dropped, unknown: r.withReply ? 0 : silent.length, events, actions };
  }

  /**
   * What an operator sees (/healthz, metrics): whether the primary connection
   * held a slot in the last round, how many spares hold one, and since when a
   * slot has been seen dead. `checked` is false until the first round ends.
   */
  status(): { checked: boolean; holdsSlot: boolean; spares: number; deadSince: number | undefined } {
    return {
      checked: this.lastSelf !== undefined,
      holdsSlot: (this.lastSelf?.[PRIMARY] ?? 0) > 0,
      spares: this.heldSpares.length,
      deadSince: this.deadSince,
    };
  }

  /** The keeper started opening a spare. */
  spareStarting(): void {
    this.spareOpening = true;
  }

  /** A spare is online (handshake done); it holds a slot once a probe comes back to it. */
  spareOnline(conn: Conn): void {
    this.spareOpening = false;
    this.spares.set(conn, { openedAt: this.now(), confirmed: false, releasing: false });
  }

  /** Opening a spare failed. */
  spareFailed(): void {
    this.spareOpening = false;
  }

  /** A connection is gone (closed by us or lost); a spare given back starts the hold-off. */
  connGone(conn: Conn, o: { gaveBack?: boolean } = {}): void {
    const s = this.spares.get(conn);
    this.homes.delete(conn);
    this.spares.delete(conn);
    if (o.gaveBack || s?.releasing) this.holdOffUntil = this.now() + this.opts.holdOffMs;
  }
}
