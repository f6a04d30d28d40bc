// How a spooled report reaches the user. requests.ts hands every report to a
// Delivery and turns its outcome into a chat reply.
import type { Logger } from 'pino';
import { ReportError, type Report } from '../reports/source.js';
import type { ClientInfo } from '../xmpp/caps.js';
import { LinkDownError, requestCondition, requestFailure } from '../xmpp/errors.js';

export type Method = 's5b' | 'ibb';

export interface DeliveryRequest {
  report: Report;
  to: string; // the requester's full JID
  from: string; // the project's full JID, used for every stanza of the transfer
  log: Logger;
  signal?: AbortSignal; // aborted when the component shuts down
  progress?: (p: DeliveryProgress) => Promise<void>;
  /** what the requester's client advertised (disco#info), when the chooser asked */
  client?: ClientInfo;
  /** the answer to a disco#info asked early (Delivery.probe), so it was not on the critical path */
  probe?: Promise<ClientInfo | 'unknown'>;
}

export type DeliveryOutcome =
  | { kind: 'delivered'; method: Method; bytes: number }
  | { kind: 'linked'; url: string; expiresAt: Date | undefined; why: LinkReason }
  | { kind: 'notified' };

/**
 * Why a user got a link rather than a file transfer. no-direct-connection:
 * no direct (SOCKS5) connection was possible and the client's in-band
 * transfer cannot be trusted to keep the file (Dino's Jingle IBB).
 */
export type LinkReason = 'no-file-transfer' | 'transfer-failed' | 'no-direct-connection' | 'went-offline' | 'no-answer';

/**
 * Steps of a delivery. offering: awaited just before a file offer goes out (the
 * request is on record by then); offered: the offer is on the wire, so the chat
 * line about it follows it on the same stream and the receiving client sees the
 * offer first; link-instead: awaited before a link is made.
 */
export type DeliveryProgress = { kind: 'offering' } | { kind: 'offered' } | { kind: 'link-instead'; why: LinkReason };

/** Tells progress that the offer just written is out; the line is not waited for (see DeliveryProgress). */
export function offerSent(req: Pick<DeliveryRequest, 'progress' | 'log'>): void {
  req
    .progress?.({ kind: 'offered' })
    .catch((err: unknown) => req.log.debug({ err: (err as Error).message }, 'the line about the offer was not sent'));
}

// interrupted: the component's own connection to the server dropped (IBB and
// pending negotiations cannot survive that); the caller may offer again.
// cancelled: we stopped it ourselves (shutdown after the grace period).
// source: the report's download broke while it was being sent.
// no-method: the client advertises none of the methods transfer.order allows.
export type FailureReason =
  | 'declined'
  | 'offer-timeout'
  | 'unsupported'
  | 'no-method'
  | 'lost'
  | 'failed'
  | 'interrupted'
  | 'cancelled'
  | 'source';

/** The abort reason a request's signal carries when the requester's client went offline. */
export class ReceiverGone extends Error {
  override name = 'ReceiverGone';
}

/** A delivery that did not complete. */
export class DeliveryError extends Error {
  override name = 'DeliveryError';
  readonly reason: FailureReason;
  /** bytes written (S5B) or acknowledged (IBB) before it broke */
  readonly sent: number;
  readonly method: Method | undefined;
  /** set when a link is the right way on (see LinkReason) */
  readonly linkWhy: LinkReason | undefined;
  /** the stanza error condition the offer was refused with, if that is how it ended */
  readonly condition: string | undefined;

  constructor(o: {
    reason: FailureReason;
    message: string;
    sent?: number;
    method?: Method;
    linkWhy?: LinkReason;
    condition?: string;
  }) {
    super(o.message);
    this.reason = o.reason;
    this.sent = o.sent ?? 0;
    this.method = o.method;
    this.linkWhy = o.linkWhy;
    this.condition = o.condition;
  }
}

export interface Delivery {
  deliver(req: DeliveryRequest): Promise<DeliveryOutcome>;
  /**
   * Starts asking what the client can take (disco#info) before the report is there, so the
   * answer is in when deliver() needs it (pass it as DeliveryRequest.probe). Never rejects.
   */
  probe?(from: string, to: string): Promise<ClientInfo | 'unknown'>;
}

/** The report's own download failed under a transfer (see Report.open): no other method can help. */
export function sourceFailure(err: unknown, sent: number, method?: Method): DeliveryError | undefined {
  return err instanceof ReportError
    ? new DeliveryError({ reason: 'source', message: err.message, sent, method })
    : undefined;
}

/**
 * The error an offer IQ (SI offer, Jingle session-initiate) came back with,
 * in the user's terms. onTimeout says what silence means for this offer.
 */
export function offerRefusal(err: unknown, log: Logger, what: string, onTimeout: DeliveryError): DeliveryError {
  // our own link dropped: nobody refused anything, and the request may be offered again once it is back
  if (err instanceof LinkDownError) {
    log.info(`${what} not sent: not connected to the XMPP server`);
    return new DeliveryError({ reason: 'interrupted', message: 'the connection to the XMPP server was lost' });
  }
  const condition = requestCondition(err);
  // ejabberd answers for a resource that went away: "User session not found".
  if (/session not found/i.test((err as { text?: string }).text ?? '')) {
    log.info({ condition }, 'receiver went offline');
    return new DeliveryError({ reason: 'failed', message: 'your chat client went offline' });
  }
  if ((err as Error).name === 'TimeoutError') {
    log.info(`${what} not answered in time`);
    return onTimeout;
  }
  log.info({ condition }, `${what} refused`);
  switch (condition) {
    case 'forbidden':
    case 'not-acceptable':
      return new DeliveryError({ reason: 'declined', message: 'declined' });
    case 'bad-request':
    case 'service-unavailable':
    case 'feature-not-implemented':
      return new DeliveryError({ reason: 'unsupported', message: condition, condition });
    case 'item-not-found':
    case 'recipient-unavailable':
      return new DeliveryError({ reason: 'failed', message: 'your chat client went offline' });
    default:
      return new DeliveryError({ reason: 'failed', message: requestFailure(err) });
  }
}
