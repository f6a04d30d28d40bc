// A delivery cut by our own server link is offered again (requests.ts): with a report that let the
// bytes its first reader sent go (Report.share false), the second offer gets the report fetched again.
import { expect } from 'chai';
import type { FetchContext, ReportSource, Report } from '../../../src/reports/source.js';
import { stubReport } from '../../support/reports.js';
import { requestsWith, until } from '../../support/requests.js';
import {
  DeliveryError,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRequest,
} from '../../../src/transfer/delivery.js';

/** Reports that say whether they still hold every byte (share), counting fetches and releases. */
class CountingSource implements ReportSource {
  readonly kind = 'counting';
  fetched = 0;
  released: number[] = [];
  constructor(
    private readonly whole: boolean,
    private readonly sizes: number[] = [],
  ) {}
  async fetch(project: string, _ctx: FetchContext): Promise<Report> {
    const n = ++this.fetched;
    return {
      ...stubReport(project, this.sizes[n - 1] ?? 10),
      share: () => this.whole,
      release: async () => void this.released.push(n),
      // which fetch this is, for the test to see which report an offer carried
      mime: `application/x-fetch-${n}`,
    };
  }
}

/** Fails the first `cuts` offers as cut by our server link, delivers the next. */
class InterruptedOnce implements Delivery {
  readonly offered: Report[] = [];
  constructor(private readonly cuts = 1) {}
  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    this.offered.push(req.report);
    if (this.offered.length <= this.cuts)
      throw new DeliveryError({ reason: 'interrupted', message: 'server link dropped', sent: 5, method: 's5b' });
    return { kind: 'delivered', method: 's5b', bytes: req.report.size };
  }
}

function setup(source: CountingSource, cuts = 1) {
  const delivery = new InterruptedOnce(cuts);
  const { ask, bodies } = requestsWith(source, delivery);
  return { delivery, ask: () => ask('1234'), bodies };
}

describe('chat/requests: offered again after our server link dropped', () => {
  it('a report that let its sent bytes go is fetched again for the second offer; both are released', async () => {
    const source = new CountingSource(false);
    const t = setup(source);
    t.ask();
    await until(() => t.bodies().some((b) => b.startsWith('Delivered')));
    expect(source.fetched).to.equal(2);
    expect(t.delivery.offered.map((r) => r.mime)).to.deep.equal(['application/x-fetch-1', 'application/x-fetch-2']);
    expect(source.released.sort()).to.deep.equal([1, 2]);
  });

  it('a report that still holds every byte is offered again as it is, fetched once', async () => {
    const source = new CountingSource(true);
    const t = setup(source);
    t.ask();
    await until(() => t.bodies().some((b) => b.startsWith('Delivered')));
    expect(source.fetched).to.equal(1);
    expect(t.delivery.offered.map((r) => r.mime)).to.deep.equal(['application/x-fetch-1', 'application/x-fetch-1']);
    expect(source.released).to.deep.equal([1]);
  });

  it('a report that changed size on the intranet meanwhile is not offered again: the user is told', async () => {
    const source = new CountingSource(false, [10, 12]);
    const t = setup(source);
    t.ask();
    await until(() => t.bodies().some((b) => b.startsWith('Could not send')));
    expect(t.bodies().at(-1)).to.equal(
      'Could not send status-1234.pdf: the report could not be fetched again. Send me another message to try again.',
    );
    expect(t.delivery.offered).to.have.length(1);
    expect(source.released.sort()).to.deep.equal([1, 2]);
  });

  it('a link that drops again under the second offer (a cluster node stopping) gets a third; the user is told once', async () => {
    const t = setup(new CountingSource(true), 2);
    t.ask();
    await until(() => t.bodies().some((b) => b.startsWith('Delivered')));
    expect(t.delivery.offered).to.have.length(3);
    expect(t.bodies().filter((b) => b.includes('offering it again'))).to.have.length(1);
  });

  it('every offer after a cut waits for the link to be up again, the third as well as the second', async () => {
    const delivery = new InterruptedOnce(2);
    const waits: Array<(up: boolean) => void> = [];
    const { ask, bodies } = requestsWith(new CountingSource(true), delivery, {
      linkUp: () => new Promise<boolean>((resolve) => waits.push(resolve)),
    });
    ask('1234');
    await until(() => waits.length === 1);
    expect(delivery.offered).to.have.length(1); // not offered again while the link is down
    waits[0](true);
    await until(() => waits.length === 2);
    expect(delivery.offered).to.have.length(2);
    waits[1](true);
    await until(() => bodies().some((b) => b.startsWith('Delivered')));
    expect(delivery.offered).to.have.length(3);
  });

  it('a link that does not come back: no further offer, and the user is told it did not arrive', async () => {
    const delivery = new InterruptedOnce(1);
    const { ask, bodies } = requestsWith(new CountingSource(true), delivery, { linkUp: async () => false });
    ask('1234');
    await until(() => bodies().some((b) => b.startsWith('Could not send')));
    expect(delivery.offered).to.have.length(1);
  });

  it('three offers cut by the link in a row: the user is told it did not arrive', async () => {
    const t = setup(new CountingSource(true), 3);
    t.ask();
    await until(() => t.bodies().some((b) => b.startsWith('Could not send')));
    expect(t.delivery.offered).to.have.length(3);
    expect(t.bodies().some((b) => b.startsWith('Delivered'))).to.equal(false);
  });
});
