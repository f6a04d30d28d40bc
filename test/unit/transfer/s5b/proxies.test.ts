// The external proxies' check (XEP-0065 §4.2) against scripted answers.
import { expect } from 'chai';
import { Writable } from 'node:stream';
import { xml, type Element } from '@xmpp/component';
import { createLogger } from '../../../../src/log.js';
import { Proxies } from '../../../../src/transfer/s5b/proxies.js';
import { NS } from '../../../../src/xmpp/namespaces.js';

const fail = (condition: string) => Object.assign(new Error(condition), { condition });

describe('transfer/s5b proxies', () => {
  it('asks each proxy for its streamhost, and stops offering one that refuses the component, saying what to change', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger(
      'info',
      new Writable({
        write(c: Buffer, _e, cb) {
          for (const l of c.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
          cb();
        },
      }),
    );
    const asked: Element[] = [];
    const request = (iq: Element): Promise<Element> => {
      asked.push(iq);
      switch (iq.attrs.to) {
        case 'proxy.example.com':
          return Promise.resolve(
            xml(
              'iq',
              { type: 'result' },
              xml(
                'query',
                { xmlns: NS.BYTESTREAMS },
                xml('streamhost', { jid: 'proxy.example.com', host: '192.0.2.1', port: '7777' }),
              ),
            ),
          );
        case 'acl.example.net':
          return Promise.reject(fail('forbidden'));
        default:
          return Promise.reject(Object.assign(new Error('timeout'), { name: 'TimeoutError' }));
      }
    };
    const p = new Proxies(
      [
        { jid: 'proxy.example.com', host: '192.0.2.1', port: 7777 },
        { jid: 'acl.example.net', host: '198.51.100.1', port: 7777 },
        { jid: 'slow.example.org', host: '203.0.113.1', port: 7777 },
      ],
      { request, from: 'reports.example.com', timeoutMs: 100, log },
    );
    expect(p.list.map((x) => x.jid)).to.have.length(3); // until checked, as configured
    await p.check();
    expect(p.list.map((x) => x.jid)).to.deep.equal(['proxy.example.com', 'slow.example.org']);
    expect(
      asked.map((iq) => [iq.attrs.type, iq.attrs.from, iq.getChild('query', NS.BYTESTREAMS) !== undefined]),
    ).to.deep.equal([
      ['get', 'reports.example.com', true],
      ['get', 'reports.example.com', true],
      ['get', 'reports.example.com', true],
    ]);
    const refused = lines.find((l) => l.level === 50);
    expect(refused?.msg).to.match(/^proxy acl\.example\.net refuses the component reports\.example\.com \(forbidden\)/);
    expect(refused?.msg).to.include('proxy65_acl');
    expect(lines.some((l) => l.level === 40 && l.proxy === 'slow.example.org')).to.equal(true);
  });

  describe('discovery (XEP-0065 §4, XEP-0030)', () => {
    /** The server example.com: disco#items lists services, each answers disco#info, the proxies answer §4.2. */
    function server(o: {
      items?: string[] | 'error';
      identities?: Record<string, Array<{ category: string; type: string }>>;
      streamhosts?: Record<string, { jid: string; host?: string; port?: string } | 'forbidden' | 'silent'>;
    }) {
      const asked: Element[] = [];
      const request = (iq: Element): Promise<Element> => {
        asked.push(iq);
        const to = iq.attrs.to as string;
        if (iq.getChild('query', NS.DISCO_ITEMS)) {
          if (o.items === 'error') return Promise.reject(fail('service-unavailable'));
          return Promise.resolve(
            xml(
              'iq',
              { type: 'result', from: to },
              xml('query', { xmlns: NS.DISCO_ITEMS }, ...(o.items ?? []).map((jid) => xml('item', { jid }))),
            ),
          );
        }
        if (iq.getChild('query', NS.DISCO_INFO)) {
          const ids = o.identities?.[to];
          if (!ids) return Promise.reject(fail('item-not-found'));
          return Promise.resolve(
            xml(
              'iq',
              { type: 'result', from: to },
              xml('query', { xmlns: NS.DISCO_INFO }, ...ids.map((i) => xml('identity', i))),
            ),
          );
        }
        const sh = o.streamhosts?.[to];
        if (sh === undefined || sh === 'forbidden') return Promise.reject(fail('forbidden'));
        if (sh === 'silent') return Promise.reject(Object.assign(new Error('timeout'), { name: 'TimeoutError' }));
        const attrs: Record<string, string> = { jid: sh.jid };
        if (sh.host !== undefined) attrs.host = sh.host;
        if (sh.port !== undefined) attrs.port = sh.port;
        return Promise.resolve(
          xml('iq', { type: 'result', from: to }, xml('query', { xmlns: NS.BYTESTREAMS }, xml('streamhost', attrs))),
        );
      };
      return { asked, request };
    }
    const PROXY_ID = [{ category: 'proxy', type: 'bytestreams' }];

    it("finds the server's proxy and offers it at the address it announces, under the JID disco found", async () => {
      const { lines, log } = capture();
      const s = server({
        items: ['upload.example.com', 'proxy.example.com', 'conference.example.com'],
        identities: {
          'upload.example.com': [{ category: 'store', type: 'file' }],
          'proxy.example.com': PROXY_ID,
          'conference.example.com': [{ category: 'conference', type: 'text' }],
        },
        // ejabberd 23.01's mod_proxy65 names itself with a resource here; the activation goes to the bare JID
        streamhosts: { 'proxy.example.com': { jid: 'proxy.example.com/99441236', host: '192.0.2.7', port: '7777' } },
      });
      const p = new Proxies([], {
        request: s.request,
        from: 'reports.example.com',
        timeoutMs: 100,
        log,
        discover: 'example.com',
      });
      await p.check();
      expect(p.list).to.deep.equal([{ jid: 'proxy.example.com', host: '192.0.2.7', port: 7777 }]);
      expect(s.asked[0].attrs).to.include({ type: 'get', to: 'example.com', from: 'reports.example.com' });
      expect(s.asked[0].getChild('query', NS.DISCO_ITEMS)).to.not.equal(undefined);
      expect(s.asked.filter((q) => q.getChild('query', NS.DISCO_INFO)).map((q) => q.attrs.to)).to.have.members([
        'upload.example.com',
        'proxy.example.com',
        'conference.example.com',
      ]);
      // only the proxy gets the streamhost query
      expect(s.asked.filter((q) => q.getChild('query', NS.BYTESTREAMS)).map((q) => q.attrs.to)).to.deep.equal([
        'proxy.example.com',
      ]);
      const found = lines.find((l) => l.msg === 'proxies discovered');
      expect(found).to.deep.include({
        domain: 'example.com',
        discovered: ['proxy.example.com'],
        offered: ['proxy.example.com 192.0.2.7:7777'],
      });
    });

    it('offers configured proxies first, then discovered ones, each once', async () => {
      const { log } = capture();
      const s = server({
        items: ['proxy.example.com', 'proxy2.example.com'],
        identities: { 'proxy.example.com': PROXY_ID, 'proxy2.example.com': PROXY_ID },
        streamhosts: {
          'proxy.example.com': { jid: 'proxy.example.com', host: '192.0.2.7', port: '7777' },
          'proxy2.example.com': { jid: 'proxy2.example.com', host: '192.0.2.8', port: '7777' },
          'relay.example.net': { jid: 'relay.example.net', host: '198.51.100.5', port: '1080' },
        },
      });
      const p = new Proxies(
        [
          { jid: 'relay.example.net', host: '198.51.100.5', port: 1080 },
          // configured with another address than it announces: the configured one wins
          { jid: 'proxy.example.com', host: '203.0.113.9', port: 7777 },
        ],
        { request: s.request, from: 'reports.example.com', timeoutMs: 100, log, discover: 'example.com' },
      );
      await p.check();
      expect(p.list).to.deep.equal([
        { jid: 'relay.example.net', host: '198.51.100.5', port: 1080 },
        { jid: 'proxy.example.com', host: '203.0.113.9', port: 7777 },
        { jid: 'proxy2.example.com', host: '192.0.2.8', port: 7777 },
      ]);
    });

    it('does not offer a discovered proxy that refuses the component (a config error), is silent, or announces no address', async () => {
      const { lines, log } = capture();
      const s = server({
        items: ['acl.example.com', 'quiet.example.com', 'noport.example.com'],
        identities: { 'acl.example.com': PROXY_ID, 'quiet.example.com': PROXY_ID, 'noport.example.com': PROXY_ID },
        streamhosts: {
          'acl.example.com': 'forbidden',
          'quiet.example.com': 'silent',
          'noport.example.com': { jid: 'noport.example.com', host: '192.0.2.9' },
        },
      });
      const p = new Proxies([], {
        request: s.request,
        from: 'reports.example.com',
        timeoutMs: 100,
        log,
        discover: 'example.com',
      });
      await p.check();
      expect(p.list).to.deep.equal([]);
      const refused = lines.find((l) => l.level === 50);
      expect(refused?.msg).to.match(
        /^proxy acl\.example\.com refuses the component reports\.example\.com \(forbidden\)/,
      );
      expect(lines.some((l) => l.level === 40 && l.proxy === 'quiet.example.com')).to.equal(true);
      expect(lines.some((l) => l.level === 40 && l.proxy === 'noport.example.com')).to.equal(true);
    });

    it('keeps the configured proxies when the server lists nothing, and says so', async () => {
      const { lines, log } = capture();
      const s = server({
        items: 'error',
        streamhosts: { 'relay.example.net': { jid: 'relay.example.net', host: 'h', port: '1' } },
      });
      const p = new Proxies([{ jid: 'relay.example.net', host: '198.51.100.5', port: 1080 }], {
        request: s.request,
        from: 'reports.example.com',
        timeoutMs: 100,
        log,
        discover: 'example.com',
      });
      await p.check();
      expect(p.list.map((x) => x.jid)).to.deep.equal(['relay.example.net']);
      expect(lines.some((l) => l.level === 40 && l.domain === 'example.com')).to.equal(true);
      expect(lines.find((l) => l.msg === 'no proxy found on the server')).to.deep.include({ discovered: [] });
    });

    it('asks the server nothing when discovery is off', async () => {
      const { log } = capture();
      const s = server({ items: ['proxy.example.com'], identities: { 'proxy.example.com': PROXY_ID } });
      const p = new Proxies([], { request: s.request, from: 'reports.example.com', timeoutMs: 100, log });
      await p.check();
      expect(s.asked).to.deep.equal([]);
      expect(p.list).to.deep.equal([]);
    });
  });
});

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger(
    'debug',
    new Writable({
      write(c: Buffer, _e, cb) {
        for (const l of c.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    }),
  );
  return { lines, log };
}
