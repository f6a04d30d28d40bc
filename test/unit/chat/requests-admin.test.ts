// The hooks admins and metrics use in requests.ts: list and cancel running
// report requests, the outcome of each request, and a config reload.
import { expect } from 'chai';
import { xml } from '@xmpp/component';
import { ReportError, type FetchContext, type ReportSource, type Report } from '../../../src/reports/source.js';
import { stubReport } from '../../support/reports.js';
import { requestsWith, until } from '../../support/requests.js';
import { parseJid } from '../../../src/xmpp/addresses.js';
import {
  DeliveryError,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRequest,
} from '../../../src/transfer/delivery.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function report(project: string, size = 10): Report {
  return stubReport(project, size);
}

/** A source that answers from a table; 'slow' takes 100 ms. */
class FakeSource implements ReportSource {
  readonly kind = 'fake';
  constructor(private readonly table: Record<string, 'ok' | 'empty' | 'missing' | 'slow'>) {}
  async fetch(project: string, ctx: FetchContext): Promise<Report> {
    const what = this.table[project] ?? 'missing';
    if (what === 'missing') throw new ReportError('not-found', 'no');
    if (what === 'slow') await new Promise((r) => setTimeout(r, 100));
    if (ctx.signal?.aborted) throw new Error('aborted');
    return report(project, what === 'empty' ? 0 : 10);
  }
}

/** A delivery that waits until aborted (or released by the test). */
class FakeDelivery implements Delivery {
  readonly started: DeliveryRequest[] = [];
  private release: (() => void) | undefined;
  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    this.started.push(req);
    await new Promise<void>((resolve, reject) => {
      this.release = resolve;
      req.signal?.addEventListener('abort', () =>
        reject(new DeliveryError({ reason: 'cancelled', message: 'cancelled', sent: 3, method: 'ibb' })),
      );
    });
    return { kind: 'delivered', method: 's5b', bytes: req.report.size };
  }
  finish(): void {
    this.release?.();
  }
}

function setup(table: Record<string, 'ok' | 'empty' | 'missing' | 'slow'>) {
  const outcomes: string[] = [];
  const delivery = new FakeDelivery();
  const { requests, ask, bodies } = requestsWith(new FakeSource(table), delivery, { onEnd: (o) => outcomes.push(o) });
  return { requests, delivery, ask, bodies, outcomes };
}

describe('chat/requests: admin and metrics hooks', () => {
  it('lists a running transfer with its requester, project, stage and file, and forgets it when done', async () => {
    const t = setup({ '1234': 'ok' });
    t.ask('1234');
    await until(() => t.delivery.started.length === 1);
    const list = t.requests.list();
    expect(list).to.have.length(1);
    expect(list[0]).to.include({ jid: 'alice@example.com/pc', project: '1234', stage: 'sending' });
    expect(list[0].file).to.deep.equal({ name: 'status-1234.pdf', size: 10 });
    expect(t.requests.transferCount).to.equal(1);
    t.delivery.finish();
    await until(() => t.outcomes.length === 1);
    expect(t.outcomes).to.deep.equal(['delivered']);
    expect(t.requests.list()).to.deep.equal([]);
    expect(t.requests.transferCount).to.equal(0);
  });

  it('cancels one transfer by id: only that one stops, its user is told, the outcome is "cancelled"', async () => {
    const t = setup({ '1': 'ok', '2': 'ok' });
    t.ask('1', 'alice@example.com/a');
    t.ask('2', 'bob@example.com/b');
    await until(() => t.delivery.started.length === 2);
    const one = t.requests.list().find((r) => r.project === '1')!;
    expect(t.requests.cancel(one.id)).to.include({ project: '1', jid: 'alice@example.com/a' });
    await until(() => t.outcomes.length === 1);
    expect(t.outcomes).to.deep.equal(['cancelled']);
    expect(t.bodies().at(-1)).to.equal(
      'An administrator cancelled sending status-1.pdf. Send me another message to ask again.',
    );
    expect(t.requests.list().map((r) => r.project)).to.deep.equal(['2']);
    expect(t.requests.cancel(one.id), 'cancelling twice').to.equal(undefined);
    expect(t.requests.cancel('no-such-id')).to.equal(undefined);
    t.delivery.finish();
    await until(() => t.outcomes.length === 2);
    expect(t.outcomes).to.deep.equal(['cancelled', 'delivered']);
  });

  it('a request cancelled while its report is being fetched is told so, and nothing is offered', async () => {
    const t = setup({ '7': 'slow' });
    t.ask('7');
    await until(() => t.requests.list().length === 1);
    expect(t.requests.list()[0].stage).to.equal('fetching');
    t.requests.cancel(t.requests.list()[0].id);
    // a download possibly shared with other requesters is not aborted; the request ends when it is in
    await until(() => t.outcomes.length === 1);
    expect(t.outcomes).to.deep.equal(['cancelled']);
    expect(t.delivery.started).to.have.length(0);
    expect(t.bodies().at(-1)).to.match(/^An administrator cancelled sending status-7\.pdf/);
  });

  it('reports how each report request ended; chat that is no request is not counted', async () => {
    const t = setup({ '5': 'empty' });
    t.ask('404');
    t.ask('5');
    t.ask('6', 'eve@elsewhere.example/x');
    t.requests.handleMessage(
      xml(
        'message',
        { from: 'alice@example.com/pc', to: 'reports.example.com', type: 'chat' },
        xml('body', {}, 'help'),
      ),
      parseJid('alice@example.com/pc')!,
      { kind: 'domain' },
    );
    await until(() => t.outcomes.length === 3);
    await sleep(20);
    expect([...t.outcomes].sort()).to.deep.equal(['empty', 'not-found', 'refused']);
  });

  it('applies a reload: access lists and the source change for new requests', async () => {
    const t = setup({});
    t.requests.update({
      access: { allowedDomains: ['elsewhere.example'], allowJids: [], denyJids: [] },
      source: new FakeSource({ '9': 'empty' }),
    });
    t.ask('9');
    t.ask('9', 'eve@elsewhere.example/x');
    await until(() => t.outcomes.length === 2);
    expect([...t.outcomes].sort()).to.deep.equal(['empty', 'refused']);
  });

  it('applies new limits from a reload to later requests', async () => {
    const t = setup({ '1': 'ok' });
    t.requests.update({
      limits: { requestsPerMinute: 1, maxConcurrent: 10, maxConcurrentPerUser: 10, maxQueue: 10, maxQueuedPerUser: 10 },
    });
    t.ask('1');
    t.ask('1');
    await until(() => t.outcomes.length === 1);
    expect(t.outcomes).to.deep.equal(['rate-limited']);
    t.delivery.finish();
    await until(() => t.outcomes.length === 2);
  });
});
