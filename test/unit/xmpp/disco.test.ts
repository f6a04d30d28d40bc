import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import type { Target } from '../../../src/xmpp/addresses.js';
import { Disco, type DiscoIdentity } from '../../../src/xmpp/disco.js';
import { conditionOf } from '../../../src/xmpp/errors.js';
import { NS } from '../../../src/xmpp/namespaces.js';

const identity = (t: Target): DiscoIdentity =>
  t.kind === 'project'
    ? { category: 'client', type: 'bot', name: `Project ${t.project} status report` }
    : { category: 'component', type: 'generic', name: 'Project status reports' };

const features = (q: Element) => q.getChildren('feature').map((f) => f.attrs.var);

describe('xmpp/disco', () => {
  const disco = new Disco([NS.VERSION, NS.PING, NS.SI, NS.SI_FILE, NS.IBB, NS.BYTESTREAMS, NS.PING], identity);

  describe('info', () => {
    it('answers the domain with the component identity and sorted, unique features', () => {
      const q = disco.info(xml('query', { xmlns: NS.DISCO_INFO }), { kind: 'domain' });
      expect(q.name).to.equal('query');
      expect(q.attrs.xmlns).to.equal(NS.DISCO_INFO);
      const ids = q.getChildren('identity');
      expect(ids).to.have.length(1);
      expect(ids[0].attrs).to.deep.equal({ category: 'component', type: 'generic', name: 'Project status reports' });
      const vars = features(q);
      expect(vars).to.deep.equal([...vars].sort());
      expect(new Set(vars).size).to.equal(vars.length);
      expect(vars).to.have.members([
        NS.DISCO_INFO,
        NS.DISCO_ITEMS,
        NS.VERSION,
        NS.PING,
        NS.SI,
        NS.SI_FILE,
        NS.IBB,
        NS.BYTESTREAMS,
      ]);
    });

    it('answers a project JID with its own identity', () => {
      const q = disco.info(xml('query', { xmlns: NS.DISCO_INFO }), { kind: 'project', project: '1234' });
      expect(q.getChild('identity')!.attrs).to.deep.equal({
        category: 'client',
        type: 'bot',
        name: 'Project 1234 status report',
      });
      expect(features(q)).to.include(NS.SI_FILE);
    });

    it('always lists disco#info and disco#items, even with no other feature', () => {
      const q = new Disco([], identity).info(xml('query', { xmlns: NS.DISCO_INFO }), { kind: 'domain' });
      expect(features(q)).to.deep.equal([NS.DISCO_INFO, NS.DISCO_ITEMS]);
    });

    it('a node is item-not-found', () => {
      const e = disco.info(xml('query', { xmlns: NS.DISCO_INFO, node: 'http://jabber.org/protocol/commands' }), {
        kind: 'domain',
      });
      expect(e.name).to.equal('error');
      expect(e.attrs.type).to.equal('cancel');
      expect(conditionOf(e)).to.equal('item-not-found');
    });
  });

  describe('items', () => {
    it('lists no items (projects are not enumerated)', () => {
      const q = disco.items(xml('query', { xmlns: NS.DISCO_ITEMS }));
      expect(q.name).to.equal('query');
      expect(q.attrs.xmlns).to.equal(NS.DISCO_ITEMS);
      expect(q.getChildElements()).to.deep.equal([]);
    });

    it('a node is item-not-found', () => {
      const e = disco.items(xml('query', { xmlns: NS.DISCO_ITEMS, node: 'x' }));
      expect(e.name).to.equal('error');
      expect(conditionOf(e)).to.equal('item-not-found');
    });
  });
});
