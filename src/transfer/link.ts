// Links for clients without SI file transfer (Gajim, Monal, Conversations,
// Converse.js, …): the report is published on our own HTTP link server or
// uploaded to the server's XEP-0363 service, and the URL goes to the user as
// body + XEP-0066 jabber:x:oob. ChoosingDelivery picks SI or link by the
// client's disco#info features.
import { xml, type Element } from '@xmpp/component';
import type { Capabilities } from '../xmpp/caps.js';
import { NS } from '../xmpp/namespaces.js';
import { DeliveryError, type Delivery, type DeliveryOutcome, type DeliveryRequest, type LinkReason } from './delivery.js';
import type { LinkServer } from './link-server.js';
import { requestSlot, uploadFile, type IqRequest } from './upload.js';

export const NS_OOB = 'jabber:x:oob';

/** XEP-0066 §3: the URL is also the whole body, which is what clients need to show it as a file. */
export function oobMessage(o: { from: string; to: string; url: string; desc: string; type?: string }): Element {
  return xml('message', { from: o.from, to: o.to, type: o.type ?? 'chat' }, xml('body', {}, o.url), xml('x', { xmlns: NS_OOB }, xml('url', {}, o.url), xml('desc', {}, o.desc)));
}

export interface LinkPublisher {
  readonly kind: 'link' | 'upload';
  publish(req: DeliveryRequest): Promise<{ url: string; expiresAt: Date | undefined; logId: string }>;
}

/** Our own HTTP endpoint: unguessable URL, expiry and download limits. */
export class ServerLinks implements LinkPublisher {
  readonly kind = 'link';
  constructor(private readonly server: LinkServer) {}
  async publish(req: DeliveryRequest): Promise<{ url: string; expiresAt: Date | undefined; logId: string }> {
    const { report } = req;
    const l = await this.server.publish({ path: report.path, name: report.name, mime: report.mime, size: report.size, sha256: report.sha256 });
    return { url: l.url, expiresAt: l.expiresAt, logId: l.link };
  }
}

/** The XMPP server's own upload service (XEP-0363), e.g. ejabberd's mod_http_upload. */
export class UploadLinks implements LinkPublisher {
  readonly kind = 'upload';
  constructor(
    private readonly request: IqRequest,
    private readonly service: string,
    private readonly timeoutMs: number,
  ) {}
  async publish(req: DeliveryRequest): Promise<{ url: string; expiresAt: Date | undefined; logId: string }> {
    const { report } = req;
    const slot = await requestSlot(this.request, { from: req.from, service: this.service, name: report.name, size: report.size, mime: report.mime, timeoutMs: this.timeoutMs });
    await uploadFile(slot.put, slot.headers, report.path, report.size, report.mime, this.timeoutMs);
    // The GET URL is a capability too: log only where it lives.
    return { url: slot.get, expiresAt: undefined, logId: new URL(slot.get).host };
  }
}

const SI_FEATURES = [NS.SI, NS.SI_FILE];

export class ChoosingDelivery implements Delivery {
  constructor(
    private readonly si: Delivery,
    private readonly links: LinkPublisher | undefined,
    private readonly caps: Capabilities,
  ) {}

  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const features = await this.caps.features(req.from, req.to);
    const speaksSi = features === 'unknown' || SI_FEATURES.every((f) => features.has(f));
    req.log.info({ features: features === 'unknown' ? 'unknown' : [...features].filter((f) => /si|bytestreams|ibb|jingle|oob/.test(f)) }, 'client capabilities');
    if (!speaksSi && this.links) return this.link(req, 'no-file-transfer');
    try {
      return await this.si.deliver(req);
    } catch (err) {
      // Unsupported, failed on every bytestream, or broke off: a link still gets the report there.
      if (this.links && err instanceof DeliveryError && (err.reason === 'unsupported' || err.reason === 'failed' || err.reason === 'lost')) {
        return this.link(req, err.reason === 'unsupported' ? 'no-file-transfer' : 'transfer-failed');
      }
      throw err;
    }
  }

  private async link(req: DeliveryRequest, why: LinkReason): Promise<DeliveryOutcome> {
    const links = this.links!;
    await req.progress?.({ kind: 'link-instead', why });
    try {
      const { url, expiresAt, logId } = await links.publish(req);
      req.log.info({ method: links.kind, link: logId, bytes: req.report.size, why }, 'link published');
      return { kind: 'linked', url, expiresAt, why };
    } catch (err) {
      req.log.warn({ method: links.kind, err: (err as Error).message }, 'link publication failed');
      throw new DeliveryError('failed', 'the download link could not be created');
    }
  }
}
