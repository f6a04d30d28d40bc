// XEP-0092 software version and XEP-0199 ping.
import { xml, type Element } from '@xmpp/component';
import { NS } from './namespaces.js';

export function versionResult(name: string, version: string): Element {
  return xml('query', { xmlns: NS.VERSION }, xml('name', {}, name), xml('version', {}, version), xml('os', {}, `Node.js ${process.version}`));
}
