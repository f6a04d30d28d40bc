// Third-party XEP-0065 proxies: the configured ones (transfer.externalProxies)
// and, unless turned off, the server's own, found by service discovery
// (XEP-0065 §4: disco#items on the server's domain, disco#info on each item
// for the identity category "proxy", type "bytestreams"). Before any is
// offered, each is asked for its network address (§4.2), which is also how a
// proxy that will not serve the component says so. Such a proxy would let a
// receiver commit to it and then refuse the activation (libpurple then fails
// without trying in-band), so it is logged as the configuration error it is
// and not offered.
import { xml, type Element } from '@xmpp/component';
import type { Logger } from 'pino';
import { requestCondition, requestFailure } from '../../xmpp/errors.js';
import { NS } from '../../xmpp/namespaces.js';
import type { StreamhostInfo } from './stanzas.js';

/** Conditions with which a proxy says it will not serve us (RFC 6120 §8.3.3). */
const REFUSALS = new Set(['forbidden', 'not-allowed', 'not-authorized', 'service-unavailable', 'item-not-found']);

export interface ProxyCheckOptions {
  request: (iq: Element, timeoutMs: number) => Promise<Element>;
  /** who asks: the component's domain, as the server's ACLs know it */
  from: string;
  timeoutMs: number;
  log: Logger;
  /** the server domain whose disco#items are searched for proxies; undefined = no discovery */
  discover?: string;
}

export class Proxies {
  private usable: readonly StreamhostInfo[];

  constructor(
    private readonly configured: readonly StreamhostInfo[],
    private readonly o: ProxyCheckOptions,
  ) {
    this.usable = configured;
  }

  /** The proxies to offer now: the configured ones that did not refuse the component. */
  get list(): readonly StreamhostInfo[] {
    return this.usable;
  }

  /**
   * Finds the server's proxies (when discovery is on), then asks every
   * configured and discovered proxy for its streamhost; run at connect and on
   * reload. Configured proxies come first, in config order, then discovered ones.
   */
  async check(): Promise<void> {
    const discovered = this.o.discover === undefined ? [] : await this.discover(this.o.discover);
    const configuredJids = new Set(this.configured.map((p) => p.jid));
    const candidates: Array<{ jid: string; configured?: StreamhostInfo }> = [
      ...this.configured.map((p) => ({ jid: p.jid, configured: p })),
      ...discovered.filter((j) => !configuredJids.has(j)).map((jid) => ({ jid })),
    ];
    const checked = await Promise.all(candidates.map((c) => this.query(c.jid, c.configured)));
    this.usable = checked.filter((p): p is StreamhostInfo => p !== undefined);
    if (this.o.discover !== undefined)
      this.o.log.info(
        { domain: this.o.discover, discovered, offered: this.usable.map((p) => `${p.jid} ${p.host}:${p.port}`) },
        discovered.length ? 'proxies discovered' : 'no proxy found on the server',
      );
  }

  /** XEP-0030 on the server domain: the JIDs of its items whose identity is proxy/bytestreams. */
  private async discover(domain: string): Promise<string[]> {
    let items: string[];
    try {
      const r = await this.o.request(
        xml('iq', { type: 'get', from: this.o.from, to: domain }, xml('query', { xmlns: NS.DISCO_ITEMS })),
        this.o.timeoutMs,
      );
      items = (r.getChild('query', NS.DISCO_ITEMS)?.getChildren('item') ?? [])
        .map((i): unknown => i.attrs.jid)
        .filter((j): j is string => typeof j === 'string' && j !== '' && !j.includes('/'));
    } catch (err) {
      this.o.log.warn({ domain, err: requestFailure(err) }, 'proxy discovery: the server did not list its services');
      return [];
    }
    const found = await Promise.all(
      [...new Set(items)].map(async (jid) => {
        try {
          const r = await this.o.request(
            xml('iq', { type: 'get', from: this.o.from, to: jid }, xml('query', { xmlns: NS.DISCO_INFO })),
            this.o.timeoutMs,
          );
          const ids = r.getChild('query', NS.DISCO_INFO)?.getChildren('identity') ?? [];
          return ids.some((i) => i.attrs.category === 'proxy' && i.attrs.type === 'bytestreams') ? jid : undefined;
        } catch (err) {
          this.o.log.debug({ jid, err: requestFailure(err) }, 'proxy discovery: item did not answer disco#info');
          return undefined;
        }
      }),
    );
    return found.filter((j): j is string => j !== undefined);
  }

  /**
   * §4.2: asks a proxy for its network address. A configured proxy is offered
   * as configured; a discovered one at the address it announces.
   */
  private async query(jid: string, configured: StreamhostInfo | undefined): Promise<StreamhostInfo | undefined> {
    try {
      const r = await this.o.request(
        xml('iq', { type: 'get', from: this.o.from, to: jid }, xml('query', { xmlns: NS.BYTESTREAMS })),
        this.o.timeoutMs,
      );
      const sh = r.getChild('query', NS.BYTESTREAMS)?.getChild('streamhost');
      const announced = announcedStreamhost(sh, jid);
      this.o.log.info(
        {
          proxy: jid,
          offered: configured
            ? `${configured.host}:${configured.port}`
            : announced && `${announced.host}:${announced.port}`,
          announces: sh ? `${sh.attrs.host}:${sh.attrs.port}` : undefined,
          discovered: !configured,
        },
        'proxy checked',
      );
      if (configured) return configured;
      if (!announced) this.o.log.warn({ proxy: jid }, 'discovered proxy announced no usable streamhost; not offered');
      return announced;
    } catch (err) {
      const condition = requestCondition(err);
      if (condition && REFUSALS.has(condition)) {
        this.o.log.error(
          { proxy: jid, condition },
          `proxy ${jid} refuses the component ${this.o.from} (${condition}), so it is not offered: allow the component on the server (ejabberd: mod_proxy65's access rule; Prosody: proxy65_acl or proxy65_open_access)`,
        );
        return undefined;
      }
      if (!configured) {
        // A discovered proxy has no address but the one it announces.
        this.o.log.warn(
          { proxy: jid, err: requestFailure(err) },
          'discovered proxy did not answer its streamhost query; not offered',
        );
        return undefined;
      }
      // Silence is not a refusal: the proxy may be busy; it stays, and a failed activation still falls back.
      this.o.log.warn(
        { proxy: jid, err: requestFailure(err) },
        'proxy did not answer its streamhost query; offered anyway',
      );
      return configured;
    }
  }
}

/** The <streamhost/> of a §4.2 answer as an offerable streamhost (a non-zero port and a host), or undefined. */
function announcedStreamhost(sh: Element | undefined, jid: string): StreamhostInfo | undefined {
  const host: unknown = sh?.attrs.host;
  const port = Number(sh?.attrs.port);
  if (typeof host !== 'string' || host === '' || !Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
  return { jid, host, port }; // activation goes to the JID discovery found
}
