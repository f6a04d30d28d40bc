// The messages instances of this component exchange about ejabberd's
// balancing slots (domain_balancing, bare_source). Pure.
//
// A message the component sends from xr-slot-<token>@<domain> to the same JID
// is routed by ejabberd (ejabberd_router:balancing_route/4, 23.01) to the
// connection holding the slot that the sender's bare JID hashes to, or dropped
// when that slot has no connection. So a token names a slot without anyone
// knowing the hash:
//   probe   from T, "answer from R": comes back to the prober itself (T lands
//           on one of its connections), or reaches a peer, which answers with
//   pong    from R (a token the prober learned lands on itself), or nothing
//           arrives: the slot is dead;
//   release from T: "give back a slot you hold with a spare connection".
import { xml, type Element } from '@xmpp/component';
import { NS } from '../namespaces.js';

export const SLOT_PREFIX = 'xr-slot-';

export type SlotKind = 'probe' | 'pong' | 'release';

export interface SlotMessage {
  kind: SlotKind;
  /** the token the message is sent from (xr-slot-<token>@domain) */
  token: string;
  /** the sending instance */
  instance: string;
  /** probe: the token to send the pong from (lands on the prober); absent while the prober knows none */
  reply?: string;
  /** pong: the token of the probe it answers */
  probe?: string;
  /** pong: the probe arrived on a spare connection of the answering instance */
  spare?: boolean;
}

const TOKEN = /^[0-9a-f]{8,40}$/;
const INSTANCE = /^[0-9a-z-]{1,40}$/;

/** The bare JID a token sends from and to. */
export function slotJid(token: string, domain: string): string {
  return `${SLOT_PREFIX}${token}@${domain}`;
}

/** True for a JID of the slot protocol (xr-slot-…@domain), which never reaches the chat layer. */
export function isSlotAddress(jid: string | undefined, domain: string): boolean {
  if (!jid) return false;
  const at = jid.indexOf('@');
  if (at < 0) return false;
  const host = jid
    .slice(at + 1)
    .split('/')[0]
    .toLowerCase();
  return host === domain && jid.slice(0, at).toLowerCase().startsWith(SLOT_PREFIX);
}

export function buildSlotMessage(m: SlotMessage, domain: string): Element {
  const jid = slotJid(m.token, domain);
  return xml(
    'message',
    { from: jid, to: jid, type: 'normal' },
    xml('slot', {
      xmlns: NS.SLOTS,
      kind: m.kind,
      instance: m.instance,
      ...(m.reply ? { reply: m.reply } : {}),
      ...(m.probe ? { probe: m.probe } : {}),
      ...(m.spare ? { spare: 'true' } : {}),
    }),
  );
}

/**
 * Reads a slot message; undefined for anything else or anything malformed.
 * Only the component itself can send from its own domain (ejabberd's
 * check_from), so a message from elsewhere is never taken for one.
 */
export function parseSlotMessage(el: Element, domain: string): SlotMessage | undefined {
  if (el.name !== 'message') return undefined;
  const from = el.attrs.from ?? '';
  const prefix = SLOT_PREFIX;
  const m = /^([^@/]+)@([^/]+)(?:\/.*)?$/.exec(from);
  if (!m || m[2].toLowerCase() !== domain || !m[1].startsWith(prefix)) return undefined;
  if (!isSlotAddress(el.attrs.to, domain)) return undefined;
  const token = m[1].slice(prefix.length);
  const p = el.getChild('slot', NS.SLOTS);
  if (!p || !TOKEN.test(token)) return undefined;
  const kind = p.attrs.kind;
  const instance = p.attrs.instance ?? '';
  if ((kind !== 'probe' && kind !== 'pong' && kind !== 'release') || !INSTANCE.test(instance)) return undefined;
  const reply = p.attrs.reply;
  const probe = p.attrs.probe;
  if (reply !== undefined && !TOKEN.test(reply)) return undefined;
  if (probe !== undefined && !TOKEN.test(probe)) return undefined;
  if (kind === 'pong' && probe === undefined) return undefined;
  return {
    kind,
    token,
    instance,
    ...(reply !== undefined ? { reply } : {}),
    ...(probe !== undefined ? { probe } : {}),
    ...(p.attrs.spare === 'true' ? { spare: true } : {}),
  };
}
