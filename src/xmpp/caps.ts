// What the requester's client can do: XEP-0030 disco#info on its full JID,
// cached by XEP-0115 entity-capabilities hash when its presence carried one,
// and for a while by full JID (one client session) when it did not.
// A client that does not answer in time is "unknown", never a blocker.
import { createHash } from 'node:crypto';
import { xml, type Element } from '@xmpp/component';
import { NS } from './namespaces.js';

export type Features = ReadonlySet<string> | 'unknown';

export interface Identity {
  category: string;
  type: string;
  name: string;
}

/** What disco#info says about a client: its features and identities (e.g. client/pc "Dino"). */
export interface ClientInfo {
  features: ReadonlySet<string>;
  identities: readonly Identity[];
}

/** Whether a client's disco#info identity bears one of these names (case and outer spaces aside). */
export function isNamedClient(client: ClientInfo | undefined, names: readonly string[]): boolean {
  if (!client || names.length === 0) return false;
  const wanted = new Set(names.map((n) => n.trim().toLowerCase()));
  return client.identities.some((i) => wanted.has(i.name.trim().toLowerCase()));
}

/** XEP-0115 §5.1 verification string, over identities, features and extended forms. */
export function capsVerificationString(info: Element): string {
  const identities = info
    .getChildren('identity')
    .map((i) => `${i.attrs.category ?? ''}/${i.attrs.type ?? ''}/${i.attrs['xml:lang'] ?? ''}/${i.attrs.name ?? ''}`)
    .sort();
  const features = info
    .getChildren('feature')
    .map((f) => f.attrs.var ?? '')
    .sort();
  let s = identities.map((i) => i + '<').join('') + features.map((f) => f + '<').join('');
  const forms = info
    .getChildren('x', NS.DATA_FORMS)
    .map((x) => {
      const fields = x.getChildren('field');
      const formType = fields.find((f) => f.attrs.var === 'FORM_TYPE')?.getChildText('value') ?? '';
      const rest = fields
        .filter((f) => f.attrs.var !== 'FORM_TYPE')
        .map((f) => ({
          v: f.attrs.var ?? '',
          values: f
            .getChildren('value')
            .map((v) => v.text())
            .sort(),
        }))
        .sort((a, b) => (a.v < b.v ? -1 : a.v > b.v ? 1 : 0));
      return { formType, rest };
    })
    .sort((a, b) => (a.formType < b.formType ? -1 : a.formType > b.formType ? 1 : 0));
  for (const f of forms) {
    s += f.formType + '<';
    for (const field of f.rest) s += field.v + '<' + field.values.map((v) => v + '<').join('');
  }
  return s;
}

export function capsHash(info: Element, algo: string): string | undefined {
  const name = algo.toLowerCase().replace('-', '');
  if (name !== 'sha1' && name !== 'sha256' && name !== 'sha512') return undefined;
  return createHash(name).update(capsVerificationString(info), 'utf8').digest('base64');
}

interface CapsAd {
  hash: string;
  ver: string;
  node: string;
}

export class Capabilities {
  private readonly adByJid = new Map<string, CapsAd>();
  private readonly infoByVer = new Map<string, ClientInfo>();
  private readonly pending = new Map<string, Promise<ClientInfo | 'unknown'>>();
  // A user who asks a project that is not in their roster sends no presence to it, so no caps
  // reach us; their second request within sessionMs is answered from here instead of by a second
  // disco#info round trip, which is otherwise on the critical path of every small report.
  private readonly infoByJid = new Map<string, { info: ClientInfo; at: number }>();

  constructor(
    private readonly request: (iq: Element, timeoutMs: number) => Promise<Element>,
    private readonly timeoutMs: number,
    private readonly maxEntries = 10000,
    /** how long a full JID's answer is reused (0: never); a resource is one client session */
    private readonly sessionMs = 0,
    private readonly now: () => number = Date.now,
  ) {}

  /** Drops what is known of a full JID (it went away, or something it was offered went wrong). */
  forget(jid: string): void {
    this.adByJid.delete(jid);
    this.infoByJid.delete(jid);
  }

  /** Remembers the caps a presence advertised (or forgets them when it goes away). */
  notePresence(presence: Element): void {
    const from = presence.attrs.from;
    if (!from) return;
    if (presence.attrs.type === 'unavailable') {
      this.forget(from);
      return;
    }
    if (presence.attrs.type) return;
    const c = presence.getChild('c', NS.CAPS);
    if (!c?.attrs.ver || !c.attrs.hash) return;
    const known = this.adByJid.get(from);
    // A client that changed what it advertises is asked again.
    if (known && (known.ver !== c.attrs.ver || known.hash !== c.attrs.hash)) this.infoByJid.delete(from);
    if (this.adByJid.size >= this.maxEntries) this.adByJid.delete(this.adByJid.keys().next().value!);
    this.adByJid.set(from, { hash: c.attrs.hash, ver: c.attrs.ver, node: c.attrs.node ?? '' });
  }

  /** The features of a full JID; 'unknown' when it does not answer in time or at all. */
  async features(from: string, to: string): Promise<Features> {
    const info = await this.info(from, to);
    return info === 'unknown' ? 'unknown' : info.features;
  }

  /** The client's software version (XEP-0092), or undefined when it does not say in time. */
  async version(from: string, to: string): Promise<string | undefined> {
    try {
      const r = await this.request(
        xml('iq', { type: 'get', from, to }, xml('query', { xmlns: NS.VERSION })),
        this.timeoutMs,
      );
      return r.getChild('query', NS.VERSION)?.getChildText('version')?.trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** Features and identities of a full JID; 'unknown' when it does not answer in time or at all. */
  async info(from: string, to: string): Promise<ClientInfo | 'unknown'> {
    const ad = this.adByJid.get(to);
    if (ad) {
      const cached = this.infoByVer.get(`${ad.hash} ${ad.ver}`);
      if (cached) return cached;
    }
    const seen = this.infoByJid.get(to);
    if (seen) {
      if (this.now() - seen.at < this.sessionMs) return seen.info;
      this.infoByJid.delete(to);
    }
    const key = `${to}`;
    let p = this.pending.get(key);
    if (!p) {
      p = this.query(from, to, ad).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async query(from: string, to: string, ad: CapsAd | undefined): Promise<ClientInfo | 'unknown'> {
    let result: Element;
    try {
      result = await this.request(
        xml('iq', { type: 'get', from, to }, xml('query', { xmlns: NS.DISCO_INFO })),
        this.timeoutMs,
      );
    } catch {
      return 'unknown';
    }
    const info = result.getChild('query', NS.DISCO_INFO);
    if (!info) return 'unknown';
    const features = new Set(info.getChildren('feature').map((f) => f.attrs.var ?? ''));
    const identities = info
      .getChildren('identity')
      .map((i) => ({ category: i.attrs.category ?? '', type: i.attrs.type ?? '', name: i.attrs.name ?? '' }));
    const out: ClientInfo = { features, identities };
    if (this.sessionMs > 0) {
      if (this.infoByJid.size >= this.maxEntries) this.infoByJid.delete(this.infoByJid.keys().next().value!);
      this.infoByJid.set(to, { info: out, at: this.now() });
    }
    // Cache by hash only when it verifies (XEP-0115 §5.4): a wrong or forged ver must not poison other users' entries.
    if (ad && capsHash(info, ad.hash) === ad.ver) {
      if (this.infoByVer.size >= this.maxEntries) this.infoByVer.delete(this.infoByVer.keys().next().value!);
      this.infoByVer.set(`${ad.hash} ${ad.ver}`, out);
    }
    return out;
  }
}
