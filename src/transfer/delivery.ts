// How a spooled report reaches the user. requests.ts hands every report to a
// Delivery and turns its outcome into a chat reply.
import type { Logger } from 'pino';
import { ReportError, type SpooledReport } from '../reports/source.js';
import type { ClientInfo } from '../xmpp/caps.js';

export type Method = 's5b' | 'ibb';

export interface DeliveryRequest {
  report: SpooledReport;
  to: string; // the requester's full JID
  from: string; // the project's full JID, used for every stanza of the transfer
  log: Logger;
  signal?: AbortSignal; // aborted when the component shuts down
  progress?: (p: DeliveryProgress) => Promise<void>;
  /** what the requester's client advertised (disco#info), when the chooser asked */
  client?: ClientInfo;
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
export type LinkReason = 'no-file-transfer' | 'transfer-failed' | 'no-direct-connection';

/** Steps the user hears about while a delivery runs. */
export type DeliveryProgress = { kind: 'offering' } | { kind: 'link-instead'; why: LinkReason };

// interrupted: the component's own connection to the server dropped (IBB and
// pending negotiations cannot survive that); the caller may offer again.
// cancelled: we stopped it ourselves (shutdown after the grace period).
// source: the report's download broke while it was being sent.
export type FailureReason =
  'declined' | 'offer-timeout' | 'unsupported' | 'lost' | 'failed' | 'interrupted' | 'cancelled' | 'source';

/** A delivery that did not complete; `sent` counts bytes written before it broke. */
export class DeliveryError extends Error {
  override name = 'DeliveryError';
  constructor(
    readonly reason: FailureReason,
    message: string,
    readonly sent = 0,
    readonly method?: Method,
    /** set when a link is the right way on (see LinkReason) */
    readonly linkWhy?: LinkReason,
  ) {
    super(message);
  }
}

export interface Delivery {
  deliver(req: DeliveryRequest): Promise<DeliveryOutcome>;
}

/** The report's own download failed under a transfer (see SpooledReport.open): no other method can help. */
export function sourceFailure(err: unknown, sent: number, method?: Method): DeliveryError | undefined {
  return err instanceof ReportError ? new DeliveryError('source', err.message, sent, method) : undefined;
}

/**
 * The error an offer IQ (SI offer, Jingle session-initiate) came back with,
 * in the user's terms. onTimeout says what silence means for this offer.
 */
export function offerRefusal(err: unknown, log: Logger, what: string, onTimeout: DeliveryError): DeliveryError {
  const condition = (err as { condition?: string }).condition;
  // ejabberd answers for a resource that went away: "User session not found".
  if (/session not found/i.test((err as { text?: string }).text ?? '')) {
    log.info({ condition }, 'receiver went offline');
    return new DeliveryError('failed', 'your chat client went offline');
  }
  if ((err as Error).name === 'TimeoutError') {
    log.info(`${what} not answered in time`);
    return onTimeout;
  }
  log.info({ condition }, `${what} refused`);
  switch (condition) {
    case 'forbidden':
    case 'not-acceptable':
      return new DeliveryError('declined', 'declined');
    case 'bad-request':
    case 'service-unavailable':
    case 'feature-not-implemented':
      return new DeliveryError('unsupported', condition);
    case 'item-not-found':
    case 'recipient-unavailable':
      return new DeliveryError('failed', 'your chat client went offline');
    default:
      return new DeliveryError('failed', condition ?? (err as Error).message);
  }
}
