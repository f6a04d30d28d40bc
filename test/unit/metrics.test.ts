import { expect } from 'chai';
import { pino } from 'pino';
import { Metrics, MetricsServer, meteredDelivery, meteredLinks, meteredSource } from '../../src/metrics.js';
import { ReportError, type Report } from '../../src/reports/source.js';
import { stubReport } from '../support/reports.js';
import { DeliveryError, type DeliveryRequest } from '../../src/transfer/delivery.js';

const report: Report = stubReport('1', 1000);
const req = {
  report,
  to: 'a@example.com/r',
  from: '1@reports.example.com/reports',
  log: pino({ level: 'silent' }),
} as DeliveryRequest;

function probe(
  over: Partial<{ connected: boolean; listening: boolean | undefined; open: number; active: number }> = {},
) {
  const o = { connected: true, listening: true as boolean | undefined, open: 2, active: 1, ...over };
  return {
    xmppConnected: () => o.connected,
    streamhost: () => (o.listening === undefined ? undefined : { listening: o.listening, connections: o.open }),
    activeRequests: () => o.active + 1,
    activeTransfers: () => o.active,
  };
}

describe('metrics', () => {
  it('exposes every counter, gauge and histogram in the Prometheus text format', async () => {
    const m = new Metrics(probe());
    m.request('delivered');
    m.transfer('s5b', 'delivered', 1000, 0.3);
    m.transfer('ibb', 'lost', 200);
    m.fetched('http', 0.02);
    m.fetched('http', 1.5, 'unavailable');
    const text = await m.text();
    expect(text).to.include('xmpp_reports_requests_total{outcome="delivered"} 1');
    expect(text).to.include('xmpp_reports_transfers_total{method="s5b",outcome="delivered"} 1');
    expect(text).to.include('xmpp_reports_transfers_total{method="ibb",outcome="lost"} 1');
    expect(text).to.include('xmpp_reports_bytes_sent_total{method="s5b"} 1000');
    expect(text).to.include('xmpp_reports_bytes_sent_total{method="ibb"} 200');
    expect(text).to.include('xmpp_reports_transfer_duration_seconds_count{method="s5b"} 1');
    expect(text).to.include('xmpp_reports_transfer_duration_seconds_bucket{le="0.5",method="s5b"} 1');
    expect(text).to.include('xmpp_reports_report_fetch_duration_seconds_count{source="http",result="ok"} 1');
    expect(text).to.include('xmpp_reports_report_fetch_errors_total{source="http",kind="unavailable"} 1');
    expect(text).to.include('xmpp_reports_active_transfers 1');
    expect(text).to.include('xmpp_reports_active_requests 2');
    expect(text).to.include('xmpp_reports_proxy_connections 2');
    expect(text).to.include('xmpp_reports_xmpp_connected 1');
    expect(text).to.include('# TYPE xmpp_reports_transfer_duration_seconds histogram');
    expect(text).to.match(/^xmpp_reports_process_cpu_user_seconds_total /m);
  });

  it('shows the balancing slots in /healthz and two gauges, only when they are watched', async () => {
    let b = { slots: 2, checked: false, holdsSlot: false, spares: 0, deadSince: undefined as number | undefined };
    const m = new Metrics({ ...probe(), balancing: () => b });
    expect(m.health().balancing).to.deep.equal({ slots: 2, holdsSlot: 'unchecked', spares: 0 });
    b = { slots: 2, checked: true, holdsSlot: true, spares: 1, deadSince: Date.UTC(2026, 11, 2, 6, 0, 0) };
    expect(m.health().balancing).to.deep.equal({
      slots: 2,
      holdsSlot: true,
      spares: 1,
      deadSlotSince: '2026-12-02T06:00:00.000Z',
    });
    expect(m.health().ok, 'a dead peer slot leaves this instance healthy').to.equal(true);
    let text = await m.text();
    expect(text).to.include('xmpp_reports_balancing_slots_held 2');
    expect(text).to.include('xmpp_reports_balancing_dead_slot 1');
    b = { ...b, holdsSlot: false, spares: 0, deadSince: undefined };
    text = await m.text();
    expect(text).to.include('xmpp_reports_balancing_slots_held 0');
    expect(text).to.include('xmpp_reports_balancing_dead_slot 0');
    const plain = new Metrics(probe());
    expect(plain.health()).to.not.have.property('balancing');
  });

  it('says healthy only when connected and the streamhost (if any) listens', () => {
    expect(new Metrics(probe()).health()).to.include({ ok: true, xmpp: 'connected', streamhost: 'listening' });
    expect(new Metrics(probe({ connected: false })).health()).to.include({ ok: false, xmpp: 'disconnected' });
    expect(new Metrics(probe({ listening: false })).health()).to.include({ ok: false, streamhost: 'down' });
    expect(new Metrics(probe({ listening: undefined })).health()).to.include({ ok: true, streamhost: 'disabled' });
  });

  it('shows the server link: its state, which server (one of xmpp.service), the last error and since when', () => {
    const since = new Date('2026-01-02T03:04:05Z');
    const link = () => ({
      state: 'reconnecting' as const,
      server: 'xmpps://xmpp-b.example.com:5275',
      lastError: "TLS to xmpp-b.example.com:5275: the server's certificate is not trusted",
      since,
    });
    expect(new Metrics({ ...probe({ connected: false }), xmppLink: link }).health()).to.include({
      ok: false,
      xmppState: 'reconnecting',
      xmppServer: 'xmpps://xmpp-b.example.com:5275',
      xmppLastError: "TLS to xmpp-b.example.com:5275: the server's certificate is not trusted",
      xmppDownSince: '2026-01-02T03:04:05.000Z',
    });
  });

  it('times the report source and counts its errors by kind', async () => {
    const m = new Metrics(probe());
    const src = meteredSource(
      { kind: 'folder', fetch: async (p) => (p === 'x' ? Promise.reject(new ReportError('not-found', 'no')) : report) },
      m,
    );
    expect(src.kind).to.equal('folder');
    expect(await src.fetch('1', { requester: 'a@example.com' })).to.equal(report);
    await src.fetch('x', { requester: 'a@example.com' }).then(
      () => expect.fail('should reject'),
      (e: unknown) => expect(e).to.be.instanceOf(ReportError),
    );
    const text = await m.text();
    expect(text).to.include('xmpp_reports_report_fetch_errors_total{source="folder",kind="not-found"} 1');
    expect(text).to.include('xmpp_reports_report_fetch_duration_seconds_count{source="folder",result="ok"} 1');
  });

  it('counts deliveries and links by method and outcome, with the bytes that went out', async () => {
    const m = new Metrics(probe());
    await meteredDelivery({ deliver: async () => ({ kind: 'delivered', method: 'ibb', bytes: 1000 }) }, m).deliver(req);
    await meteredDelivery(
      { deliver: async () => Promise.reject(new DeliveryError({ reason: 'declined', message: 'declined' })) },
      m,
    )
      .deliver(req)
      .catch(() => {});
    await meteredDelivery(
      {
        deliver: async () =>
          Promise.reject(new DeliveryError({ reason: 'lost', message: 'cut', sent: 300, method: 's5b' })),
      },
      m,
    )
      .deliver(req)
      .catch(() => {});
    await meteredLinks(
      { kind: 'upload', publish: async () => ({ url: 'http://x/y', expiresAt: undefined, logId: 'x' }) },
      m,
    ).publish(req);
    await meteredLinks({ kind: 'link', publish: async () => Promise.reject(new Error('disk full')) }, m)
      .publish(req)
      .catch(() => {});
    const text = await m.text();
    expect(text).to.include('xmpp_reports_transfers_total{method="ibb",outcome="delivered"} 1');
    expect(text).to.include('xmpp_reports_transfers_total{method="none",outcome="declined"} 1');
    expect(text).to.include('xmpp_reports_transfers_total{method="s5b",outcome="lost"} 1');
    expect(text).to.include('xmpp_reports_transfers_total{method="upload",outcome="linked"} 1');
    expect(text).to.include('xmpp_reports_transfers_total{method="link",outcome="failed"} 1');
    expect(text).to.include('xmpp_reports_bytes_sent_total{method="ibb"} 1000');
    expect(text).to.include('xmpp_reports_bytes_sent_total{method="s5b"} 300');
    expect(text).to.include('xmpp_reports_bytes_sent_total{method="upload"} 1000');
    const summary = await m.summary();
    expect(summary).to.include('transfers_total{method=ibb,outcome=delivered} 1');
    expect(summary).to.include('active_transfers 1');
    expect(summary.some((l) => l.startsWith('process_'))).to.equal(false);
  });

  it('serves /healthz (200/503) and /metrics over HTTP, nothing else', async () => {
    const state = { connected: true };
    const m = new Metrics({ ...probe(), xmppConnected: () => state.connected });
    const srv = await MetricsServer.start({
      bindHost: '127.0.0.1',
      bindPort: 0,
      metrics: m,
      log: pino({ level: 'silent' }),
    });
    try {
      const base = `http://127.0.0.1:${srv.port}`;
      let r = await fetch(`${base}/healthz`);
      expect(r.status).to.equal(200);
      expect(await r.json()).to.include({ ok: true, xmpp: 'connected', streamhost: 'listening' });
      state.connected = false;
      r = await fetch(`${base}/healthz`);
      expect(r.status).to.equal(503);
      expect(await r.json()).to.include({ ok: false, xmpp: 'disconnected' });
      r = await fetch(`${base}/metrics`);
      expect(r.status).to.equal(200);
      expect(r.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
      expect(await r.text()).to.include('xmpp_reports_xmpp_connected 0');
      expect((await fetch(`${base}/other`)).status).to.equal(404);
      expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).to.equal(405);
    } finally {
      await srv.close();
    }
  });
});
