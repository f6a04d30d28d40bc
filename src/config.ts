// One schema for every setting: its key in the config file, its environment
// variable, its type, default and meaning. The README's reference is this table.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { NetworkPolicy } from './networks.js';

type Kind = 'string' | 'int' | 'bool' | 'list' | 'enum';

export interface Setting {
  key: string; // dotted path in the config file
  env: string;
  kind: Kind;
  def?: string | number | boolean | readonly string[];
  values?: readonly string[]; // for enum
  min?: number;
  secret?: boolean;
  doc: string;
}

const DECLARED = [
  {
    key: 'xmpp.service',
    env: 'XR_XMPP_SERVICE',
    kind: 'list',
    def: ['xmpp://127.0.0.1:5275'],
    doc: 'ejabberd component listeners (ejabberd_service), in order, as xmpp://host:port, or xmpps://host:port for a listener with `tls: true`; several (comma-separated): the component uses the first that answers and moves to the next when its server goes away',
  },
  {
    key: 'xmpp.tls.caFile',
    env: 'XR_XMPP_TLS_CA_FILE',
    kind: 'string',
    def: '',
    doc: "xmpps:// servers: PEM file of the CA certificates that may sign the server's certificate (default: the system's CAs)",
  },
  {
    key: 'xmpp.tls.serverName',
    env: 'XR_XMPP_TLS_SERVER_NAME',
    kind: 'string',
    def: '',
    doc: "xmpps:// servers: the name the server's certificate must carry (default: each server's host in xmpp.service)",
  },
  {
    key: 'xmpp.domain',
    env: 'XR_XMPP_DOMAIN',
    kind: 'string',
    def: 'reports.example.com',
    doc: 'component domain; project JIDs are <project>@<domain>',
  },
  {
    key: 'xmpp.secret',
    env: 'XR_XMPP_SECRET',
    kind: 'string',
    secret: true,
    doc: "component password (the listener's hosts.<domain>.password); required",
  },
  {
    key: 'xmpp.resource',
    env: 'XR_XMPP_RESOURCE',
    kind: 'string',
    def: 'reports',
    doc: 'resource of project JIDs (1234@domain/reports); file transfers need a full JID',
  },
  {
    key: 'xmpp.reconnectMaxMs',
    env: 'XR_XMPP_RECONNECT_MAX_MS',
    kind: 'int',
    def: 30000,
    min: 1000,
    doc: 'longest wait between reconnect attempts (backoff doubles from 1 s)',
  },
  {
    key: 'xmpp.serverDomain',
    env: 'XR_XMPP_SERVER_DOMAIN',
    kind: 'string',
    def: '',
    doc: "the XMPP server's own domain, searched for proxies and pinged (default: the parent of xmpp.domain; the component protocol does not tell it)",
  },
  {
    key: 'xmpp.keepaliveMs',
    env: 'XR_XMPP_KEEPALIVE_MS',
    kind: 'int',
    def: 0,
    min: 0,
    doc: "how often the component pings xmpp.serverDomain (XEP-0199); no answer within as long again drops the link and moves to the next server, so a vanished server host is left in seconds, not when a write times out minutes later. 0 = never. 30000 suits one connection per domain (Prosody always); with ejabberd domain_balancing leave 0 unless ejabberd loads mod_xr_failover (without it the server's answers all go to one instance)",
  },
  {
    key: 'xmpp.balancing.slots',
    env: 'XR_XMPP_BALANCING_SLOTS',
    kind: 'int',
    def: 0,
    min: 0,
    doc: 'several instances behind ejabberd `domain_balancing` (type bare_source): its component_number. The instances then probe the slots; a slot whose instance died is taken over by a survivor\'s spare connection, which gives it back when that instance returns (README "Several hosts"). 0 = off (one instance, Prosody)',
  },
  {
    key: 'xmpp.balancing.checkMs',
    env: 'XR_XMPP_BALANCING_CHECK_MS',
    kind: 'int',
    def: 2000,
    min: 200,
    doc: 'how often the balancing slots are probed; a slot given back is left to its asker for 2 x this + xmpp.balancing.answerMs',
  },
  {
    key: 'xmpp.balancing.answerMs',
    env: 'XR_XMPP_BALANCING_ANSWER_MS',
    kind: 'int',
    def: 500,
    min: 50,
    doc: "how long a slot probe waits for its echo or a peer's answer before its slot counts as dead",
  },
  {
    key: 'xmpp.balancing.releaseWaitMs',
    env: 'XR_XMPP_BALANCING_RELEASE_WAIT_MS',
    kind: 'int',
    def: 30000,
    min: 0,
    doc: 'a spare connection asked to give its slot back first waits this long at most for the running transfers of the users it served',
  },

  {
    key: 'reports.source',
    env: 'XR_REPORTS_SOURCE',
    kind: 'enum',
    values: ['folder', 'http'],
    def: 'folder',
    doc: 'where reports come from: a local folder or the intranet over HTTP',
  },
  {
    key: 'reports.folder',
    env: 'XR_REPORTS_FOLDER',
    kind: 'string',
    def: 'reports',
    doc: 'folder source: directory holding <project>.<ext> files',
  },
  {
    key: 'reports.urlTemplate',
    env: 'XR_REPORTS_URL_TEMPLATE',
    kind: 'string',
    def: '',
    doc: 'http source: URL with {project}, percent-encoded on substitution, e.g. https://intranet.example.com/projects/{project}/status.pdf',
  },
  {
    key: 'reports.authHeader',
    env: 'XR_REPORTS_AUTH_HEADER',
    kind: 'string',
    def: '',
    secret: true,
    doc: 'http source: full Authorization header value, e.g. "Bearer abc"',
  },
  {
    key: 'reports.basicUser',
    env: 'XR_REPORTS_BASIC_USER',
    kind: 'string',
    def: '',
    doc: 'http source: basic-auth user (with reports.basicPassword)',
  },
  {
    key: 'reports.basicPassword',
    env: 'XR_REPORTS_BASIC_PASSWORD',
    kind: 'string',
    def: '',
    secret: true,
    doc: 'http source: basic-auth password',
  },
  {
    key: 'reports.requesterHeader',
    env: 'XR_REPORTS_REQUESTER_HEADER',
    kind: 'string',
    def: '',
    doc: "http source: header carrying the requester's bare JID so the intranet can authorize per user (e.g. X-Requested-By)",
  },
  {
    key: 'reports.timeoutMs',
    env: 'XR_REPORTS_TIMEOUT_MS',
    kind: 'int',
    def: 30000,
    min: 100,
    doc: 'http source: connect and idle timeout for the download',
  },
  {
    key: 'reports.maxBytes',
    env: 'XR_REPORTS_MAX_BYTES',
    kind: 'int',
    def: 100 * 1024 * 1024,
    min: 1,
    doc: 'largest report accepted; enforced while streaming',
  },
  {
    key: 'reports.fileName',
    env: 'XR_REPORTS_FILE_NAME',
    kind: 'string',
    def: 'status-{project}',
    doc: 'file name offered to the user ({project} substituted; extension from the source)',
  },
  {
    key: 'reports.metadataUrlTemplate',
    env: 'XR_REPORTS_METADATA_URL_TEMPLATE',
    kind: 'string',
    def: '',
    doc: 'optional URL with {project} answering JSON {"name": "Apollo"}: project JIDs then show "Project 1234 - Apollo" in their vCard (same auth as the http source; cached, never delays a transfer)',
  },
  {
    key: 'reports.spoolDir',
    env: 'XR_REPORTS_SPOOL_DIR',
    kind: 'string',
    def: '',
    doc: 'where reports are spooled while being sent (default: a private dir under the OS temp dir)',
  },

  {
    key: 'projects.idPattern',
    env: 'XR_PROJECTS_ID_PATTERN',
    kind: 'string',
    def: '^[0-9]{1,12}$',
    doc: 'regular expression a project id must match',
  },
  {
    key: 'projects.example',
    env: 'XR_PROJECTS_EXAMPLE',
    kind: 'string',
    def: '1234',
    doc: 'an example project id shown in help and error messages',
  },
  {
    key: 'access.allowJids',
    env: 'XR_ACCESS_ALLOW_JIDS',
    kind: 'list',
    def: [],
    doc: 'bare JIDs allowed to ask even outside the allowed domains (comma-separated)',
  },
  {
    key: 'access.denyJids',
    env: 'XR_ACCESS_DENY_JIDS',
    kind: 'list',
    def: [],
    doc: 'bare JIDs never served, whatever their domain (comma-separated)',
  },
  {
    key: 'access.allowedDomains',
    env: 'XR_ACCESS_ALLOWED_DOMAINS',
    kind: 'list',
    def: [],
    doc: 'requester domains allowed to ask (comma-separated); default: the parent of xmpp.domain',
  },

  {
    key: 'transfer.methods',
    env: 'XR_TRANSFER_METHODS',
    kind: 'list',
    def: ['s5b', 'ibb'],
    doc: 'stream methods offered, in order of preference: s5b, ibb',
  },
  {
    key: 'transfer.offerTimeoutMs',
    env: 'XR_TRANSFER_OFFER_TIMEOUT_MS',
    kind: 'int',
    def: 300000,
    min: 1000,
    doc: 'how long a user has to accept a file offer',
  },
  {
    key: 'transfer.connectTimeoutMs',
    env: 'XR_TRANSFER_CONNECT_TIMEOUT_MS',
    kind: 'int',
    def: 60000,
    min: 1000,
    doc: 'how long the receiver has to connect to a streamhost before falling back to IBB',
  },
  {
    key: 'transfer.stallTimeoutMs',
    env: 'XR_TRANSFER_STALL_TIMEOUT_MS',
    kind: 'int',
    def: 60000,
    min: 1000,
    doc: 'a transfer that makes no progress for this long fails',
  },
  {
    key: 'transfer.proxy.enabled',
    env: 'XR_PROXY_ENABLED',
    kind: 'bool',
    def: true,
    doc: 'run the built-in XEP-0065 streamhost',
  },
  {
    key: 'transfer.proxy.bindHost',
    env: 'XR_PROXY_BIND_HOST',
    kind: 'string',
    def: '::',
    doc: 'address the built-in streamhost listens on (:: = every IPv6 and IPv4 address; 0.0.0.0 = IPv4 only)',
  },
  {
    key: 'transfer.proxy.bindPort',
    env: 'XR_PROXY_BIND_PORT',
    kind: 'int',
    def: 7625,
    min: 0,
    doc: 'port the built-in streamhost listens on (open it in the firewall)',
  },
  {
    key: 'transfer.proxy.advertiseHost',
    env: 'XR_PROXY_ADVERTISE_HOST',
    kind: 'string',
    def: '',
    doc: 'host (address or DNS name) offered to clients first; when bound to all addresses, every non-loopback, non-link-local address of the host follows (IPv4, then IPv6 if bound to ::), 127.0.0.1 only when there is none',
  },
  {
    key: 'transfer.proxy.advertisePort',
    env: 'XR_PROXY_ADVERTISE_PORT',
    kind: 'int',
    def: 0,
    min: 0,
    doc: 'port offered to clients (default: the bound port); differs behind NAT',
  },
  {
    key: 'transfer.proxy.handshakeTimeoutMs',
    env: 'XR_PROXY_HANDSHAKE_TIMEOUT_MS',
    kind: 'int',
    def: 10000,
    min: 100,
    doc: 'SOCKS5 handshakes slower than this are closed',
  },
  {
    key: 'transfer.proxy.maxConnections',
    env: 'XR_PROXY_MAX_CONNECTIONS',
    kind: 'int',
    def: 1000,
    min: 1,
    doc: 'open streamhost connections at most',
  },
  {
    key: 'transfer.proxy.maxPerAddress',
    env: 'XR_PROXY_MAX_PER_ADDRESS',
    kind: 'int',
    def: 50,
    min: 1,
    doc: 'open streamhost connections at most from one remote address',
  },
  {
    key: 'transfer.proxy.earlyClients',
    env: 'XR_PROXY_EARLY_CLIENTS',
    kind: 'list',
    def: ['Pidgin', 'Finch'],
    doc: "client names (disco#info identity, any case) that try one streamhost at a time and read exactly the SOCKS5 reply (libpurple, whose identity is its UI's name, or pidgin when the UI gives none): once such a client is connected to our streamhost, the bytes start at once instead of after its streamhost-used (one trip through the server fewer); the transfer still counts only once streamhost-used names us; none = always wait",
  },
  {
    key: 'transfer.externalProxies',
    env: 'XR_EXTERNAL_PROXIES',
    kind: 'list',
    def: [],
    doc: 'extra XEP-0065 proxies offered after the built-in one, as jid@host:port (e.g. proxy.example.com@proxy.example.com:7777)',
  },
  {
    key: 'transfer.discoverProxies',
    env: 'XR_DISCOVER_PROXIES',
    kind: 'bool',
    def: true,
    doc: "find the server's XEP-0065 proxies at connect and on reload (disco#items and disco#info on xmpp.serverDomain) and offer them after the built-in streamhost and transfer.externalProxies",
  },
  {
    key: 'transfer.memory.maxUsers',
    env: 'XR_MEMORY_MAX_USERS',
    kind: 'int',
    def: 10000,
    min: 0,
    doc: 'users (bare JIDs) for whom the streamhost that worked is remembered and offered first next time; least recently used forgotten first; 0 = remember nothing',
  },
  {
    key: 'transfer.memory.ttlMs',
    env: 'XR_MEMORY_TTL_MS',
    kind: 'int',
    def: 604800000,
    min: 1000,
    doc: 'how long what a transfer showed about a streamhost (worked, failed) counts for that user',
  },
  {
    key: 'transfer.ibb.blockSize',
    env: 'XR_IBB_BLOCK_SIZE',
    kind: 'int',
    def: 32768,
    min: 1,
    doc: 'IBB block size offered (at most 65535); lowered to 4096 when the receiver refuses',
  },
  {
    key: 'transfer.ibb.window',
    env: 'XR_IBB_WINDOW',
    kind: 'int',
    def: 8,
    min: 1,
    doc: 'IBB blocks in flight (1 = stop-and-wait)',
  },
  {
    key: 'transfer.order',
    env: 'XR_TRANSFER_ORDER',
    kind: 'list',
    def: ['si', 'jingle', 'link'],
    doc: 'how a report reaches a client, in order of preference, each only where the client advertises it: si (XEP-0095/0096: Pidgin, Psi), jingle (XEP-0234: Dino, Conversations), link (HTTP link)',
  },
  {
    key: 'transfer.jingle.peerNetworks',
    env: 'XR_JINGLE_PEER_NETWORKS',
    kind: 'list',
    def: ['0.0.0.0/0', '::/0', '!127.0.0.0/8', '!::1/128', '!0.0.0.0/8', '!169.254.0.0/16', '!fe80::/10'],
    doc: 'Jingle S5B: networks (CIDR; "!" excludes) the component may connect to for the receiver\'s own candidates; none = never',
  },
  {
    key: 'transfer.jingle.noIbbClients',
    env: 'XR_JINGLE_NO_IBB_CLIENTS',
    kind: 'list',
    def: ['Dino'],
    doc: 'client names (disco#info identity) whose Jingle in-band transfer acknowledges data without saving it: they get a link when no direct connection works',
  },
  {
    key: 'transfer.jingle.brokenClients',
    env: 'XR_JINGLE_BROKEN_CLIENTS',
    kind: 'list',
    def: ['Gajim 1'],
    doc: 'client names (disco#info identity), each optionally with a version prefix (XEP-0092), whose Jingle file transfer never answers an offer (Gajim 1.x): they get a link straight away',
  },
  {
    key: 'transfer.jingle.ackTimeoutMs',
    env: 'XR_JINGLE_ACK_TIMEOUT_MS',
    kind: 'int',
    def: 10000,
    min: 100,
    doc: 'how long a client may take to acknowledge a Jingle offer (clients do so at once, before the user decides); silence sends the link instead',
  },

  {
    key: 'links.publicBaseUrl',
    env: 'XR_LINKS_PUBLIC_BASE_URL',
    kind: 'string',
    def: '',
    doc: 'base URL of the built-in link server as users reach it (e.g. https://reports.example.com/files/); empty = no links (unless links.uploadService is set)',
  },
  {
    key: 'links.bindHost',
    env: 'XR_LINKS_BIND_HOST',
    kind: 'string',
    def: '0.0.0.0',
    doc: 'address the link server listens on',
  },
  {
    key: 'links.bindPort',
    env: 'XR_LINKS_BIND_PORT',
    kind: 'int',
    def: 7626,
    min: 0,
    doc: 'port the link server listens on',
  },
  {
    key: 'links.stateDir',
    env: 'XR_LINKS_STATE_DIR',
    kind: 'string',
    def: '',
    doc: 'where linked files and link state are kept across restarts (default: under the OS temp dir)',
  },
  {
    key: 'links.ttlMs',
    env: 'XR_LINKS_TTL_MS',
    kind: 'int',
    def: 24 * 3600 * 1000,
    min: 1000,
    doc: 'how long a link works',
  },
  {
    key: 'links.maxDownloads',
    env: 'XR_LINKS_MAX_DOWNLOADS',
    kind: 'int',
    def: 10,
    min: 0,
    doc: 'complete downloads a link allows (0 = no limit)',
  },
  {
    key: 'links.uploadService',
    env: 'XR_LINKS_UPLOAD_SERVICE',
    kind: 'string',
    def: '',
    doc: 'XEP-0363 upload service JID (e.g. upload.example.com): upload there instead of serving links ourselves',
  },
  {
    key: 'caps.timeoutMs',
    env: 'XR_CAPS_TIMEOUT_MS',
    kind: 'int',
    def: 5000,
    min: 100,
    doc: "how long to wait for a client's disco#info before treating it as unknown",
  },
  {
    key: 'caps.sessionCacheMs',
    env: 'XR_CAPS_SESSION_CACHE_MS',
    kind: 'int',
    def: 600000,
    min: 0,
    doc: "how long a client's disco#info answer is reused for the same full JID when its presence carried no capabilities (a user asking a project not in their roster); forgotten when it goes offline or a transfer to it fails; 0 = ask every time",
  },
  {
    key: 'limits.requestsPerMinute',
    env: 'XR_LIMITS_REQUESTS_PER_MINUTE',
    kind: 'int',
    def: 20,
    min: 1,
    doc: 'report requests one user may make per minute',
  },
  {
    key: 'limits.maxConcurrent',
    env: 'XR_LIMITS_MAX_CONCURRENT',
    kind: 'int',
    def: 50,
    min: 1,
    doc: 'reports fetched and sent at once, all users together; more wait in a queue',
  },
  {
    key: 'limits.maxConcurrentPerUser',
    env: 'XR_LIMITS_MAX_CONCURRENT_PER_USER',
    kind: 'int',
    def: 3,
    min: 1,
    doc: 'reports fetched and sent at once for one user',
  },
  {
    key: 'limits.maxQueue',
    env: 'XR_LIMITS_MAX_QUEUE',
    kind: 'int',
    def: 500,
    min: 0,
    doc: 'requests waiting at most; beyond, users are asked to come back later',
  },
  {
    key: 'limits.maxQueuedPerUser',
    env: 'XR_LIMITS_MAX_QUEUED_PER_USER',
    kind: 'int',
    def: 10,
    min: 0,
    doc: 'requests of one user waiting at most',
  },
  {
    key: 'metrics.bindHost',
    env: 'XR_METRICS_BIND_HOST',
    kind: 'string',
    def: '127.0.0.1',
    doc: 'address of the /healthz and /metrics (Prometheus) listener; empty = off',
  },
  {
    key: 'metrics.bindPort',
    env: 'XR_METRICS_BIND_PORT',
    kind: 'int',
    def: 0,
    min: 0,
    doc: 'port of the /healthz and /metrics listener; 0 = off',
  },
  {
    key: 'admin.jids',
    env: 'XR_ADMIN_JIDS',
    kind: 'list',
    def: [],
    doc: 'bare JIDs allowed to run the admin commands (XEP-0050 ad-hoc commands on the component domain: list/cancel transfers, counters, reload config)',
  },
  {
    key: 'shutdown.graceMs',
    env: 'XR_SHUTDOWN_GRACE_MS',
    kind: 'int',
    def: 30000,
    min: 0,
    doc: 'on SIGTERM/SIGINT, how long running transfers may finish before they are cut',
  },
  {
    key: 'log.level',
    env: 'XR_LOG_LEVEL',
    kind: 'enum',
    values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    def: 'info',
    doc: 'log level',
  },
  {
    key: 'log.format',
    env: 'XR_LOG_FORMAT',
    kind: 'enum',
    values: ['auto', 'json', 'pretty'],
    def: 'auto',
    doc: 'json: one JSON object a line (for systemd and log shippers); pretty: plain text for people; auto: pretty when stdout is a terminal',
  },
  {
    key: 'log.preciseTime',
    env: 'XR_LOG_PRECISE_TIME',
    kind: 'bool',
    def: false,
    doc: 'log times in milliseconds with a microsecond fraction (to follow one request step by step; the bench trace uses it)',
  },
] as const satisfies readonly Setting[];

