// Third-party XEP-0065 proxies (transfer.externalProxies): before any is
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

  /** Asks every configured proxy for its streamhost; run at connect and on reload. */
  async check(): Promise<void> {
    const kept: StreamhostInfo[] = [];
    for (const p of this.configured) {
      try {
        const r = await this.o.request(
          xml('iq', { type: 'get', from: this.o.from, to: p.jid }, xml('query', { xmlns: NS.BYTESTREAMS })),
          this.o.timeoutMs,
        );
        const sh = r.getChild('query', NS.BYTESTREAMS)?.getChild('streamhost');
        this.o.log.info(
          {
            proxy: p.jid,
            offered: `${p.host}:${p.port}`,
            announces: sh ? `${sh.attrs.host}:${sh.attrs.port}` : undefined,
          },
          'proxy checked',
        );
        kept.push(p);
      } catch (err) {
        const condition = requestCondition(err);
        if (condition && REFUSALS.has(condition)) {
          this.o.log.error(
            { proxy: p.jid, condition },
            `proxy ${p.jid} refuses the component ${this.o.from} (${condition}), so it is not offered: allow the component on the server (ejabberd: mod_proxy65's access rule; Prosody: proxy65_acl or proxy65_open_access)`,
          );
          continue;
        }
        // Silence is not a refusal: the proxy may be busy; it stays, and a failed activation still falls back.
        this.o.log.warn(
          { proxy: p.jid, err: requestFailure(err) },
          'proxy did not answer its streamhost query; offered anyway',
        );
        kept.push(p);
      }
    }
    this.usable = kept;
  }
}
