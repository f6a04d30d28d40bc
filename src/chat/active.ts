// Report requests in progress: what admins list and cancel (XEP-0050
// commands) and what the active-transfer gauge counts. Pure bookkeeping; each
// request gets its own abort signal, which also fires at shutdown.
import { setMaxListeners } from 'node:events';
import { ReceiverGone } from '../transfer/delivery.js';

export type Stage = 'queued' | 'fetching' | 'sending';

export interface ActiveRequestInfo {
  id: string;
  jid: string; // the requester's full JID
  project: string;
  stage: Stage;
  file: { name: string; size: number } | undefined;
  startedAt: Date;
}

export class ActiveRequest {
  project: string | undefined; // set once the message turned out to be a report request
  stage: Stage = 'fetching';
  file: { name: string; size: number } | undefined;
  /** How the request ended (requests_total's outcome label); unset for messages that were no report request. */
  outcome: string | undefined;
  readonly startedAt = new Date();
  private readonly own = new AbortController();
  /** Aborted by a shutdown (with its reason), an admin's cancel, or the requester going offline. */
  readonly signal = this.own.signal;
  private byAdmin = false;
  // A listener of its own on the shutdown signal rather than AbortSignal.any, whose weak references
  // cost ~0.1 ms per message here (bench item 7); dispose() takes it off when the request ends.
  private readonly onShutdown: () => void;

  constructor(
    readonly id: string,
    readonly jid: string,
    private readonly shutdown: AbortSignal,
  ) {
    this.onShutdown = () => this.own.abort(shutdown.reason);
    if (shutdown.aborted) this.onShutdown();
    else shutdown.addEventListener('abort', this.onShutdown, { once: true });
  }

  /** True once an admin cancelled it (as opposed to a shutdown, or its requester going offline). */
  get cancelled(): boolean {
    return this.byAdmin;
  }

  cancel(): void {
    if (this.signal.reason instanceof ReceiverGone) return; // ended by its requester leaving already
    this.byAdmin = true;
    this.own.abort();
  }

  dispose(): void {
    this.shutdown.removeEventListener('abort', this.onShutdown);
  }

  /** Its requester's client went offline: what is being offered to it ends now. */
  receiverGone(): void {
    this.own.abort(new ReceiverGone('the requester went offline'));
  }

  info(): ActiveRequestInfo | undefined {
    if (this.project === undefined) return undefined;
    return {
      id: this.id,
      jid: this.jid,
      project: this.project,
      stage: this.stage,
      file: this.file,
      startedAt: this.startedAt,
    };
  }
}

export class ActiveRequests {
  private seq = 0;
  private readonly byId = new Map<string, ActiveRequest>();

  add(jid: string, shutdown: AbortSignal): ActiveRequest {
    setMaxListeners(0, shutdown); // one listener per running request (and their downloads and transfers)
    const r = new ActiveRequest(String(++this.seq), jid, shutdown);
    this.byId.set(r.id, r);
    return r;
  }

  remove(r: ActiveRequest): void {
    r.dispose();
    this.byId.delete(r.id);
  }

  /** Report requests in progress, oldest first. */
  list(): ActiveRequestInfo[] {
    return [...this.byId.values()].map((r) => r.info()).filter((i): i is ActiveRequestInfo => i !== undefined);
  }

  /** Cancels a report request in progress; undefined when there is none with that id (any more). */
  cancel(id: string): ActiveRequestInfo | undefined {
    const r = this.byId.get(id);
    const info = r?.info();
    if (!r || !info || r.cancelled) return undefined;
    r.cancel();
    return info;
  }

  /** Ends the offers and transfers to one full JID that went offline; how many there were. */
  receiverGone(jid: string): number {
    let n = 0;
    for (const r of this.byId.values()) {
      if (r.jid !== jid || r.stage !== 'sending' || r.signal.aborted) continue;
      r.receiverGone();
      n++;
    }
    return n;
  }

  /** Report requests being fetched or sent. */
  get requests(): number {
    return this.list().length;
  }

  /** Reports being sent. */
  get transfers(): number {
    let n = 0;
    for (const r of this.byId.values()) if (r.project !== undefined && r.stage === 'sending') n++;
    return n;
  }
}
