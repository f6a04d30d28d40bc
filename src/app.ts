// Wiring only: builds the parts and connects them.
import { readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml, type Element } from '@xmpp/component';
import type { Logger } from 'pino';
import { adminCommands, type ReloadResult } from './admin.js';
import { CommandParser } from './chat/commands.js';
import { RequestJournal } from './chat/journal.js';
import { replies } from './chat/replies.js';
import { Requests } from './chat/requests.js';
import { changedSettings, loadConfig, redacted, withSettings, type Config } from './config.js';
import { Metrics, MetricsServer, meteredDelivery, meteredLinks, meteredSource } from './metrics.js';
import { FolderSource } from './reports/folder-source.js';
import { HttpSource } from './reports/http-source.js';
import { ProjectNames } from './reports/metadata.js';
import type { ReportSource } from './reports/source.js';
import { Spool } from './reports/spool.js';
import { NetworkPolicy } from './networks.js';
import { ChoosingDelivery } from './transfer/choose.js';
import { IbbStreams } from './transfer/ibb/streams.js';
import { JingleDelivery } from './transfer/jingle/delivery.js';
import { ServerLinks, UploadLinks } from './transfer/links/publishers.js';
import { LinkServer } from './transfer/links/server.js';
import { StreamhostMemory } from './transfer/s5b/memory.js';
import { Proxies } from './transfer/s5b/proxies.js';
import { S5bSender } from './transfer/s5b/send.js';
import { parseProxySpec } from './transfer/s5b/stanzas.js';
import { SiDelivery, type SiOptions } from './transfer/si/delivery.js';
import { Capabilities } from './xmpp/caps.js';
import { hostPort } from './transfer/s5b/addresses.js';
import { Streamhost } from './transfer/s5b/streamhost.js';
import { AdhocCommands } from './xmpp/adhoc.js';
import { Addresses, parseJid, type Target } from './xmpp/addresses.js';
import { vcardResult, versionResult } from './xmpp/basics.js';
import { Connection } from './xmpp/connection.js';
import { Disco } from './xmpp/disco.js';
import { errorElement } from './xmpp/errors.js';
import { NS } from './xmpp/namespaces.js';
import { handlePresence } from './xmpp/presence.js';
import { IqRouter, type ComponentModule } from './xmpp/router.js';
import { SlotKeeper } from './xmpp/slots/keeper.js';
import { isSlotAddress } from './xmpp/slots/stanzas.js';
import { StrayAnswers, type Stray } from './xmpp/slots/stray.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  name: string;
  version: string;
};

export class App {
  readonly connection: Connection;
  readonly requests: Requests;
  readonly streamhost: Streamhost | undefined;
  /** ejabberd balancing slots: probes, takeover, give-back (xmpp.balancing.slots > 0) */
  readonly slots: SlotKeeper | undefined;
  private readonly spool: Spool;

