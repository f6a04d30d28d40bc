// Wiring only: builds the parts and connects them.
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Element } from '@xmpp/component';
import type { Logger } from 'pino';
import { CommandParser } from './chat/commands.js';
import { replies } from './chat/replies.js';
import { Requests } from './chat/requests.js';
import { redacted, type Config } from './config.js';
import { FolderSource } from './reports/folder-source.js';
import { HttpSource } from './reports/http-source.js';
import type { ReportSource } from './reports/source.js';
import { Spool } from './reports/spool.js';
import { ChoosingDelivery, ServerLinks, UploadLinks } from './transfer/link.js';
import { LinkServer } from './transfer/link-server.js';
import { SiDelivery, TRANSFER_FEATURES } from './transfer/si-delivery.js';
import { Capabilities } from './xmpp/caps.js';
import { Streamhost } from './transfer/streamhost.js';
import { Addresses, parseJid } from './xmpp/addresses.js';
import { versionResult } from './xmpp/basics.js';
import { Connection } from './xmpp/connection.js';
import { Disco } from './xmpp/disco.js';
import { errorElement } from './xmpp/errors.js';
import { NS } from './xmpp/namespaces.js';
import { handlePresence } from './xmpp/presence.js';
import { IqRouter } from './xmpp/router.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };

export class App {
  readonly connection: Connection;
  readonly requests: Requests;
  readonly streamhost: Streamhost | undefined;
  private readonly spool: Spool;

  readonly linkServer: LinkServer | undefined;

  private constructor(
    readonly config: Config,
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
      { service: config.xmpp.service, domain: config.xmpp.domain, secret: config.xmpp.secret, reconnectMaxMs: config.xmpp.reconnectMaxMs },
      log,
    );
    const send = (el: Element) => this.connection.sendWhenOnline(el);
    const source: ReportSource =
      config.reports.source === 'http'
        ? new HttpSource(spool, config.reports)
        : new FolderSource(config.reports.folder, spool, { maxBytes: config.reports.maxBytes, fileName: config.reports.fileName });
    const iqs = new IqRouter();
    const si = new SiDelivery({ connection: this.connection, streamhost, config: config.transfer, router: iqs });
    this.connection.onLost(() => si.connectionLost());
    const request = (iq: Element, t: number) => this.connection.request(iq, t);
    const caps = new Capabilities(request, config.caps.timeoutMs);
    const links = config.links.uploadService
      ? new UploadLinks(request, config.links.uploadService, config.reports.timeoutMs)
      : linkServer
        ? new ServerLinks(linkServer)
        : undefined;
    const delivery = new ChoosingDelivery(si, links, caps);
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
    });
    const example = config.projects.example;
    const disco = new Disco([NS.VERSION, NS.PING, ...TRANSFER_FEATURES], (t) =>
      t.kind === 'project'
        ? { category: 'client', type: 'bot', name: `Project ${t.project} status report` }
        : { category: 'component', type: 'generic', name: 'Project status reports' },
    );
    iqs
      .on('get', NS.DISCO_INFO, 'query', (_iq, q, _f, t) => disco.info(q, t))
      .on('get', NS.DISCO_ITEMS, 'query', (_iq, q) => disco.items(q))
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

  static async create(config: Config, log: Logger): Promise<App> {
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
    return new App(config, log, spool, streamhost, linkServer);
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
    this.log.info({ spool: this.spool.dir }, 'stopped');
  }
}
