// XEP-0095 stream initiation with the XEP-0096 file-transfer profile: the
// offer and the reading of the answer. Pure.
import { xml, type Element } from '@xmpp/component';
import { NS } from '../../xmpp/namespaces.js';
import type { Method } from '../delivery.js';

export const METHOD_NS: Record<Method, string> = { s5b: NS.BYTESTREAMS, ibb: NS.IBB };

export interface FileInfo {
  name: string;
  size: number;
  date: Date;
  desc: string;
  mime: string;
}

export function buildOffer(o: {
  id: string;
  from: string;
  to: string;
  sid: string;
  file: FileInfo;
  methods: readonly Method[];
}): Element {
  return xml(
    'iq',
    { type: 'set', id: o.id, from: o.from, to: o.to },
    xml(
      'si',
      { xmlns: NS.SI, id: o.sid, profile: NS.SI_FILE, 'mime-type': o.file.mime },
      xml(
        'file',
        // libpurple needs size (XEP-0096 §2.1 makes it required). No MD5 `hash`: it is
        // optional, libpurple ignores it, and it would mean reading the whole report first.
        { xmlns: NS.SI_FILE, name: o.file.name, size: String(o.file.size), date: o.file.date.toISOString() },
        xml('desc', {}, o.file.desc),
      ),
      xml(
        'feature',
        { xmlns: NS.FEATURE_NEG },
        xml(
          'x',
          { xmlns: NS.DATA_FORMS, type: 'form' },
          xml(
            'field',
            { var: 'stream-method', type: 'list-single' },
            ...o.methods.map((m) => xml('option', {}, xml('value', {}, METHOD_NS[m]))),
          ),
        ),
      ),
    ),
  );
}

/** The method the receiver chose (XEP-0095 §3.2), or undefined when the answer names none we offered. */
export function chosenMethod(result: Element, offered: readonly Method[]): Method | undefined {
  const field = result
    .getChild('si', NS.SI)
    ?.getChild('feature', NS.FEATURE_NEG)
    ?.getChild('x', NS.DATA_FORMS)
    ?.getChildren('field')
    .find((f) => f.attrs.var === 'stream-method');
  const value = field?.getChildText('value')?.trim();
  return offered.find((m) => METHOD_NS[m] === value);
}
