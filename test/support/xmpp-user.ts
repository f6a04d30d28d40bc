// A chat user for integration tests, on @xmpp/client (an independent client
// implementation talking c2s to the real ejabberd): records every stanza it
// receives so tests can wait for and assert on them.
import { client, xml, type Client } from '@xmpp/client';
import type { Element } from '@xmpp/component';

export class XmppUser {
  readonly received: Element[] = [];
  private waiters = new Set<() => void>();
  private constructor(
    readonly xmpp: Client,
    readonly jid: string,
  ) {}

  static async login(o: {
    port: number;
    domain: string;
    username: string;
    password: string;
    resource?: string;
  }): Promise<XmppUser> {
    const xmpp = client({
      service: `xmpp://127.0.0.1:${o.port}`,
      domain: o.domain,
      username: o.username,
      password: o.password,
      resource: o.resource ?? 'test',
    });
    xmpp.on('error', () => {});
    const user = new XmppUser(xmpp, '');
    xmpp.on('stanza', (el: Element) => {
      user.received.push(el);
      for (const w of [...user.waiters]) w();
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      xmpp.start(),
      new Promise((_r, rej) => (timer = setTimeout(() => rej(new Error(`login of ${o.username} timed out`)), 15000))),
    ]);
    clearTimeout(timer);
    xmpp.reconnect.stop();
    (user as { jid: string }).jid = String(xmpp.jid);
    // Like a real client: fetch the roster and send initial presence, which
    // makes this an "interested" and "available" resource (RFC 6121 §2.1.6,
    // §4.2): only those get subscription and presence stanzas delivered.
    // (to the account's own bare JID, RFC 6121 §2.1.3: Prosody refuses a roster get addressed to the domain)
    await user.iq(`${o.username}@${o.domain}`, 'get', xml('query', { xmlns: 'jabber:iq:roster' }));
    await xmpp.send(xml('presence'));
    return user;
  }

  /** Resolves with the first received stanza (past or future) matching pred. */
  waitFor(pred: (el: Element) => boolean, timeoutMs = 10000, what = 'stanza'): Promise<Element> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.received.find(pred);
        if (hit) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(
          new Error(`timed out waiting for ${what}; received:\n${this.received.map((e) => e.toString()).join('\n')}`),
        );
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }

  messagesFrom(jidPrefix: string): string[] {
    return this.received
      .filter((e) => e.name === 'message' && (e.attrs.from ?? '').startsWith(jidPrefix))
      .map((e) => e.getChildText('body') ?? '');
  }

  waitForMessage(fromPrefix: string, body: RegExp, timeoutMs = 10000): Promise<Element> {
    return this.waitFor(
      (e) =>
        e.name === 'message' && (e.attrs.from ?? '').startsWith(fromPrefix) && body.test(e.getChildText('body') ?? ''),
      timeoutMs,
      `message from ${fromPrefix} matching ${body}`,
    );
  }

  async say(to: string, body: string, type = 'chat'): Promise<void> {
    await this.xmpp.send(xml('message', { to, type }, xml('body', {}, body)));
  }

  async send(el: Element): Promise<void> {
    await this.xmpp.send(el);
  }

  async presence(to: string, type: string): Promise<void> {
    await this.xmpp.send(xml('presence', { to, type }));
  }

  /** Sends an IQ and returns the reply, error replies included (not thrown). */
  async iq(to: string, type: 'get' | 'set', payload: Element, timeoutMs = 10000): Promise<Element> {
    const id = 't' + Math.random().toString(36).slice(2);
    const p = this.waitFor(
      (e) => e.name === 'iq' && e.attrs.id === id && (e.attrs.type === 'result' || e.attrs.type === 'error'),
      timeoutMs,
      `reply to ${id}`,
    );
    await this.xmpp.send(xml('iq', { to, type, id }, payload));
    return p;
  }

  clear(): void {
    this.received.length = 0;
  }

  async logout(): Promise<void> {
    try {
      await this.xmpp.stop();
    } catch {
      // already gone
    }
  }
}
