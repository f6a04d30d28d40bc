// Wiring only: builds the parts and connects them.
import { readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Element } from '@xmpp/component';
import type { Logger } from 'pino';
import { adminCommands, type ReloadResult } from './admin.js';
import { CommandParser } from './chat/commands.js';
import { replies } from './chat/replies.js';
import { Requests } from './chat/requests.js';
import { SETTINGS, loadConfig, redacted, type Config } from './config.js';
import { Metrics, MetricsServer, meteredDelivery, meteredLinks, meteredSource } from './metrics.js';
import { FolderSource } from './reports/folder-source.js';
import { HttpSource } from './reports/http-source.js';
import { ProjectNames } from './reports/metadata.js';
import type { ReportSource } from './reports/source.js';
import { Spool } from './reports/spool.js';
import { ChoosingDelivery, ServerLinks, UploadLinks } from './transfer/link.js';
import { LinkServer } from './transfer/link-server.js';
import { SiDelivery, TRANSFER_FEATURES } from './transfer/si-delivery.js';
import { JingleDelivery } from './transfer/jingle/delivery.js';
import { Capabilities } from './xmpp/caps.js';
import { Streamhost } from './transfer/streamhost.js';
import { AdhocCommands } from './xmpp/adhoc.js';
import { Addresses, parseJid, type Target } from './xmpp/addresses.js';
import { vcardResult, versionResult } from './xmpp/basics.js';
import { Connection } from './xmpp/connection.js';
import { Disco } from './xmpp/disco.js';
import { errorElement } from './xmpp/errors.js';
import { NS } from './xmpp/namespaces.js';
import { handlePresence } from './xmpp/presence.js';
import { IqRouter } from './xmpp/router.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  name: string;
  version: string;
};

export class App {
  readonly connection: Connection;
  readonly requests: Requests;
  readonly streamhost: Streamhost | undefined;
  private readonly spool: Spool;

  readonly linkServer: LinkServer | undefined;
  readonly metrics: Metrics;
  private metricsServer: MetricsServer | undefined;
  private configLoader: () => Config = () => loadConfig();
  private names: ProjectNames | undefined;

