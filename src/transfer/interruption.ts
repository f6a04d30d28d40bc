// What ends every wait of one delivery from outside the protocol: the
// component's server connection dropping, a shutdown past its grace period,
// or the requester's client going offline.
import { DeliveryError, ReceiverGone, type Method } from './delivery.js';

export type StopReason = 'interrupted' | 'cancelled' | 'gone';

/** Why a request's abort signal fired: the requester went offline, else a shutdown or an admin's cancel. */
export function stopReasonOf(signal: AbortSignal): StopReason {
  return signal.reason instanceof ReceiverGone ? 'gone' : 'cancelled';
}

export class Interruption {
  /** Rejects with a DeliveryError once trigger() ran. */
  readonly promise: Promise<never>;
  stopped: StopReason | undefined;
  private fire!: (e: Error) => void;
  private readonly hooks: Array<(why: StopReason, err: DeliveryError) => void> = [];

  constructor() {
    this.promise = new Promise<never>((_r, reject) => (this.fire = reject));
    this.promise.catch(() => {});
  }

  trigger(why: StopReason): void {
    if (this.stopped) return;
    this.stopped = why;
    const err = this.failure();
    this.fire(err);
    for (const h of this.hooks) h(why, err);
  }

  /** A shutdown or a vanished receiver ends the bytestream too; the server link dropping does not (TCP is ours). */
  get cuts(): boolean {
    return this.stopped === 'cancelled' || this.stopped === 'gone';
  }

  /** What the stop means for the user, with the bytes sent before it. */
  failure(sent = 0, method?: Method, message?: string): DeliveryError {
    switch (this.stopped) {
      case 'gone':
        return new DeliveryError({
          reason: 'failed',
          message: 'your chat client went offline',
          sent,
          method,
          linkWhy: 'went-offline',
        });
      case 'cancelled':
        return new DeliveryError({ reason: 'cancelled', message: message ?? 'cancelled by shutdown', sent, method });
      default:
        return new DeliveryError({
          reason: 'interrupted',
          message: message ?? 'the connection to the XMPP server was lost',
          sent,
          method,
        });
    }
  }

  /** Runs fn when triggered (streams and sockets that must end too). */
  onTrigger(fn: (why: StopReason, err: DeliveryError) => void): void {
    this.hooks.push(fn);
  }

  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.promise]);
  }
}
