// XEP-0030 service discovery for the component domain and project JIDs.
import { xml, type Element } from '@xmpp/component';
import { NS } from './namespaces.js';
import type { Target } from './addresses.js';
import { errorElement } from './errors.js';

export interface DiscoIdentity {
  category: string;
  type: string;
  name: string;
}

export class Disco {
  constructor(
    private readonly features: readonly string[],
    private readonly identity: (target: Target) => DiscoIdentity,
  ) {}

  info(query: Element, target: Target): Element {
    if (query.attrs.node) return errorElement('cancel', 'item-not-found');
    const id = this.identity(target);
    return xml(
      'query',
      { xmlns: NS.DISCO_INFO },
      xml('identity', { category: id.category, type: id.type, name: id.name }),
      ...[...new Set([NS.DISCO_INFO, NS.DISCO_ITEMS, ...this.features])].sort().map((v) => xml('feature', { var: v })),
    );
  }

  /** Projects are not listed: there may be thousands, and ids are not secrets to enumerate. */
  items(query: Element): Element {
    if (query.attrs.node) return errorElement('cancel', 'item-not-found');
    return xml('query', { xmlns: NS.DISCO_ITEMS });
  }
}
