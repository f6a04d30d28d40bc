// What ends every wait of one delivery from outside the protocol: the
// component's server connection dropping, or a shutdown past its grace period.
import { DeliveryError } from './delivery.js';

export type StopReason = 'interrupted' | 'cancelled';

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
    const err = new DeliveryError({
      reason: why,
      message: why === 'cancelled' ? 'cancelled by shutdown' : 'the connection to the XMPP server was lost',
    });
    this.fire(err);
    for (const h of this.hooks) h(why, err);
  }

  /** Runs fn when triggered (streams and sockets that must end too). */
  onTrigger(fn: (why: StopReason, err: DeliveryError) => void): void {
    this.hooks.push(fn);
  }

  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.promise]);
  }
}
