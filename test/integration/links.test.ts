// Every client gets its report: clients without SI get an HTTP link (body and
// jabber:x:oob), from the component's own link server or the server's
// XEP-0363 upload service; SI clients still get the file; a transfer that
// fails on every bytestream ends with a link.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fetch from 'node-fetch';
import type { ReceiverEvent, ReceiverProcess } from '../support/receiver.js';
import { startSlixReceiver } from '../support/slix.js';
import { getEjabberd, getIntranet, sleep, startComponent, user, type RunningComponent } from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let counter = 520000 + Math.floor(Math.random() * 80000);

async function publish(body: Buffer): Promise<string> {
  const project = String(counter++);
  (await getIntranet()).projects.set(project, { kind: 'file', body });
  return project;
}

async function receiver(
  name: string,
  opts: { noSi?: boolean; methods?: string[] } = {},
): Promise<{ rx: ReceiverProcess; outDir: string }> {
  const ej = await getEjabberd();
  const u = await user(name);
  const outDir = await mkdtemp(join(tmpdir(), 'xr-rx-links-'));
  const rx = await startSlixReceiver({
    jid: `${u.jid}/slix`,
    password: u.password,
    host: '127.0.0.1',
    port: ej.c2sPort,
    outDir,
    timeoutSec: 300,
    ...opts,
  });
  return { rx, outDir };
}

/** Requests a report and returns the OOB message (body == URL) and the closing line. */
async function requestLink(
  rx: ReceiverProcess,
  project: string,
): Promise<{ link: ReceiverEvent; final: ReceiverEvent }> {
  const ej = await getEjabberd();
  rx.send(`${project}@${ej.componentDomain}`, 'report');
  const link = await rx.waitFor(
    (e) => e.event === 'message' && typeof e.oob === 'string' && String(e.oob).includes(`status-${project}.pdf`),
    60000,
  );
  const final = await rx.waitFor(
    (e) => e.event === 'message' && String(e.body).startsWith(`The link above downloads status-${project}.pdf`),
    30000,
  );
  return { link, final };
}

async function download(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; headers: Map<string, string> }> {
  const res = await fetch(url, { headers });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body, headers: new Map([...res.headers.entries()]) };
}

