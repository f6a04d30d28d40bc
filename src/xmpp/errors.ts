// Stanza replies (RFC 6120 §8.3): results and errors built from the stanza
// they answer, swapping to/from and keeping the id.
import { xml, type Element } from '@xmpp/component';
import { NS } from './namespaces.js';

export type ErrorType = 'cancel' | 'continue' | 'modify' | 'auth' | 'wait';

export function errorElement(type: ErrorType, condition: string, text?: string): Element {
  return xml(
    'error',
    { type },
    xml(condition, { xmlns: NS.STANZAS }),
    text ? xml('text', { xmlns: NS.STANZAS, 'xml:lang': 'en' }, text) : undefined,
  );
}

/** The defined condition of an <error/> element (e.g. "item-not-found"), or undefined. */
export function conditionOf(error: Element | undefined): string | undefined {
  return error?.getChildElements().find((c) => c.attrs.xmlns === NS.STANZAS && c.name !== 'text')?.name;
}

/**
 * The condition of a failed IQ request (xmpp.js rejects with a StanzaError
 * carrying `condition` and `text`), or undefined for a timeout or a local error.
 */
export function requestCondition(err: unknown): string | undefined {
  const c = (err as { condition?: unknown } | null)?.condition;
  return typeof c === 'string' ? c : undefined;
}

/** Why a request failed, in a few words: its condition, else its message. */
export function requestFailure(err: unknown): string {
  return requestCondition(err) ?? (err instanceof Error ? err.message : String(err));
}

/**
 * A stanza could not go out: our link to the XMPP server is down (Connection.send and request). What
 * was being offered is interrupted, not refused by the receiver; it may be offered again once the link is back.
 */
export class LinkDownError extends Error {
  override name = 'LinkDownError';
  constructor() {
    super('not connected to the XMPP server');
  }
}