  private constructor(
    public config: Config,
    readonly log: Logger,
    spool: Spool,
    streamhost: Streamhost | undefined,
    linkServer: LinkServer | undefined,
  ) {
    this.spool = spool;
    this.streamhost = streamhost;
    this.linkServer = linkServer;
    const addresses = new Addresses(config.xmpp.domain, config.xmpp.resource);
    const parser = new CommandParser(config.projects.idPattern);
    this.connection = new Connection(
      {
        service: config.xmpp.service,
        domain: config.xmpp.domain,
        secret: config.xmpp.secret,
        reconnectMaxMs: config.xmpp.reconnectMaxMs,
      },
      log,
    );
    const send = (el: Element) => this.connection.sendWhenOnline(el);
    this.metrics = new Metrics({
      xmppConnected: () => this.connection.isOnline,
      streamhost: () => streamhost && { listening: streamhost.listening, connections: streamhost.connections },
      activeRequests: () => this.requests.list().length,
      activeTransfers: () => this.requests.transferCount,
    });
    const source = meteredSource(reportSource(config, spool), this.metrics);
    this.names = projectNames(config);
    const iqs = new IqRouter();
    const si = new SiDelivery({ connection: this.connection, streamhost, config: config.transfer, router: iqs });
    this.connection.onLost(() => si.connectionLost());
    const jingle = new JingleDelivery({
      connection: this.connection,
      streamhost,
      config: config.transfer,
      router: iqs,
    });
    this.connection.onLost(() => jingle.connectionLost());
    const request = (iq: Element, t: number) => this.connection.request(iq, t);
    const caps = new Capabilities(request, config.caps.timeoutMs);
    const links = config.links.uploadService
      ? new UploadLinks(request, config.links.uploadService, config.reports.timeoutMs)
      : linkServer
        ? new ServerLinks(linkServer)
        : undefined;
    const delivery = new ChoosingDelivery(
      meteredDelivery(si, this.metrics),
      links && meteredLinks(links, this.metrics),
      caps,
      {
        jingle: meteredDelivery(jingle, this.metrics),
        order: config.transfer.order,
      },
    );
    this.requests = new Requests({
      addresses,
      parser,
      source,
      delivery,
      send,
      log,
      access: config.access,
      maxBytes: config.reports.maxBytes,
      example: config.projects.example,
      limits: config.limits,
      perUserReports: config.reports.source === 'http' && config.reports.requesterHeader !== '',
      onEnd: (outcome) => this.metrics.request(outcome),
    });
    const example = config.projects.example;
    const instance = `${hostname()} pid ${process.pid}${streamhost ? `, streamhost ${streamhost.host}:${streamhost.port}` : ''}`;
    const adhoc = new AdhocCommands(
      addresses.domain,
      adminCommands({ requests: this.requests, metrics: this.metrics, reload: () => this.reload(), instance }),
      (bare) => this.config.admin.jids.includes(bare),
    );
    const disco = new Disco([NS.VERSION, NS.PING, NS.VCARD, NS.COMMANDS, ...TRANSFER_FEATURES], (t) =>
      t.kind === 'project'
        ? { category: 'client', type: 'bot', name: `Project ${t.project} status report` }
        : { category: 'component', type: 'generic', name: 'Project status reports' },
    );
    iqs
      .on('get', NS.DISCO_INFO, 'query', (_iq, q, f, t) => adhoc.discoInfo(q, f, t) ?? disco.info(q, t))
      .on('get', NS.DISCO_ITEMS, 'query', (_iq, q, f, t) => adhoc.discoItems(q, f, t) ?? disco.items(q))
      .on('set', NS.COMMANDS, 'command', (_iq, c, f, t) => adhoc.execute(c, f, t))
      .on('get', NS.VCARD, 'vCard', (_iq, _q, _f, t) =>
        t.kind === 'project' && !parser.isProjectId(t.project)
          ? errorElement('cancel', 'item-not-found')
          : this.vcard(t),
      )
      .on('get', NS.VERSION, 'query', () => versionResult(pkg.name, pkg.version))
      .on('get', NS.PING, 'ping', () => true);

    const checkProject = (p: string) => (parser.isProjectId(p) ? null : replies.invalidId(p, example));
    this.connection.onStanza(async (el) => {
      const from = parseJid(el.attrs.from);
      const target = addresses.target(el.attrs.to);
      if (!from || !target) {
        return el.name === 'iq' ? errorElement('modify', 'jid-malformed') : undefined;
      }
      switch (el.name) {
        case 'iq':
          return iqs.handle(el, from, target);
        case 'message':
          this.requests.handleMessage(el, from, target);
          return undefined;
        case 'presence':
          caps.notePresence(el);
          await handlePresence(el, from, target, {
            addresses,
            send,
            log,
            checkProject,
            statusText: (t) => (t.kind === 'project' ? replies.status(t.project) : replies.domainStatus(example)),
          });
          return undefined;
        default:
          return undefined;
      }
    });
  }

  /** loadConfig re-reads the configuration for reload() (default: XR_CONFIG and the environment). */
  static async create(config: Config, log: Logger, opts: { loadConfig?: () => Config } = {}): Promise<App> {
    log.info({ config: redacted(config), version: pkg.version }, 'starting');
    const spool = await Spool.open(config.reports.spoolDir || Spool.defaultDir(config.xmpp.domain));
    let streamhost: Streamhost | undefined;
    if (config.transfer.proxy.enabled && config.transfer.methods.includes('s5b')) {
      streamhost = await Streamhost.listen(config.transfer.proxy, log);
    }
    let linkServer: LinkServer | undefined;
    if (config.links.publicBaseUrl && !config.links.uploadService) {
      const l = config.links;
      linkServer = await LinkServer.start({
        bindHost: l.bindHost,
        bindPort: l.bindPort,
        publicBaseUrl: l.publicBaseUrl,
        stateDir: l.stateDir || join(tmpdir(), `xmpp-reports-${config.xmpp.domain}-links`),
        defaultTtlMs: l.ttlMs,
        defaultMaxDownloads: l.maxDownloads,
        log,
      });
    }
    const app = new App(config, log, spool, streamhost, linkServer);
    if (opts.loadConfig) app.configLoader = opts.loadConfig;
    if (config.metrics.bindHost && config.metrics.bindPort > 0) {
      app.metricsServer = await MetricsServer.start({
        bindHost: config.metrics.bindHost,
        bindPort: config.metrics.bindPort,
        metrics: app.metrics,
        log,
      });
    }
    return app;
  }