describe('integration: HTTP links for clients without SI', function () {
  this.timeout(120000);
  let comp: RunningComponent;
  let plain: { rx: ReceiverProcess; outDir: string };

  before(async function () {
    this.timeout(120000);
    const intranet = await getIntranet();
    comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_LINKS_PUBLIC_BASE_URL: 'http://127.0.0.1:0/files/', // port fixed below once bound
      XR_LINKS_BIND_HOST: '127.0.0.1',
      XR_LINKS_BIND_PORT: '0',
      XR_LINKS_MAX_DOWNLOADS: '2',
      XR_LINKS_STATE_DIR: await mkdtemp(join(tmpdir(), 'xr-links-')),
    });
    plain = await receiver('gajim', { noSi: true });
  });
  after(async () => {
    await plain?.rx.quit();
    await rm(plain?.outDir ?? '/nonexistent', { recursive: true, force: true });
    await comp?.stop();
  });

  /** The URL as served: the test's public base names port 0, the server's real port is used to fetch. */
  const local = (url: string) => url.replace('http://127.0.0.1:0/', `http://127.0.0.1:${comp.app.linkServer!.port}/`);

  it('sends a client without SI a link in the body and in jabber:x:oob, and the file downloads byte-exact', async () => {
    const body = randomBytes(300_000);
    const project = await publish(body);
    const { link, final } = await requestLink(plain.rx, project);
    expect(link.body).to.equal(link.oob);
    expect(String(link.oob)).to.match(/^http:\/\/127\.0\.0\.1:0\/files\/[A-Za-z0-9_-]{43}\/status-\d+\.pdf$/);
    expect(String(final.body)).to.match(/works until \d{4}-\d\d-\d\d \d\d:\d\d UTC\.$/);
    expect(
      plain.rx.events.some(
        (e) =>
          e.event === 'message' && /does not receive file transfers, so here is a download link/.test(String(e.body)),
      ),
    ).to.equal(true);
    expect(plain.rx.events.some((e) => e.event === 'offer')).to.equal(false); // no SI offer was even tried
    const got = await download(local(String(link.oob)));
    expect(got.status).to.equal(200);
    expect(sha256(got.body)).to.equal(sha256(body));
    expect(got.headers.get('content-type')).to.equal('application/pdf');
    expect(got.headers.get('content-disposition')).to.include(`filename="status-${project}.pdf"`);
    // the token never reaches the log
    const token = String(link.oob).split('/')[4];
    expect(comp.rawLog.join('\n')).to.not.include(token);
    expect(comp.logged('link published').some((l) => l.project === project)).to.equal(true);
  });

  it('resumes an interrupted download with Range, and stops serving after the download limit', async () => {
    const body = randomBytes(200_000);
    const project = await publish(body);
    const { link } = await requestLink(plain.rx, project);
    const url = local(String(link.oob));
    const head = await download(url, { range: 'bytes=0-99999' });
    expect(head.status).to.equal(206);
    const tail = await download(url, { range: 'bytes=100000-' });
    expect(tail.status).to.equal(206);
    expect(tail.headers.get('content-range')).to.equal(`bytes 100000-199999/200000`);
    expect(sha256(Buffer.concat([head.body, tail.body]))).to.equal(sha256(body));
    // limit 2 complete downloads: the resumed one counted once; one more whole download, then 404
    expect((await download(url)).status).to.equal(200);
    const gone = await download(url);
    expect(gone.status).to.equal(404);
    const unknown = await download(url.replace(/files\/[^/]+/, 'files/' + 'A'.repeat(43)));
    expect(unknown.status).to.equal(404);
    expect(unknown.body.equals(gone.body)).to.equal(true); // expired and unknown look the same
  });

  it('still gives an SI client the file transfer, not a link', async () => {
    const si = await receiver('psi');
    try {
      const body = randomBytes(50_000);
      const project = await publish(body);
      si.rx.send(`${project}@${(await getEjabberd()).componentDomain}`, 'report');
      const got = await si.rx.waitFor((e) => e.event === 'received' && e.name === `status-${project}.pdf`, 60000);
      expect(got.sha256).to.equal(sha256(body));
      await si.rx.waitFor((e) => e.event === 'message' && /^Delivered /.test(String(e.body)), 30000);
      expect(si.rx.events.some((e) => e.event === 'message' && typeof e.oob === 'string')).to.equal(false);
    } finally {
      await si.rx.quit();
      await rm(si.outDir, { recursive: true, force: true });
    }
  });
});

describe('integration: a transfer that fails on every bytestream ends with a link', function () {
  this.timeout(120000);

  it('sends the link and says why', async () => {
    const intranet = await getIntranet();
    const { createServer } = await import('node:net');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const deadPort = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_PROXY_ADVERTISE_PORT: String(deadPort), // nobody can connect: S5B fails
      XR_DISCOVER_PROXIES: 'false', // and there is no proxy to fall back on
      XR_LINKS_PUBLIC_BASE_URL: 'http://127.0.0.1:0/files/',
      XR_LINKS_BIND_HOST: '127.0.0.1',
      XR_LINKS_BIND_PORT: '0',
      XR_LINKS_STATE_DIR: await mkdtemp(join(tmpdir(), 'xr-links-')),
    });
    // accepts only SOCKS5: the in-band fallback is refused too
    const r = await receiver('stubborn', { methods: ['s5b'] });
    try {
      const body = randomBytes(20_000);
      const project = await publish(body);
      const { link } = await requestLink(r.rx, project);
      expect(
        r.rx.events.some(
          (e) => e.event === 'message' && /did not work, so here is a download link/.test(String(e.body)),
        ),
      ).to.equal(true);
      const got = await download(
        String(link.oob).replace('http://127.0.0.1:0/', `http://127.0.0.1:${comp.app.linkServer!.port}/`),
      );
      expect(sha256(got.body)).to.equal(sha256(body));
      expect(comp.logged('delivered').some((l) => l.project === project)).to.equal(false);
    } finally {
      await r.rx.quit();
      await rm(r.outDir, { recursive: true, force: true });
      await comp.stop();
    }
  });
});

