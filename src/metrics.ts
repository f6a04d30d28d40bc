// Operational metrics in one place: Prometheus counters, gauges and histograms
// (prom-client, one private registry per App so several instances can share a
// process in tests), fed by thin wrappers around the report source, the SI
// delivery and the link publisher, plus the request outcomes requests.ts
// reports. Served with /healthz on a small HTTP listener of its own.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FetchContext, ReportSource, Report } from './reports/source.js';
import { ReportError } from './reports/source.js';
import { DeliveryError, type Delivery, type DeliveryOutcome, type DeliveryRequest } from './transfer/delivery.js';
import type { LinkPublisher } from './transfer/links/publishers.js';

const PREFIX = 'xmpp_reports_';

/** What the gauges and /healthz read at scrape time. */
export interface Probe {
  xmppConnected(): boolean;
  /** the server link in detail: reconnecting after it once worked, and the last error */
  xmppLink?(): {
    state: 'connecting' | 'connected' | 'reconnecting';
    /** the server connected to, or being tried */
    server?: string;
    lastError: string | undefined;
    since: Date | undefined;
  };
  /** undefined: no built-in streamhost configured. */
  streamhost(): { listening: boolean; connections: number } | undefined;
  activeRequests(): number;
  activeTransfers(): number;
  /** ejabberd balancing slots (xmpp.balancing.slots > 0); undefined: not watched */
  balancing?(): BalancingStatus | undefined;
}

export interface BalancingStatus {
  slots: number;
  /** false until the first probe round ended */
  checked: boolean;
  /** the primary connection held a slot in the last round */
  holdsSlot: boolean;
  /** spare connections holding a dead instance's slot */
  spares: number;
  /** ms since epoch since a slot has been seen dead; undefined: none now */
  deadSince: number | undefined;
}

export interface Health {
  ok: boolean;
  xmpp: 'connected' | 'disconnected';
  /** while disconnected: 'connecting' (never online yet) or 'reconnecting', the last error, and since when */
  xmppState?: 'connecting' | 'connected' | 'reconnecting';
  /** the server (one of xmpp.service) connected to, or being tried */
  xmppServer?: string;
  xmppLastError?: string;
  xmppDownSince?: string;
  streamhost: 'listening' | 'down' | 'disabled';
  /** with xmpp.balancing.slots: what this instance holds and whether a slot is dead */
  balancing?: { slots: number; holdsSlot: boolean | 'unchecked'; spares: number; deadSlotSince?: string };
  activeTransfers: number;
  uptimeSeconds: number;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly started = Date.now();
  private readonly requests: Counter<'outcome'>;
  private readonly transfers: Counter<'method' | 'outcome'>;
  private readonly bytes: Counter<'method'>;
  private readonly duration: Histogram<'method'>;
  private readonly fetchDuration: Histogram<'source' | 'result'>;
  private readonly fetchErrors: Counter<'source' | 'kind'>;

