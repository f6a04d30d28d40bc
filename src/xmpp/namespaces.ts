// Every namespace the component speaks, once.
export const NS = {
  DISCO_INFO: 'http://jabber.org/protocol/disco#info',
  DISCO_ITEMS: 'http://jabber.org/protocol/disco#items',
  VERSION: 'jabber:iq:version',
  PING: 'urn:xmpp:ping',
  STANZAS: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  SI: 'http://jabber.org/protocol/si',
  SI_FILE: 'http://jabber.org/protocol/si/profile/file-transfer',
  FEATURE_NEG: 'http://jabber.org/protocol/feature-neg',
  DATA_FORMS: 'jabber:x:data',
  BYTESTREAMS: 'http://jabber.org/protocol/bytestreams',
  IBB: 'http://jabber.org/protocol/ibb',
  CHATSTATES: 'http://jabber.org/protocol/chatstates',
  COMMANDS: 'http://jabber.org/protocol/commands',
  VCARD: 'vcard-temp',
} as const;