describe("integration: links through the server's XEP-0363 upload service", function () {
  this.timeout(120000);

  it("uploads to ejabberd's mod_http_upload and sends that URL", async () => {
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_LINKS_UPLOAD_SERVICE: `upload.${ej.domain}`,
    });
    const r = await receiver('monal', { noSi: true });
    try {
      const body = randomBytes(120_000);
      const project = await publish(body);
      const { link } = await requestLink(r.rx, project);
      expect(String(link.oob)).to.match(new RegExp(`^http://127\\.0\\.0\\.1:${ej.httpPort}/upload/`));
      await sleep(100);
      const got = await download(String(link.oob));
      expect(got.status).to.equal(200);
      expect(sha256(got.body)).to.equal(sha256(body));
      expect(comp.logged('link published').find((l) => l.project === project)).to.include({ method: 'upload' });
    } finally {
      await r.rx.quit();
      await rm(r.outDir, { recursive: true, force: true });
      await comp.stop();
    }
  });
});

describe('integration: a client that answers neither disco#info nor the SI offer gets a link', function () {
  this.timeout(120000);

  it('sends the link after the offer timeout and says the client did not answer', async () => {
    const { XmppUser } = await import('../support/xmpp-user.js');
    const { NS } = await import('../../src/xmpp/namespaces.js');
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_CAPS_TIMEOUT_MS: '1000',
      XR_TRANSFER_OFFER_TIMEOUT_MS: '2000',
      XR_LINKS_PUBLIC_BASE_URL: 'http://127.0.0.1:0/files/',
      XR_LINKS_BIND_HOST: '127.0.0.1',
      XR_LINKS_BIND_PORT: '0',
      XR_LINKS_STATE_DIR: await mkdtemp(join(tmpdir(), 'xr-links-')),
    });
    const u = await user('mute');
    const mute = await XmppUser.login({
      port: ej.c2sPort,
      domain: ej.domain,
      username: u.username,
      password: u.password,
    });
    // Like Converse.js: no answer at all (not even an error) to disco#info or to the SI offer.
    const seen: string[] = [];
    const never = (what: string) => () => {
      seen.push(what);
      return new Promise<never>(() => {});
    };
    mute.xmpp.iqCallee.get('http://jabber.org/protocol/disco#info', 'query', never('disco#info'));
    mute.xmpp.iqCallee.set(NS.SI, 'si', never('si'));
    try {
      const body = randomBytes(40_000);
      const project = await publish(body);
      const from = `${project}@${ej.componentDomain}`;
      await mute.say(from, 'report');
      const why = await mute.waitForMessage(
        from,
        /did not answer the file offer for status-\d+\.pdf, so here is a download link/,
        30000,
      );
      expect(why.getChildText('body')).to.include(`status-${project}.pdf`);
      const oob = await mute.waitFor(
        (e) => e.name === 'message' && (e.attrs.from ?? '').startsWith(from) && !!e.getChild('x', 'jabber:x:oob'),
        30000,
        'the link',
      );
      const url = oob.getChild('x', 'jabber:x:oob')!.getChildText('url')!;
      expect(oob.getChildText('body')).to.equal(url);
      expect(seen).to.deep.equal(['disco#info', 'si']);
      const got = await download(url.replace('http://127.0.0.1:0/', `http://127.0.0.1:${comp.app.linkServer!.port}/`));
      expect(got.status).to.equal(200);
      expect(sha256(got.body)).to.equal(sha256(body));
      expect(comp.logged('link published').some((l) => l.project === project && l.why === 'no-answer')).to.equal(true);
    } finally {
      await mute.logout();
      await comp.stop();
    }
  });
});
