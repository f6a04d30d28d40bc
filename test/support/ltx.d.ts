// ltx (the XML library under @xmpp/xml) ships no type declarations; the unit
// tests use its parser to read XEP examples into the same Element type.
declare module 'ltx' {
  import type { Element } from '@xmpp/component';
  export function parse(xml: string): Element;
}
