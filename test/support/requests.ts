// chat/requests.ts under unit tests: a Requests with a given source and delivery, the lines it
// sends its user, and a way to ask it for a project's report.
import { xml, type Element } from '@xmpp/component';
import { pino } from 'pino';
import { CommandParser } from '../../src/chat/commands.js';
import { Requests, type RequestDeps } from '../../src/chat/requests.js';
import type { ReportSource } from '../../src/reports/source.js';
import type { Delivery } from '../../src/transfer/delivery.js';
import { Addresses, parseJid } from '../../src/xmpp/addresses.js';

export function requestsWith(source: ReportSource, delivery: Delivery, more: Partial<RequestDeps> = {}) {
  const sent: Element[] = [];
  const requests = new Requests({
    addresses: new Addresses('reports.example.com', 'reports'),
    parser: new CommandParser('^[0-9]{1,12}$'),
    source,
    delivery,
    send: async (el) => void sent.push(el),
    log: pino({ level: 'silent' }),
    access: { allowedDomains: ['example.com'], allowJids: [], denyJids: [] },
    maxBytes: 1000,
    example: '1234',
    limits: { requestsPerMinute: 100, maxConcurrent: 10, maxConcurrentPerUser: 10, maxQueue: 10, maxQueuedPerUser: 10 },
    perUserReports: false,
    ...more,
  });
  /** "report" from `from` to the project's JID. */
  const ask = (project: string, from = 'alice@example.com/pc') =>
    requests.handleMessage(
      xml('message', { from, to: `${project}@reports.example.com`, type: 'chat' }, xml('body', {}, 'report')),
      parseJid(from)!,
      { kind: 'project', project },
    );
  const bodies = () => sent.map((e) => e.getChildText('body') ?? '');
  return { requests, ask, bodies };
}

/** Resolves once pred holds, checked every 5 ms; rejects after ms. */
export async function until(pred: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
