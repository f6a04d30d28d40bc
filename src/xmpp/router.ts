// Routes incoming IQ get/set by payload (namespace + element name). Exactly
// one answer per IQ: a handler's result, or an error for what nobody handles.
import type { Element } from '@xmpp/component';
import type { Jid, Target } from './addresses.js';
import { errorElement } from './errors.js';

export type IqReply = Element | true | undefined;
export type IqHandler = (iq: Element, payload: Element, from: Jid, target: Target) => IqReply | Promise<IqReply>;

export class IqRouter {
  private readonly routes = new Map<string, IqHandler>();
  private readonly namespaces = new Set<string>();

  on(type: 'get' | 'set', ns: string, name: string, handler: IqHandler): this {
    this.routes.set(`${type} ${ns} ${name}`, handler);
    this.namespaces.add(ns);
    return this;
  }

  /** The handler registered for this payload, e.g. to chain a new one in front of it. */
  handler(type: 'get' | 'set', ns: string, name: string): IqHandler | undefined {
    return this.routes.get(`${type} ${ns} ${name}`);
  }

  async handle(iq: Element, from: Jid, target: Target): Promise<IqReply> {
    const type = iq.attrs.type;
    const payload = iq.getChildElements()[0];
    if (!payload || (type !== 'get' && type !== 'set')) return errorElement('modify', 'bad-request');
    const ns = payload.attrs.xmlns ?? '';
    const handler = this.routes.get(`${type} ${ns} ${payload.name}`);
    if (handler) return handler(iq, payload, from, target);
    // A namespace we speak, asked for something we do not do (RFC 6120 §8.3.3.7),
    // else a service we do not offer (§8.3.3.19).
    if (this.namespaces.has(ns)) return errorElement('cancel', 'feature-not-implemented');
    return errorElement('cancel', 'service-unavailable');
  }
}