  readonly linkServer: LinkServer | undefined;
  readonly metrics: Metrics;
  /** Every IQ the component answers, as the protocol modules declared them. */
  readonly router: IqRouter;
  private readonly proxies: Proxies;
  private metricsServer: MetricsServer | undefined;
  private configLoader: () => Config = () => loadConfig();
  private readonly addresses: Addresses;
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
    this.addresses = addresses;
    const parser = new CommandParser(config.projects.idPattern);
    this.connection = new Connection(
      {
        services: config.xmpp.service,
        tls: {
          ...(config.xmpp.tls.caFile
            ? { ca: readFileSync(config.xmpp.tls.caFile, 'utf8'), caOrigin: config.xmpp.tls.caFile }
            : {}),
          ...(config.xmpp.tls.serverName ? { serverName: config.xmpp.tls.serverName } : {}),
        },
        domain: config.xmpp.domain,
        secret: config.xmpp.secret,
        reconnectMaxMs: config.xmpp.reconnectMaxMs,
        keepalive: { to: config.xmpp.serverDomain, intervalMs: config.xmpp.keepaliveMs },
      },
      log,
    );
    const send = (el: Element) => this.connection.sendWhenOnline(el);
    const b = config.xmpp.balancing;
    this.slots =
      b.slots > 0
        ? new SlotKeeper(
            {
              domain: config.xmpp.domain,
              slots: b.slots,
              checkMs: b.checkMs,
              answerMs: b.answerMs,
              releaseWaitMs: b.releaseWaitMs,
              holdOffMs: 2 * b.checkMs + b.answerMs,
            },
            {
              send: (el) => this.connection.send(el),
              openSpare: (intercept, ms) => this.connection.openSpare(intercept, ms),
              online: () => this.connection.isOnline,
              busy: (mine) => this.requests.list().some((r) => mine(r.jid.split('/')[0].toLowerCase())),
              log,
            },
          )
        : undefined;
    this.metrics = new Metrics({
      xmppConnected: () => this.connection.isOnline,
      xmppLink: () => this.connection.link,
      streamhost: () => streamhost && { listening: streamhost.listening, connections: streamhost.connections },
      activeRequests: () => this.requests.list().length,
      activeTransfers: () => this.requests.transferCount,
      balancing: () => this.slots?.status(),
    });
    const source = meteredSource(reportSource(config, spool), this.metrics);
    this.names = projectNames(config);
    // After a slot takeover or give-back, answers can reach an instance that never made the offer.
    const stray =
      b.slots > 0
        ? new StrayAnswers(
            {
              projectOf: (jid) => {
                const t = addresses.target(jid);
                return t?.kind === 'project' ? t.project : undefined;
              },
            },
            () => Date.now(),
          )
        : undefined;
    const request = (iq: Element, t: number) => {
      const answered = this.connection.request(iq, t); // (which gives the IQ its id, if it has none)
      stray?.sent(iq);
      return answered;
    };
    const t = config.transfer;
    const { si, jingle, s5b, ibb, proxies, connectionLost } = transferModules(t, request, streamhost, {
      domain: config.xmpp.domain,
      serverDomain: config.xmpp.serverDomain,
      log,
    });
    this.proxies = proxies;
    this.connection.onLost(connectionLost);
    const caps = new Capabilities(request, config.caps.timeoutMs, 10000, config.caps.sessionCacheMs);
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
        order: t.order,
        brokenJingle: t.jingle.brokenClients,
        version: (from, to) => caps.version(from, to),
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
      journal: new RequestJournal(spool.dir),
      linkUp: () => this.connection.whenOnline(30000),
    });
    const example = config.projects.example;
    const instance = `${hostname()} pid ${process.pid}${streamhost ? `, streamhost ${streamhost.hosts.map((h) => hostPort(h, streamhost.port)).join(' ')}` : ''}`;
    const adhoc = new AdhocCommands(
      addresses.domain,
      adminCommands({ requests: this.requests, metrics: this.metrics, reload: () => this.reload(), instance }),
      (bare) => this.config.admin.jids.includes(bare),
    );
    const basics: ComponentModule = {
      features: [NS.VERSION, NS.PING, NS.VCARD, NS.COMMANDS],
      routes: [
        {
          type: 'get',
          ns: NS.DISCO_INFO,
          name: 'query',
          handler: (_iq, q, f, to) => adhoc.discoInfo(q, f, to) ?? disco.info(q, to),
        },
        {
          type: 'get',
          ns: NS.DISCO_ITEMS,
          name: 'query',
          handler: (_iq, q, f, to) => adhoc.discoItems(q, f, to) ?? disco.items(q),
        },
        { type: 'set', ns: NS.COMMANDS, name: 'command', handler: (_iq, c, f, to) => adhoc.execute(c, f, to) },
        {
          type: 'get',
          ns: NS.VCARD,
          name: 'vCard',
          handler: (_iq, _q, _f, to) =>
            to.kind === 'project' && !parser.isProjectId(to.project)
              ? errorElement('cancel', 'item-not-found')
              : this.vcard(to),
        },
        { type: 'get', ns: NS.VERSION, name: 'query', handler: () => versionResult(pkg.name, pkg.version) },
        { type: 'get', ns: NS.PING, name: 'ping', handler: () => true },
      ],
    };
    // A protocol is advertised only when a request can use it (transfer.order).
    const modules: ComponentModule[] = [
      basics,
      ...(t.order.includes('si') ? [si, s5b] : []),
      ...(t.order.includes('jingle') ? [jingle] : []),
      ...(t.order.includes('si') || t.order.includes('jingle') ? [ibb] : []),
    ];
    this.router = new IqRouter();
    for (const m of modules) this.router.add(m.routes);
    const disco = new Disco(
      modules.flatMap((m) => m.features),
      (t) =>
        t.kind === 'project'
          ? { category: 'client', type: 'bot', name: `Project ${t.project} status report` }
          : { category: 'component', type: 'generic', name: 'Project status reports' },
    );
    const checkProject = (p: string) => (parser.isProjectId(p) ? null : replies.invalidId(p, example));
    this.connection.onStanza(async (el) => {
      // the slot protocol's messages never reach the chat layer, balancing or not
      if (el.name === 'message' && isSlotAddress(el.attrs.to, config.xmpp.domain)) {
        this.slots?.take(el);
        return undefined;
      }
      const from = parseJid(el.attrs.from);
      const target = addresses.target(el.attrs.to);
      if (!from || !target) {
        return el.name === 'iq' ? errorElement('modify', 'jid-malformed') : undefined;
      }
      switch (el.name) {
        case 'iq': {
          if (el.attrs.type === 'result' || el.attrs.type === 'error') {
            // no pending request of ours took it
            const s = stray?.answer(el);
            if (s) this.strayAnswer(s, parser.isProjectId(s.project ?? '') ? s.project : undefined);
            return undefined;
          }
          const reply = await this.router.handle(el, from, target);
          const s = stray?.query(el, reply);
          if (s) this.strayAnswer(s, parser.isProjectId(s.project ?? '') ? s.project : undefined);
          return reply;
        }
        case 'message':
          this.requests.handleMessage(el, from, target);
          return undefined;
        case 'presence':
          caps.notePresence(el);
          if (el.attrs.type === 'unavailable' && from.resource) this.requests.receiverGone(from.full);
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

  /** Tells the user an answer of theirs reached an instance that never made the offer, and offers the report again. */
  private strayAnswer(s: Stray, project: string | undefined): void {
    const from = parseJid(s.user);
    if (!from) return;
    const addresses = this.addresses;
    this.log.info(
      { jid: s.user, ...(project ? { project } : {}), what: s.what },
      'an answer for a transfer this instance did not start',
    );
    const replyFrom = project ? addresses.projectFull(project) : addresses.domain;
    const text = replies.strayAnswer(project, s.wanted, this.config.projects.example);
    this.connection
      .sendWhenOnline(xml('message', { from: replyFrom, to: s.user, type: 'chat' }, xml('body', {}, text)))
      .catch(() => {});
    if (project && s.wanted) {
      // as if the user had asked: access, limits and the journal apply
      const ask = xml('message', { from: s.user, to: replyFrom, type: 'chat' }, xml('body', {}, 'report'));
      this.requests.handleMessage(ask, from, { kind: 'project', project });
    }
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
    const changed = changedSettings(old, next);
    const applied = changed.filter(reloadable);
    const needsRestart = changed.filter((k) => !reloadable(k));
    const effective = withSettings(old, next, applied);
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
    void this.proxies.check(); // a proxy's permissions may have changed on the server side too
    this.log.info({ applied, needsRestart }, 'configuration reloaded');
    return { applied, needsRestart };
  }

  async start(): Promise<void> {
    await this.connection.start();
    this.slots?.start();
    // XEP-0065 §4.2: a proxy that will not serve the component is found now, not by a user's failed transfer.
    await this.proxies.check();
    await this.requests.recover();
  }

  async stop(graceMs = this.config.shutdown.graceMs): Promise<void> {
    await this.requests.close(graceMs);
    await this.slots?.stop();
    await this.connection.stop();
    await this.streamhost?.close();
    await this.linkServer?.close();
    await this.spool.clear();
    await this.metricsServer?.close();
    this.log.info({ spool: this.spool.dir }, 'stopped');
  }
}

/** The transfer modules, sharing one S5B sender and one registry of in-band streams. */
export function transferModules(
  t: Config['transfer'],
  request: (iq: Element, timeoutMs: number) => Promise<Element>,
  streamhost: Streamhost | undefined,
  o: { domain: string; log: Logger; serverDomain?: string },
): {
  si: SiDelivery;
  jingle: JingleDelivery;
  s5b: S5bSender;
  ibb: IbbStreams;
  proxies: Proxies;
  connectionLost: () => void;
} {
  const si: SiOptions = {
    methods: t.methods,
    offerTimeoutMs: t.offerTimeoutMs,
    connectTimeoutMs: t.connectTimeoutMs,
    stallTimeoutMs: t.stallTimeoutMs,
    ibb: t.ibb,
    earlyClients: t.proxy.earlyClients,
  };
  const s5b = new S5bSender({ stallTimeoutMs: t.stallTimeoutMs });
  const ibb = new IbbStreams(request);
  const proxies = new Proxies(t.externalProxies.map(parseProxySpec), {
    request,
    from: o.domain,
    // a server answers these at once; start-up (which awaits the check) must not hang on one that does not
    timeoutMs: Math.min(t.connectTimeoutMs, 10000),
    log: o.log,
    discover: t.discoverProxies ? (o.serverDomain ?? o.domain.split('.').slice(1).join('.')) : undefined,
  });
  const memory = new StreamhostMemory({ maxUsers: t.memory.maxUsers, ttlMs: t.memory.ttlMs });
  const deps = { request, streamhost, proxies, memory, s5b, ibb };
  const siDelivery = new SiDelivery(deps, si);
  const jingle = new JingleDelivery(deps, {
    ...si,
    ackTimeoutMs: t.jingle.ackTimeoutMs,
    peerNetworks: new NetworkPolicy(t.jingle.peerNetworks),
    noIbbClients: t.jingle.noIbbClients,
  });
  const connectionLost = () => {
    siDelivery.connectionLost();
    jingle.connectionLost();
    ibb.abortAll('the connection to the XMPP server was lost');
  };
  return { si: siDelivery, jingle, s5b, ibb, proxies, connectionLost };
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
