// What a test needs of an XMPP server, whichever it is: the private ejabberd
// (./ejabberd.ts) and the private Prosody (./prosody.ts) both have this shape,
// so one case can run against both (`for (const server of servers)`).
export interface TestServer {
  readonly kind: 'ejabberd' | 'prosody';
  /** the XMPP vhost users live on, e.g. example.com */
  domain: string;
  /** the external component's domain, e.g. reports.example.com */
  componentDomain: string;
  secret: string;
  c2sPort: number;
  componentPort: number;
  proxy65Port: number;
  /** the JID of the server's SOCKS5 proxy (ejabberd mod_proxy65, Prosody proxy65) */
  proxyJid: string;
  runDir: string;
  register(user: string, password: string): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}
