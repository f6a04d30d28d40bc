// XEP-0092 software version, XEP-0199 ping and XEP-0054 vCard-temp.
import { xml, type Element } from '@xmpp/component';
import { NS } from './namespaces.js';

export function versionResult(name: string, version: string): Element {
  return xml(
    'query',
    { xmlns: NS.VERSION },
    xml('name', {}, name),
    xml('version', {}, version),
    xml('os', {}, `Node.js ${process.version}`),
  );
}

/** XEP-0054 vCard-temp: a formatted name (what rosters show) and a short description. */
export function vcardResult(fn: string, desc: string): Element {
  return xml('vCard', { xmlns: NS.VCARD }, xml('FN', {}, fn), xml('NICKNAME', {}, fn), xml('DESC', {}, desc));
}