  /** The vCard of the domain or a project: "Project 1234 - Apollo" when the intranet names it within 2 s. */
  private async vcard(t: Target): Promise<Element> {
    if (t.kind === 'domain')
      return vcardResult('Project status reports', replies.domainStatus(this.config.projects.example));
    const name = await this.names?.get(t.project, 2000);
    return vcardResult(name ? `Project ${t.project} - ${name}` : `Project ${t.project}`, replies.status(t.project));
  }

  /**
   * Re-reads the configuration and applies, without touching the XMPP
   * connection, what can change at run time (report source, limits, access
   * lists, admins, log level). Other changes are listed as needing a restart.
   * Rejects (changing nothing) when the new configuration is invalid.
   */
  reload(): Promise<ReloadResult> {
    // The executor turns a throw (an invalid configuration) into the rejection.
    return new Promise((resolve) => resolve(this.applyReload()));
  }

  private applyReload(): ReloadResult {
    const next = this.configLoader();
    const old = this.config;
    const changed = SETTINGS.map((s) => s.key).filter(
      (k) => JSON.stringify(valueAt(old, k)) !== JSON.stringify(valueAt(next, k)),
    );
    const applied = changed.filter(reloadable);
    const needsRestart = changed.filter((k) => !reloadable(k));
    const effective = structuredClone(old);
    for (const k of applied) setValueAt(effective, k, valueAt(next, k));
    this.config = effective;
    const c = effective;
    this.requests.update({
      access: c.access,
      limits: c.limits,
      maxBytes: c.reports.maxBytes,
      perUserReports: c.reports.source === 'http' && c.reports.requesterHeader !== '',
      ...(applied.some((k) => k.startsWith('reports.'))
        ? { source: meteredSource(reportSource(c, this.spool), this.metrics) }
        : {}),
    });
    if (applied.some((k) => k.startsWith('reports.'))) this.names = projectNames(c);
    this.log.level = c.log.level;
    this.log.info({ applied, needsRestart }, 'configuration reloaded');
    return { applied, needsRestart };
  }

  async start(): Promise<void> {
    await this.connection.start();
  }

  async stop(graceMs = this.config.shutdown.graceMs): Promise<void> {
    await this.requests.close(graceMs);
    await this.connection.stop();
    await this.streamhost?.close();
    await this.linkServer?.close();
    await this.spool.clear();
    await this.metricsServer?.close();
    this.log.info({ spool: this.spool.dir }, 'stopped');
  }
}

function reportSource(config: Config, spool: Spool): ReportSource {
  return config.reports.source === 'http'
    ? new HttpSource(spool, config.reports)
    : new FolderSource(config.reports.folder, { maxBytes: config.reports.maxBytes, fileName: config.reports.fileName });
}

function projectNames(config: Config): ProjectNames | undefined {
  const r = config.reports;
  return r.metadataUrlTemplate
    ? new ProjectNames({ ...r, urlTemplate: r.metadataUrlTemplate, timeoutMs: Math.min(r.timeoutMs, 10000) })
    : undefined;
}

/** Settings reload() applies at run time; everything else needs a restart. */
function reloadable(key: string): boolean {
  return (
    (key.startsWith('reports.') && key !== 'reports.spoolDir') ||
    key.startsWith('access.') ||
    key.startsWith('limits.') ||
    key === 'admin.jids' ||
    key === 'log.level'
  );
}

function valueAt(c: Config, key: string): unknown {
  return key.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], c);
}

function setValueAt(c: Config, key: string, value: unknown): void {
  const parts = key.split('.');
  const parent = parts
    .slice(0, -1)
    .reduce<Record<string, unknown>>(
      (node, part) => node[part] as Record<string, unknown>,
      c as unknown as Record<string, unknown>,
    );
  parent[parts[parts.length - 1]] = structuredClone(value);
}