  constructor(private readonly probe: Probe) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: `${PREFIX}requests_total`,
      help: 'Report requests by how they ended',
      labelNames: ['outcome'],
      registers,
    });
    this.transfers = new Counter({
      name: `${PREFIX}transfers_total`,
      help: 'File transfers and links by method (s5b, ibb, link, upload, none = ended before a method was chosen) and outcome',
      labelNames: ['method', 'outcome'],
      registers,
    });
    this.bytes = new Counter({
      name: `${PREFIX}bytes_sent_total`,
      help: 'Report bytes sent to users (and uploaded, for upload), by method',
      labelNames: ['method'],
      registers,
    });
    this.duration = new Histogram({
      name: `${PREFIX}transfer_duration_seconds`,
      help: 'Time from the offer (or link publication) to the end of a successful transfer, by method',
      labelNames: ['method'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.fetchDuration = new Histogram({
      name: `${PREFIX}report_fetch_duration_seconds`,
      help: 'Time to fetch and spool a report from the source, by source and result (ok or an error kind)',
      labelNames: ['source', 'result'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.fetchErrors = new Counter({
      name: `${PREFIX}report_fetch_errors_total`,
      help: 'Failed report fetches by source and kind',
      labelNames: ['source', 'kind'],
      registers,
    });
    const p = probe;
    new Gauge({
      name: `${PREFIX}active_requests`,
      help: 'Report requests being fetched or sent now',
      registers,
      collect() {
        this.set(p.activeRequests());
      },
    });
    new Gauge({
      name: `${PREFIX}active_transfers`,
      help: 'Reports being sent now',
      registers,
      collect() {
        this.set(p.activeTransfers());
      },
    });
    new Gauge({
      name: `${PREFIX}proxy_connections`,
      help: 'Open connections to the built-in XEP-0065 streamhost',
      registers,
      collect() {
        this.set(p.streamhost()?.connections ?? 0);
      },
    });
    new Gauge({
      name: `${PREFIX}balancing_slots_held`,
      help: 'ejabberd balancing slots this instance holds: its own connection (0 or 1) plus spares (xmpp.balancing.slots > 0)',
      registers,
      collect() {
        const b = p.balancing?.();
        this.set(b ? (b.holdsSlot ? 1 : 0) + b.spares : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}balancing_dead_slot`,
      help: '1 while the probes see a balancing slot that no instance holds (xmpp.balancing.slots > 0)',
      registers,
      collect() {
        this.set(p.balancing?.()?.deadSince !== undefined ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}xmpp_connected`,
      help: '1 while connected to the XMPP server',
      registers,
      collect() {
        this.set(p.xmppConnected() ? 1 : 0);
      },
    });
    // The event-loop delay is sampled every 100 ms, not prom-client's 10: its timer would otherwise wake
    // an idle component 100 times a second (and land in the middle of small requests), for a figure
    // that Prometheus scrapes every few seconds anyway.
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX, eventLoopMonitoringPrecision: 100 });
  }

  request(outcome: string): void {
    this.requests.inc({ outcome });
  }

  transfer(method: string, outcome: string, bytes: number, seconds?: number): void {
    this.transfers.inc({ method, outcome });
    if (bytes > 0) this.bytes.inc({ method }, bytes);
    if (seconds !== undefined) this.duration.observe({ method }, seconds);
  }

  fetched(source: string, seconds: number, errorKind?: string): void {
    this.fetchDuration.observe({ source, result: errorKind ?? 'ok' }, seconds);
    if (errorKind) this.fetchErrors.inc({ source, kind: errorKind });
  }

  health(): Health {
    const sh = this.probe.streamhost();
    const xmpp = this.probe.xmppConnected() ? 'connected' : 'disconnected';
    const streamhost = sh === undefined ? 'disabled' : sh.listening ? 'listening' : 'down';
    const link = this.probe.xmppLink?.();
    const b = this.probe.balancing?.();
    return {
      ok: xmpp === 'connected' && streamhost !== 'down',
      xmpp,
      ...(link ? { xmppState: link.state } : {}),
      ...(link?.server ? { xmppServer: link.server } : {}),
      ...(link?.lastError ? { xmppLastError: link.lastError } : {}),
      ...(link?.since ? { xmppDownSince: link.since.toISOString() } : {}),
      streamhost,
      ...(b
        ? {
            balancing: {
              slots: b.slots,
              holdsSlot: b.checked ? b.holdsSlot : 'unchecked',
              spares: b.spares,
              ...(b.deadSince !== undefined ? { deadSlotSince: new Date(b.deadSince).toISOString() } : {}),
            },
          }
        : {}),
      activeTransfers: this.probe.activeTransfers(),
      uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
    };
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The component's own counters as "name{labels} value" lines (no process metrics, no histogram buckets), for admins. */
  async summary(): Promise<string[]> {
    const own = new Set([
      `${PREFIX}requests_total`,
      `${PREFIX}transfers_total`,
      `${PREFIX}bytes_sent_total`,
      `${PREFIX}report_fetch_errors_total`,
      `${PREFIX}active_requests`,
      `${PREFIX}active_transfers`,
      `${PREFIX}proxy_connections`,
      `${PREFIX}xmpp_connected`,
    ]);
    const lines: string[] = [];
    for (const m of await this.registry.getMetricsAsJSON()) {
      if (!own.has(m.name)) continue;
      const short = m.name.slice(PREFIX.length);
      const values = m.values.filter((v) => v.value !== 0 || Object.keys(v.labels).length === 0);
      for (const v of values) {
        const labels = Object.entries(v.labels)
          .map(([k, x]) => `${k}=${String(x)}`)
          .join(',');
        lines.push(`${short}${labels ? `{${labels}}` : ''} ${v.value}`);
      }
    }
    return lines;
  }
}

const seconds = (since: number) => (performance.now() - since) / 1000;

/** The report source, timed: fetch latency and errors by kind. */
export function meteredSource(source: ReportSource, metrics: Metrics): ReportSource {
  return {
    kind: source.kind,
    async fetch(project: string, ctx: FetchContext): Promise<Report> {
      const t0 = performance.now();
      try {
        const report = await source.fetch(project, ctx);
        metrics.fetched(source.kind, seconds(t0));
        return report;
      } catch (err) {
        metrics.fetched(source.kind, seconds(t0), err instanceof ReportError ? err.kind : 'error');
        throw err;
      }
    },
  };
}

/** A delivery (SI: s5b/ibb), counted: outcome by method, bytes, duration of successful transfers. */
export function meteredDelivery(delivery: Delivery, metrics: Metrics): Delivery {
  return {
    async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
      const t0 = performance.now();
      try {
        const out = await delivery.deliver(req);
        if (out.kind === 'delivered') metrics.transfer(out.method, 'delivered', out.bytes, seconds(t0));
        else metrics.transfer('none', out.kind, 0);
        return out;
      } catch (err) {
        if (err instanceof DeliveryError) metrics.transfer(err.method ?? 'none', err.reason, err.sent);
        else metrics.transfer('none', 'error', 0);
        throw err;
      }
    },
  };
}

/** A link publisher (own link server or XEP-0363 upload), counted like a transfer. */
export function meteredLinks(links: LinkPublisher, metrics: Metrics): LinkPublisher {
  return {
    kind: links.kind,
    async publish(req: DeliveryRequest) {
      const t0 = performance.now();
      try {
        const out = await links.publish(req);
        // Our link server's bytes go out later, when (and if) the user downloads; an upload has sent them now.
        metrics.transfer(links.kind, 'linked', links.kind === 'upload' ? req.report.size : 0, seconds(t0));
        return out;
      } catch (err) {
        metrics.transfer(links.kind, 'failed', 0);
        throw err;
      }
    },
  };
}

/** GET /healthz (200 or 503, JSON) and GET /metrics (Prometheus text format). */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
  ) {}

  static start(o: { bindHost: string; bindPort: number; metrics: Metrics; log: Logger }): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/healthz') {
        const h = o.metrics.health();
        res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : JSON.stringify(h) + '\n');
        return;
      }
      if (path === '/metrics') {
        o.metrics.text().then(
          (text) => {
            res.writeHead(200, { 'content-type': o.metrics.registry.contentType, 'cache-control': 'no-store' });
            res.end(req.method === 'HEAD' ? undefined : text);
          },
          (err: unknown) => {
            o.log.error({ err: (err as Error).message }, 'metrics collection failed');
            res.writeHead(500).end();
          },
        );
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
    });
    server.keepAliveTimeout = 5000;
    server.requestTimeout = 10000;
    return new Promise((resolve, reject) => {
      server.once('error', (err) =>
        reject(new Error(`metrics listener cannot listen on ${o.bindHost}:${o.bindPort}: ${err.message}`)),
      );
      server.listen(o.bindPort, o.bindHost, () => {
        const a = server.address() as AddressInfo;
        o.log.info({ bind: `${a.address}:${a.port}` }, 'metrics listening');
        resolve(new MetricsServer(server, a.address, a.port));
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
