// @xmpp/client ships no type declarations; this declares what the tests use.
declare module '@xmpp/client' {
  import { EventEmitter } from 'node:events';
  import type { Element, Attrs, Child, IqCaller, Middleware } from '@xmpp/component';
  export function xml(name: string, attrs?: Attrs | null, ...children: Child[]): Element;
  export interface Client extends EventEmitter {
    status: string;
    jid: { toString(): string } | null;
    iqCaller: IqCaller;
    iqCallee: {
      get(ns: string, name: string, handler: (ctx: { stanza: Element; element: Element }) => unknown): void;
      set(ns: string, name: string, handler: (ctx: { stanza: Element; element: Element }) => unknown): void;
    };
    middleware: { use(fn: Middleware): void };
    reconnect: { stop(): void };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: Element): Promise<void>;
  }
  export function client(options: {
    service: string;
    domain: string;
    username: string;
    password: string;
    resource?: string;
  }): Client;
}