export const SETTINGS: readonly Setting[] = DECLARED;

export interface Config {
  xmpp: {
    service: string[];
    tls: { caFile: string; serverName: string };
    domain: string;
    secret: string;
    resource: string;
    reconnectMaxMs: number;
    serverDomain: string;
    keepaliveMs: number;
    balancing: { slots: number; checkMs: number; answerMs: number; releaseWaitMs: number };
  };
  reports: {
    source: 'folder' | 'http';
    folder: string;
    urlTemplate: string;
    authHeader: string;
    basicUser: string;
    basicPassword: string;
    requesterHeader: string;
    timeoutMs: number;
    maxBytes: number;
    fileName: string;
    spoolDir: string;
    metadataUrlTemplate: string;
  };
  projects: { idPattern: string; example: string };
  access: { allowedDomains: string[]; allowJids: string[]; denyJids: string[] };
  transfer: {
    methods: Array<'s5b' | 'ibb'>;
    offerTimeoutMs: number;
    connectTimeoutMs: number;
    stallTimeoutMs: number;
    proxy: {
      enabled: boolean;
      bindHost: string;
      bindPort: number;
      advertiseHost: string;
      advertisePort: number;
      handshakeTimeoutMs: number;
      maxConnections: number;
      maxPerAddress: number;
      earlyClients: string[];
    };
    externalProxies: string[];
    discoverProxies: boolean;
    memory: { maxUsers: number; ttlMs: number };
    ibb: { blockSize: number; window: number };
    order: Array<'si' | 'jingle' | 'link'>;
    jingle: { peerNetworks: string[]; noIbbClients: string[]; brokenClients: string[]; ackTimeoutMs: number };
  };
  links: {
    publicBaseUrl: string;
    bindHost: string;
    bindPort: number;
    stateDir: string;
    ttlMs: number;
    maxDownloads: number;
    uploadService: string;
  };
  caps: { timeoutMs: number; sessionCacheMs: number };
  metrics: { bindHost: string; bindPort: number };
  admin: { jids: string[] };
  limits: {
    requestsPerMinute: number;
    maxConcurrent: number;
    maxConcurrentPerUser: number;
    maxQueue: number;
    maxQueuedPerUser: number;
  };
  shutdown: { graceMs: number };
  log: {
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
    format: 'auto' | 'json' | 'pretty';
    preciseTime: boolean;
  };
}

