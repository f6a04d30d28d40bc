// @xmpp/component 0.13 ships no type declarations and none are published;
// this declares the small part of it (and of ltx elements) that we use.
declare module '@xmpp/component' {
  import { EventEmitter } from 'node:events';

  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    parent: Element | null;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    text(): string;
    is(name: string, xmlns?: string): boolean;
    append(...children: Array<Element | string>): Element;
    toString(): string;
  }

  export type Attrs = Record<string, string | number | undefined | null>;
  export type Child = Element | string | undefined | null | false;

  export function xml(name: string, attrs?: Attrs | null, ...children: Child[]): Element;

  export interface IncomingContext {
    stanza: Element;
    name: string;
    type: string;
    id: string;
  }
  export type Middleware = (ctx: IncomingContext, next: () => Promise<unknown>) => unknown;

  export interface IqCaller {
    request(stanza: Element, timeout?: number): Promise<Element>;
  }

  export interface Reconnect extends EventEmitter {
    delay: number;
    stop(): void;
  }

  export interface Component extends EventEmitter {
    status: string;
    /** The TCP socket (@xmpp/connection-tcp wraps net.Socket); null while disconnected. */
    socket: { setNoDelay?(noDelay?: boolean): unknown; destroy?(): unknown } | null;
    /** The socket class connect() instantiates (connection-tcp: net.Socket); an own property overrides it. */
    Socket: new () => unknown;
    /** connect()'s argument to socket.connect(), from the service URI. */
    socketParameters(service: string): { host: string; port: number } | undefined;
    options: { service: string; domain: string };
    /** Opens the socket (resolves on its 'connect'); then open() sends the stream header. */
    connect(service: string): Promise<unknown>;
    open(options: { domain: string; lang?: string }): Promise<unknown>;
    jid: { toString(): string } | null;
    reconnect: Reconnect;
    iqCaller: IqCaller;
    middleware: { use(fn: Middleware): void; filter(fn: Middleware): void };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: Element): Promise<void>;
    write(data: string): Promise<void>;
    /** @xmpp/connection's socket data handler (parser.write, which ltx may make throw). */
    _onData(data: Buffer): void;
    /** @xmpp/connection's answer to malformed XML: stream error bad-format, then the connection closes. */
    _onParserError(error: Error): void;
  }

  export function component(options: { service: string; domain: string; password: string }): Component;
}
