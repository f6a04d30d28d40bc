// Picks SI, Jingle or a link for each request by the client's disco#info
// features, in the configured order (transfer.order), and hands over to the
// next method when one turns out not to work.
import { soon } from '../log.js';
import type { Capabilities, ClientInfo } from '../xmpp/caps.js';
import { NS } from '../xmpp/namespaces.js';
import {
  DeliveryError,
  sourceFailure,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRequest,
  type LinkReason,
} from './delivery.js';
import type { LinkPublisher } from './links/publishers.js';

const SI_FEATURES = [NS.SI, NS.SI_FILE];
const JINGLE_FT_FEATURES = [NS.JINGLE, NS.JINGLE_FT];

/** How a report may reach a client (config transfer.order). */
export type TransferMethod = 'si' | 'jingle' | 'link';

/** Why a failed delivery leads to a link. */
function linkWhy(err: DeliveryError): LinkReason {
  return err.linkWhy ?? (err.reason === 'unsupported' ? 'no-file-transfer' : 'transfer-failed');
}

/**
 * What the answer to a blind offer (one made after the disco#info to the same
 * full JID failed) says. Refused with service-unavailable: the user's session
 * is gone (Prosody answers both for a vanished resource with a bare
 * service-unavailable, no text), not a client without file transfer. Not
 * answered in time either (Converse.js answers neither): most likely a client
 * that cannot take SI, which the link reaches. Anything else is returned as it was.
 */
function blindOfferAnswer(err: unknown, req: DeliveryRequest): unknown {
  if (!(err instanceof DeliveryError)) return err;
  if (err.reason === 'offer-timeout')
    return new DeliveryError({ reason: 'offer-timeout', message: err.message, linkWhy: 'no-answer' });
  if (err.reason !== 'unsupported' || err.condition !== 'service-unavailable') return err;
  req.log.info({ condition: err.condition }, 'receiver went offline (disco#info and offer both unanswered)');
  return new DeliveryError({
    reason: 'failed',
    message: 'your chat client went offline',
    linkWhy: 'went-offline',
    condition: err.condition,
  });
}

/** A client entry of transfer.jingle.brokenClients: "Gajim 1" is identity name Gajim at version 1 or 1.x; "Gajim" any version. */
function parseClient(entry: string): { name: string; version: string | undefined } {
  const m = /^(.*?)(?:\s+(\d[\w.-]*))?$/.exec(entry.trim())!;
  return { name: m[1].toLowerCase(), version: m[2] };
}

export interface ChooserOptions {
  jingle?: Delivery;
  /** transfer.order: only these, in this order, and each only where the client advertises it */
  order?: readonly TransferMethod[];
  /** clients (identity name, optional version prefix) whose Jingle file transfer never answers: no Jingle for them */
  brokenJingle?: readonly string[];
  /** the client's software version (XEP-0092), asked only when a brokenJingle name matches */
  version?: (from: string, to: string) => Promise<string | undefined>;
}

/**
 * Picks how a report reaches the requester by what its client advertises
 * (disco#info): the first method of `order` the client can take (SI where
 * advertised, or when the client does not say; Jingle where advertised and
 * not known to be broken; the link when one can be made). A method the
 * client turns out not to support hands over to the next one; a transfer
 * that failed on every bytestream, or that no one can confirm, hands over
 * to the link. A method `order` leaves out is never tried.
 */
export class ChoosingDelivery implements Delivery {
  private readonly order: readonly TransferMethod[];

  constructor(
    private readonly si: Delivery,
    private readonly links: LinkPublisher | undefined,
    private readonly caps: Pick<Capabilities, 'info'> & Partial<Pick<Capabilities, 'forget'>>,
    private readonly opts: ChooserOptions = {},
  ) {
    this.order = opts.order ?? ['si', 'jingle', 'link'];
  }

  probe(from: string, to: string): Promise<ClientInfo | 'unknown'> {
    return this.caps.info(from, to).catch(() => 'unknown' as const);
  }

  async deliver(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const info = await (req.probe ?? this.caps.info(req.from, req.to));
    const features = info === 'unknown' ? 'unknown' : info.features;
    const has = (f: string) => features !== 'unknown' && features.has(f);
    const can = (m: TransferMethod): boolean =>
      m === 'si'
        ? features === 'unknown' || SI_FEATURES.every(has)
        : m === 'jingle'
          ? this.opts.jingle !== undefined && JINGLE_FT_FEATURES.every(has)
          : this.links !== undefined;
    let plan = this.order.filter(can);
    if (plan.includes('jingle') && info !== 'unknown' && (await this.jingleBroken(info, req))) {
      plan = plan.filter((m) => m !== 'jingle');
    }
    soon(() =>
      req.log.info(
        {
          features:
            features === 'unknown' ? 'unknown' : [...features].filter((f) => /si|bytestreams|ibb|jingle|oob/.test(f)),
          client:
            info === 'unknown'
              ? undefined
              : info.identities
                  .map((i) => i.name)
                  .filter(Boolean)
                  .join(', ') || undefined,
          plan,
        },
        'client capabilities',
      ),
    );
    const withClient: DeliveryRequest = info === 'unknown' ? req : { ...req, client: info };
    let failure: DeliveryError | undefined;
    for (const m of plan) {
      if (m === 'link') return this.link(req, failure ? linkWhy(failure) : 'no-file-transfer');
      try {
        return await (m === 'si' ? this.si : this.opts.jingle!).deliver(withClient);
      } catch (caught) {
        // What this client was taken to support did not work out: the next request asks it again.
        this.caps.forget?.(req.to);
        const err = info === 'unknown' ? blindOfferAnswer(caught, req) : caught;
        // Unsupported, failed on every bytestream, broke off, or unconfirmable: a link may still get the report there.
        if (
          !(err instanceof DeliveryError) ||
          !(err.linkWhy || err.reason === 'unsupported' || err.reason === 'failed' || err.reason === 'lost')
        )
          throw err;
        failure = err;
        if (err.reason === 'unsupported' && !err.linkWhy) continue;
        // A second offer by another protocol would meet the same network: only the link is left.
        if (plan.includes('link')) return this.link(req, linkWhy(err));
        throw err;
      }
    }
    throw (
      failure ??
      new DeliveryError({
        reason: 'no-method',
        message: 'the client advertises none of the methods transfer.order allows',
      })
    );
  }

  /** Whether the client is one whose Jingle file transfer is known never to answer (by name, then version). */
  private async jingleBroken(info: ClientInfo, req: DeliveryRequest): Promise<boolean> {
    const names = new Set(info.identities.map((i) => i.name.trim().toLowerCase()));
    const entries = (this.opts.brokenJingle ?? []).map(parseClient).filter((e) => names.has(e.name));
    if (entries.length === 0) return false;
    const anyVersion = entries.some((e) => e.version === undefined);
    const version = anyVersion ? undefined : await this.opts.version?.(req.from, req.to).catch(() => undefined);
    // A client that will not tell its version (Gajim 1.7 answers XEP-0092 only to contacts it shares
    // presence with) is taken for the broken one: a link reaches it, a Jingle offer would hang.
    const hit =
      anyVersion ||
      version === undefined ||
      entries.some((e) => version === e.version || version.startsWith(`${e.version}.`));
    if (hit) req.log.info({ client: [...names].join(', '), version }, 'known-broken Jingle client: no Jingle offer');
    return hit;
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
      throw (
        sourceFailure(err, 0) ??
        new DeliveryError({ reason: 'failed', message: 'the download link could not be created' })
      );
    }
  }
}