// The settings table and the Config type describe one shape: every leaf of
// Config is one setting, of the matching kind (enum settings list exactly
// the type's values). tsc fails here when they drift apart.
type Leaves<T, P extends string = ''> = {
  [K in keyof T & string]: T[K] extends string | number | boolean | readonly unknown[]
    ? `${P}${K}`
    : Leaves<T[K], `${P}${K}.`>;
}[keyof T & string];
type ValueAt<T, K extends string> = K extends `${infer H}.${infer R}`
  ? H extends keyof T
    ? ValueAt<T[H], R>
    : never
  : K extends keyof T
    ? T[K]
    : never;
type KindOf<V> = V extends boolean
  ? 'bool'
  : V extends number
    ? 'int'
    : V extends readonly unknown[]
      ? 'list'
      : string extends V
        ? 'string'
        : 'enum';
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Declared = (typeof DECLARED)[number];
type Agrees<S> = S extends { key: infer K extends string; kind: infer D }
  ? Same<D, KindOf<ValueAt<Config, K>>> extends true
    ? S extends { values: readonly (infer E)[] }
      ? Same<E, ValueAt<Config, K>>
      : true
    : false
  : false;
type Check<T extends true> = T;
export type SettingsMatchConfig = [Check<Same<Declared['key'], Leaves<Config>>>, Check<Same<Agrees<Declared>, true>>];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Tree = Record<string, unknown>;

