// XEP-0066 out-of-band data: the chat message that carries a download link.
import { xml, type Element } from '@xmpp/component';
import { NS } from '../../xmpp/namespaces.js';

/** XEP-0066 §3: the URL is also the whole body, which is what clients need to show it as a file. */
export function oobMessage(o: { from: string; to: string; url: string; desc: string; type?: string }): Element {
  return xml(
    'message',
    { from: o.from, to: o.to, type: o.type ?? 'chat' },
    xml('body', {}, o.url),
    xml('x', { xmlns: NS.OOB }, xml('url', {}, o.url), xml('desc', {}, o.desc)),
  );
}
