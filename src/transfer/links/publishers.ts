// Where a download link comes from: our own HTTP link server, or the XMPP
// server's XEP-0363 upload service.
import type { DeliveryRequest } from '../delivery.js';
import type { LinkServer } from './server.js';
import { requestSlot, uploadFile, type IqRequest } from './upload.js';

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
    const { path, sha256 } = await report.complete();
    const l = await this.server.publish({ path, name: report.name, mime: report.mime, size: report.size, sha256 });
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
    const slot = await requestSlot(this.request, {
      from: req.from,
      service: this.service,
      name: report.name,
      size: report.size,
      mime: report.mime,
      timeoutMs: this.timeoutMs,
    });
    const { path } = await report.complete();
    await uploadFile(slot.put, slot.headers, path, report.size, report.mime, this.timeoutMs);
    // The GET URL is a capability too: log only where it lives.
    return { url: slot.get, expiresAt: undefined, logId: new URL(slot.get).host };
  }
}