function getPath(tree: Tree, key: string): unknown {
  let node: unknown = tree;
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Tree)[part];
  }
  return node;
}

function setPath(tree: Tree, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = tree;
  for (const part of parts.slice(0, -1)) {
    if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
    node = node[part] as Tree;
  }
  node[parts[parts.length - 1]] = value;
}

function coerce(s: Setting, raw: unknown, origin: string): unknown {
  const bad = (expected: string): never => {
    throw new ConfigError(
      `${s.key} (environment ${s.env}), from ${origin}: expected ${expected}, got ${s.secret ? '(hidden)' : JSON.stringify(raw)}`,
    );
  };
  switch (s.kind) {
    case 'string':
      if (typeof raw === 'number') return String(raw);
      if (typeof raw !== 'string') return bad('a string');
      return raw;
    case 'enum':
      if (typeof raw !== 'string' || !s.values!.includes(raw)) return bad(`one of ${s.values!.join(', ')}`);
      return raw;
    case 'int': {
      const n = typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isInteger(n)) return bad('a whole number');
      if (s.min !== undefined && n < s.min) return bad(`a whole number >= ${s.min}`);
      return n;
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(true|1|yes|on)$/i.test(raw)) return true;
      if (typeof raw === 'string' && /^(false|0|no|off)$/i.test(raw)) return false;
      return bad('true or false');
    case 'list':
      if (typeof raw === 'string')
        return raw
          .split(',')
          .map((x) => x.trim())
          .filter((x) => x !== '');
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return raw;
      return bad('a list of strings (or a comma-separated string)');
  }
}

