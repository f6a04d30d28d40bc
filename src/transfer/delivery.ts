// How a spooled report reaches the user. requests.ts hands every report to a
// Delivery and turns its outcome into a chat reply.
import type { Logger } from 'pino';
import type { SpooledReport } from '../reports/source.js';

export type Method = 's5b' | 'ibb';

export interface DeliveryRequest {
  report: SpooledReport;
  to: string; // the requester's full JID
  from: string; // the project's full JID, used for every stanza of the transfer
  log: Logger;
  signal?: AbortSignal; // aborted when the component shuts down
}

export type DeliveryOutcome = { kind: 'delivered'; method: Method; bytes: number } | { kind: 'notified' };

// interrupted: the component's own connection to the server dropped (IBB and
// pending negotiations cannot survive that); the caller may offer again.
// cancelled: we stopped it ourselves (shutdown after the grace period).
export type FailureReason = 'declined' | 'offer-timeout' | 'unsupported' | 'lost' | 'failed' | 'interrupted' | 'cancelled';

/** A delivery that did not complete; `sent` counts bytes written before it broke. */
export class DeliveryError extends Error {
  override name = 'DeliveryError';
  constructor(
    readonly reason: FailureReason,
    message: string,
    readonly sent = 0,
    readonly method?: Method,
  ) {
    super(message);
  }
}

export interface Delivery {
  /** True when deliver() hands over the file itself (the user is asked to accept it). */
  readonly sendsFiles: boolean;
  deliver(req: DeliveryRequest): Promise<DeliveryOutcome>;
}

/** Only tells the user the report is ready (no file transfer configured). */
export class NotifyDelivery implements Delivery {
  readonly sendsFiles = false;
  async deliver(_req: DeliveryRequest): Promise<DeliveryOutcome> {
    return { kind: 'notified' };
  }
}
