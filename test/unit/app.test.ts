// The component as app.ts wires it (never connected): which protocol modules
// it carries, as disco#info and the route table show them.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml, type Element } from '@xmpp/component';
import { pino } from 'pino';
import { App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { parseJid } from '../../src/xmpp/addresses.js';
import { NS } from '../../src/xmpp/namespaces.js';

const JINGLE = [NS.JINGLE, NS.JINGLE_FT, NS.JINGLE_S5B, NS.JINGLE_IBB];
const SI = [NS.SI, NS.SI_FILE, NS.BYTESTREAMS];

async function withApp(order: string, fn: (app: App) => Promise<void>): Promise<void> {
  const spool = await mkdtemp(join(tmpdir(), 'xr-app-'));
  const config = loadConfig({
    env: { XR_XMPP_SECRET: 'x', XR_PROXY_ENABLED: 'false', XR_REPORTS_SPOOL_DIR: spool, XR_TRANSFER_ORDER: order },
  });
  const app = await App.create(config, pino({ level: 'silent' }));
  try {
    await fn(app);
  } finally {
    await app.stop(0);
    await rm(spool, { recursive: true, force: true });
  }
}

async function features(app: App): Promise<string[]> {
  const from = parseJid('alice@example.com/phone')!;
  const iq = xml('iq', { type: 'get', id: 'd1', from: from.full }, xml('query', { xmlns: NS.DISCO_INFO }));
  const reply = await app.router.handle(iq, from, { kind: 'project', project: '1234' });
  expect(reply, 'a disco#info result').to.be.an('object');
  return (reply as Element).getChildren('feature').map((f) => f.attrs.var as string);
}

describe('app: protocol modules', () => {
  it('advertises SI, Jingle and IBB with the default transfer.order, each route registered once', async () => {
    await withApp('si,jingle,link', async (app) => {
      expect(await features(app)).to.include.members([...SI, ...JINGLE, NS.IBB]);
      expect(app.router.routes).to.include.members([
        `set ${NS.JINGLE} jingle`,
        `set ${NS.IBB} close`,
        `set ${NS.IBB} open`,
      ]);
      expect(new Set(app.router.routes).size).to.equal(app.router.routes.length);
    });
  });

  it('leaves Jingle out when transfer.order does not name it', async () => {
    await withApp('si,link', async (app) => {
      const f = await features(app);
      expect(f).to.include.members([...SI, NS.IBB]);
      for (const j of JINGLE) expect(f).to.not.include(j);
      expect(app.router.routes).to.not.include(`set ${NS.JINGLE} jingle`);
    });
  });

  it('leaves SI out when only Jingle and links are used', async () => {
    await withApp('jingle,link', async (app) => {
      const f = await features(app);
      expect(f).to.include.members([...JINGLE, NS.IBB]);
      for (const s of SI) expect(f).to.not.include(s);
    });
  });
});
