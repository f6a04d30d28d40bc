// Presence of project JIDs (RFC 6121 §3, §4): accept subscriptions, subscribe
// back, answer probes, show the project online with a status that says what
// to do. The component keeps no roster: every answer follows from the stanza.
import { xml, type Element } from '@xmpp/component';
import type { Logger } from 'pino';
import type { Addresses, Jid, Target } from './addresses.js';

export interface PresenceDeps {
  addresses: Addresses;
  send: (el: Element) => Promise<void>;
  log: Logger;
  /** null when the project id is acceptable, else why not. */
  checkProject: (project: string) => string | null;
  statusText: (target: Target) => string;
}

export async function handlePresence(el: Element, from: Jid, target: Target, deps: PresenceDeps): Promise<void> {
  const { addresses, send } = deps;
  const type = el.attrs.type ?? 'available';
  const bare = target.kind === 'project' ? addresses.projectBare(target.project) : addresses.domain;
  const full = target.kind === 'project' ? addresses.projectFull(target.project) : addresses.domain;
  const available = () =>
    xml('presence', { from: full, to: from.bare }, xml('show', {}, 'chat'), xml('status', {}, deps.statusText(target)));

  if (target.kind === 'project' && type !== 'unavailable' && type !== 'error') {
    const problem = deps.checkProject(target.project);
    if (problem) {
      // Not a project: refuse the subscription rather than show a contact that can never answer.
      if (type === 'subscribe') await send(xml('presence', { from: bare, to: from.bare, type: 'unsubscribed' }));
      return;
    }
  }

  switch (type) {
    case 'subscribe':
      deps.log.info(
        { jid: from.bare, project: target.kind === 'project' ? target.project : undefined },
        'subscription accepted',
      );
      await send(xml('presence', { from: bare, to: from.bare, type: 'subscribed' }));
      await send(xml('presence', { from: bare, to: from.bare, type: 'subscribe' }));
      await send(available());
      return;
    case 'probe':
      await send(available());
      return;
    case 'unsubscribe':
      await send(xml('presence', { from: bare, to: from.bare, type: 'unsubscribed' }));
      await send(xml('presence', { from: full, to: from.bare, type: 'unavailable' }));
      return;
    case 'unsubscribed':
      // They no longer want our presence: say goodbye once, nothing else to keep.
      await send(xml('presence', { from: full, to: from.bare, type: 'unavailable' }));
      return;
    default:
      // available, subscribed, unavailable, error: nothing to answer. Not
      // answering available presence avoids presence loops with other bots;
      // the server's probes keep the contact online.
      return;
  }
}
