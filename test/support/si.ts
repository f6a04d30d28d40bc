// A receiver's answer to an SI offer (XEP-0095 §3.2): the stream method it chose.
import { xml, type Element } from '@xmpp/component';
import { NS } from '../../src/xmpp/namespaces.js';

export function siAnswer(method: string): Element {
  return xml(
    'si',
    { xmlns: NS.SI },
    xml(
      'feature',
      { xmlns: NS.FEATURE_NEG },
      xml(
        'x',
        { xmlns: NS.DATA_FORMS, type: 'submit' },
        xml('field', { var: 'stream-method' }, xml('value', {}, method)),
      ),
    ),
  );
}
