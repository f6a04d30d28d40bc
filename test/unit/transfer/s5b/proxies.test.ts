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
});
