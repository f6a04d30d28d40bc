// Routes incoming IQ get/set by payload (namespace + element name). Exactly
// one answer per IQ: a handler's result, or an error for what nobody handles.
import type { Element } from '@xmpp/component';
import type { Jid, Target } from './addresses.js';
import { errorElement } from './errors.js';

export type IqReply = Element | true | undefined;
export type IqHandler = (iq: Element, payload: Element, from: Jid, target: Target) => IqReply | Promise<IqReply>;

export interface IqRoute {
  type: 'get' | 'set';
  ns: string;
  name: string;
  handler: IqHandler;
}

/** What a protocol module adds to the component: its disco#info features and the IQs it answers. */
export interface ComponentModule {
  readonly features: readonly string[];
  readonly routes: readonly IqRoute[];
}

export class IqRouter {
  private readonly table = new Map<string, IqHandler>();
  private readonly namespaces = new Set<string>();

  /** Adds one route; a payload has one owner, so a second registration is a wiring error. */
  on(type: 'get' | 'set', ns: string, name: string, handler: IqHandler): this {
    const key = `${type} ${ns} ${name}`;
    if (this.table.has(key)) throw new Error(`IQ route registered twice: ${key}`);
    this.table.set(key, handler);
    this.namespaces.add(ns);
    return this;
  }

  add(routes: readonly IqRoute[]): this {
    for (const r of routes) this.on(r.type, r.ns, r.name, r.handler);
    return this;
  }

  /** Every route as "type namespace name". */
  get routes(): string[] {
    return [...this.table.keys()];
  }

  async handle(iq: Element, from: Jid, target: Target): Promise<IqReply> {
    const type = iq.attrs.type;
    const payload = iq.getChildElements()[0];
    if (!payload || (type !== 'get' && type !== 'set')) return errorElement('modify', 'bad-request');
    const ns = payload.attrs.xmlns ?? '';
    const handler = this.table.get(`${type} ${ns} ${payload.name}`);
    if (handler) return handler(iq, payload, from, target);
    // A namespace we speak, asked for something we do not do (RFC 6120 §8.3.3.7),
    // else a service we do not offer (§8.3.3.19).
    if (this.namespaces.has(ns)) return errorElement('cancel', 'feature-not-implemented');
    return errorElement('cancel', 'service-unavailable');
  }
}