function readFileTree(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      `config file ${file} is not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed))
    throw new ConfigError(`config file ${file}: expected a mapping at the top`);
  return parsed as Tree;
}

function checkUnknownKeys(tree: Tree, file: string, prefix = ''): void {
  for (const [k, v] of Object.entries(tree)) {
    if (k.includes('.'))
      throw new ConfigError(
        `${file}: key "${prefix + k}" contains a dot; write nested mappings instead (e.g. reports: {timeoutMs: 5000})`,
      );
    const key = prefix + k;
    const exact = SETTINGS.some((s) => s.key === key);
    const parent = SETTINGS.some((s) => s.key.startsWith(key + '.'));
    if (!exact && !parent) throw new ConfigError(`${file}: unknown key "${key}"`);
    if (!exact && parent && v !== null && typeof v === 'object' && !Array.isArray(v))
      checkUnknownKeys(v as Tree, file, key + '.');
    else if (!exact) throw new ConfigError(`${file}: "${key}" must be a mapping`);
  }
}

/** Builds the config from defaults, then the file (if any), then the environment. */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.XR_CONFIG ?? '';
  const fileTree = file ? readFileTree(file) : {};
  if (file) checkUnknownKeys(fileTree, file);
  const out: Tree = {};
  for (const s of SETTINGS) {
    let value: unknown = s.def;
    const fromFile = getPath(fileTree, s.key);
    if (fromFile !== undefined && fromFile !== null) value = coerce(s, fromFile, file);
    const fromEnv = env[s.env];
    if (fromEnv !== undefined && fromEnv !== '') value = coerce(s, fromEnv, 'the environment');
    if (value === undefined) throw new ConfigError(`${s.key} (environment ${s.env}) is required: ${s.doc}`);
    setPath(out, s.key, Array.isArray(value) ? [...(value as unknown[])] : value);
  }
  return validate(out as unknown as Config);
}

function validate(c: Config): Config {
  const fail = (key: string, msg: string): never => {
    const s = SETTINGS.find((x) => x.key === key)!;
    throw new ConfigError(`${key} (environment ${s.env}): ${msg}`);
  }; /** An http(s) URL; a report URL carries no credentials (they come from reports.basicUser/authHeader). */
  const checkUrl = (key: string, raw: string, noCredentials: boolean): void => {
    let u: URL | undefined;
    try {
      u = new URL(raw.replace('{project}', 'x'));
    } catch {
      fail(key, `not a valid URL: ${JSON.stringify(raw)}`);
    }
    if (u && u.protocol !== 'http:' && u.protocol !== 'https:') fail(key, 'expected an http: or https: URL');
    if (noCredentials && u && (u.username || u.password))
      fail(key, 'credentials do not belong in the URL; use reports.basicUser/basicPassword or reports.authHeader');
  };

  checkServices(c.xmpp, fail);
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(c.xmpp.domain))
    fail('xmpp.domain', `expected a domain name such as reports.example.com, got ${JSON.stringify(c.xmpp.domain)}`);
  c.xmpp.domain = c.xmpp.domain.toLowerCase();
  if (c.xmpp.secret === '') fail('xmpp.secret', 'must not be empty');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(c.xmpp.resource))
    fail('xmpp.resource', 'expected letters, digits, ".", "_" or "-"');
  try {
    new RegExp(c.projects.idPattern);
  } catch (err) {
    fail('projects.idPattern', `not a valid regular expression: ${(err as Error).message}`);
  }
  if (c.reports.source === 'http') {
    if (!c.reports.urlTemplate.includes('{project}'))
      fail('reports.urlTemplate', 'the http source needs a URL template containing {project}');
    checkUrl('reports.urlTemplate', c.reports.urlTemplate, true);
    if (c.reports.basicUser !== '' && c.reports.authHeader !== '')
      fail('reports.basicUser', 'give either basic auth or reports.authHeader, not both');
  }
  if (!/\{project\}/.test(c.reports.fileName) || /[/\\]/.test(c.reports.fileName))
    fail('reports.fileName', 'expected a plain file name containing {project}');
  for (const m of c.transfer.methods)
    if (m !== 's5b' && m !== 'ibb')
      fail('transfer.methods', `unknown method ${JSON.stringify(m)}; expected s5b and/or ibb`);
  if (c.transfer.methods.length === 0) fail('transfer.methods', 'offer at least one method');
  if (c.transfer.proxy.bindPort > 65535) fail('transfer.proxy.bindPort', 'expected a port number up to 65535');
  if (c.transfer.proxy.advertisePort > 65535)
    fail('transfer.proxy.advertisePort', 'expected a port number up to 65535');
  for (const p of c.transfer.externalProxies) {
    if (!/^[^@\s]+@[^\s:]+:\d{1,5}$/.test(p))
      fail('transfer.externalProxies', `expected jid@host:port, got ${JSON.stringify(p)}`);
  }
  if (c.xmpp.serverDomain && !/^[a-z0-9-]+(\.[a-z0-9-]+)*$/i.test(c.xmpp.serverDomain))
    fail('xmpp.serverDomain', `expected a domain such as example.com, got ${JSON.stringify(c.xmpp.serverDomain)}`);
  c.xmpp.serverDomain = (c.xmpp.serverDomain || c.xmpp.domain.split('.').slice(1).join('.')).toLowerCase();
  if (c.xmpp.balancing.slots > 64) fail('xmpp.balancing.slots', 'at most 64 (ejabberd component_number)');
  if (c.xmpp.balancing.slots > 0 && c.xmpp.balancing.answerMs >= c.xmpp.balancing.checkMs)
    fail('xmpp.balancing.answerMs', 'must be shorter than xmpp.balancing.checkMs');
  if (c.transfer.ibb.blockSize > 65535) fail('transfer.ibb.blockSize', 'expected at most 65535 (XEP-0047)');
  if (c.transfer.ibb.window > 256) fail('transfer.ibb.window', 'expected at most 256');
  for (const m of c.transfer.order)
    if (m !== 'si' && m !== 'jingle' && m !== 'link')
      fail('transfer.order', `unknown method ${JSON.stringify(m)}; expected si, jingle and/or link`);
  if (c.transfer.order.length === 0 || new Set(c.transfer.order).size !== c.transfer.order.length)
    fail('transfer.order', 'list each of si, jingle, link at most once, at least one');
  const badNetwork = NetworkPolicy.validate(c.transfer.jingle.peerNetworks);
  if (badNetwork) fail('transfer.jingle.peerNetworks', badNetwork);
  if (c.links.publicBaseUrl) checkUrl('links.publicBaseUrl', c.links.publicBaseUrl, false);
  if (c.reports.metadataUrlTemplate) {
    checkUrl('reports.metadataUrlTemplate', c.reports.metadataUrlTemplate, true);
    if (!c.reports.metadataUrlTemplate.includes('{project}'))
      fail('reports.metadataUrlTemplate', 'expected a URL containing {project}');
  }
  if (c.metrics.bindPort > 65535) fail('metrics.bindPort', 'expected a port number up to 65535');
  c.admin.jids = c.admin.jids.map((j) => j.toLowerCase());
  for (const j of c.admin.jids)
    if (!/^[^@/\s]+@[^@/\s]+$/.test(j))
      fail('admin.jids', `expected bare JIDs like alice@example.com, got ${JSON.stringify(j)}`);
  if (c.links.bindPort > 65535) fail('links.bindPort', 'expected a port number up to 65535');
  if (c.links.uploadService && !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(c.links.uploadService))
    fail(
      'links.uploadService',
      `expected a service JID such as upload.example.com, got ${JSON.stringify(c.links.uploadService)}`,
    );
  if (c.access.allowedDomains.length === 0) {
    const parent = c.xmpp.domain.split('.').slice(1).join('.');
    c.access.allowedDomains = [parent];
  }
  c.access.allowedDomains = c.access.allowedDomains.map((d) => d.toLowerCase());
  c.access.allowJids = c.access.allowJids.map((j) => j.toLowerCase());
  c.access.denyJids = c.access.denyJids.map((j) => j.toLowerCase());
  for (const j of [...c.access.allowJids, ...c.access.denyJids]) {
    if (!/^[^@/\s]+@[^@/\s]+$/.test(j))
      fail(
        c.access.allowJids.includes(j) ? 'access.allowJids' : 'access.denyJids',
        `expected bare JIDs like alice@example.com, got ${JSON.stringify(j)}`,
      );
  }
  return c;
}

/** xmpp.service (each entry by itself) and the xmpp.tls settings that go with xmpps:// entries. */
function checkServices(x: Config['xmpp'], fail: (key: string, msg: string) => never): void {
  if (x.service.length === 0) fail('xmpp.service', 'give at least one server, e.g. xmpp://127.0.0.1:5275');
  const seen = new Set<string>();
  x.service.forEach((svc, i) => {
    const which = x.service.length > 1 ? `entry ${i + 1} of ${x.service.length}, ` : '';
    const m = /^(xmpps?):\/\/(?:\[[0-9a-f:.]+\]|[^/:[\]@\s]+):(\d{1,5})$/i.exec(svc);
    if (!m) fail('xmpp.service', `${which}${JSON.stringify(svc)}: expected xmpp://host:port or xmpps://host:port`);
    const port = Number(m[2]);
    if (port < 1 || port > 65535) fail('xmpp.service', `${which}${JSON.stringify(svc)}: port ${port} is not 1-65535`);
    if (seen.has(svc.toLowerCase())) fail('xmpp.service', `${which}${JSON.stringify(svc)} is listed twice`);
    seen.add(svc.toLowerCase());
  });
  const tls = x.service.some((svc) => /^xmpps:/i.test(svc));
  for (const key of ['caFile', 'serverName'] as const)
    if (x.tls[key] !== '' && !tls)
      fail(
        `xmpp.tls.${key}`,
        `set, but no server in xmpp.service uses TLS (xmpps://host:port): the link would not be encrypted`,
      );
  if (x.tls.serverName !== '' && !/^([a-z0-9-]+(\.[a-z0-9-]+)*|[0-9.]+|[0-9a-f:]+)$/i.test(x.tls.serverName))
    fail('xmpp.tls.serverName', `expected a host name or address, got ${JSON.stringify(x.tls.serverName)}`);
  if (x.tls.caFile !== '') {
    let pem: string;
    try {
      pem = readFileSync(x.tls.caFile, 'utf8');
    } catch (err) {
      return fail('xmpp.tls.caFile', `cannot read ${x.tls.caFile}: ${(err as Error).message}`);
    }
    try {
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
      new X509Certificate(pem);
    } catch (err) {
      fail('xmpp.tls.caFile', `${x.tls.caFile} holds no usable CA certificate: ${(err as Error).message}`);
    }
  }
}

/** The settings whose values differ between two configurations. */
export function changedSettings(a: Config, b: Config): string[] {
  const at = (c: Config, key: string) => JSON.stringify(getPath(c as unknown as Tree, key));
  return SETTINGS.map((s) => s.key).filter((k) => at(a, k) !== at(b, k));
}

/** A copy of `base` with the given settings taken from `from`. */
export function withSettings(base: Config, from: Config, keys: readonly string[]): Config {
  const out = structuredClone(base);
  for (const k of keys) setPath(out as unknown as Tree, k, structuredClone(getPath(from as unknown as Tree, k)));
  return out;
}

/** The config with secrets masked, safe to log. */
export function redacted(c: Config): Tree {
  const copy = JSON.parse(JSON.stringify(c)) as Tree;
  for (const s of SETTINGS) if (s.secret && getPath(copy, s.key)) setPath(copy, s.key, '(hidden)');
  return copy;
}
