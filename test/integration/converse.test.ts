// A real Converse.js 14 (the web client, npm converse.js) in Debian's headless
// Chromium (test/support/converse.ts): its user messages a project JID over
// ejabberd's WebSocket, gets the download link (Converse does no SI or Jingle
// file transfer), and a click on the link downloads the report byte-exact.
// The screenshot, the browser's console and the download stay in
// .run/converse/ (printed at the end of the test).
//
// Converse 14 advertises jabber:x:oob but neither SI nor Jingle file
// transfer, so the component's plan is the link alone. (Tried by hand: it
// never answers an SI offer or a Jingle session-initiate at all, not even
// with an error, so an offer to it would only wait for its timeout.)
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replies } from '../../src/chat/replies.js';
import { ConverseClient, converseVersion, requireChromium } from '../support/converse.js';
import { freePort, getEjabberd, getIntranet, startComponent, user, type RunningComponent } from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const runDir = join(process.cwd(), '.run', 'converse');
let projectCounter = 730000 + Math.floor(Math.random() * 60000);

describe(`integration: a real Converse.js ${converseVersion()} in headless Chromium`, function () {
  this.timeout(180_000);
  let comp: RunningComponent | undefined;
  let conv: ConverseClient | undefined;
  let linksDir: string | undefined;

  before(async function () {
    this.timeout(180_000);
    requireChromium(); // fails (never skips) with what to install
    await rm(runDir, { recursive: true, force: true });
    await mkdir(runDir, { recursive: true });
    const ej = await getEjabberd();
    const intranet = await getIntranet();
    const linkPort = await freePort();
    linksDir = await mkdtemp(join(tmpdir(), 'xr-links-'));
    comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_LINKS_PUBLIC_BASE_URL: `http://127.0.0.1:${linkPort}/files/`,
      XR_LINKS_BIND_HOST: '127.0.0.1',
      XR_LINKS_BIND_PORT: String(linkPort),
      XR_LINKS_STATE_DIR: linksDir,
    });
    const u = await user('conny');
    conv = await ConverseClient.start({
      workDir: runDir,
      websocketUrl: `ws://127.0.0.1:${ej.httpPort}/ws`,
      jid: u.jid,
      password: u.password,
    });
  });

  afterEach(async function () {
    if (this.currentTest?.state !== 'failed' || !conv) return;
    const shot = await conv.screenshot(join(runDir, `failed-${Date.now()}.png`)).catch(() => undefined);
    await writeFile(join(runDir, 'failed-page.html'), await conv.html().catch(() => '')).catch(() => {});
    if (shot) console.log(`      screenshot of the failure: ${shot}`);
  });

  after(async function () {
    this.timeout(60_000);
    if (conv) await writeFile(join(runDir, 'browser-console.log'), conv.console.join('\n') + '\n').catch(() => {});
    await conv?.stop();
    await comp?.stop();
    if (linksDir) await rm(linksDir, { recursive: true, force: true });
  });

  it('messages a project JID, is told why it gets a link, and a click on the link downloads the report byte-exact', async () => {
    const ej = await getEjabberd();
    const body = randomBytes(400_000);
    const project = String(projectCounter++);
    (await getIntranet()).projects.set(project, { kind: 'file', body });
    const jid = `${project}@${ej.componentDomain}`;
    const name = `status-${project}.pdf`;

    await conv!.openChat(jid);
    await conv!.send(jid, 'report');

    const why = replies.linkInstead(name, 'no-file-transfer');
    expect(why).to.equal(
      `Your chat client does not receive file transfers, so here is a download link for ${name} instead.`,
    );
    await conv!.waitForMessage(jid, why, 60_000);
    const href = await conv!.waitForLink(jid, `/${name}`, 30_000);
    expect(href).to.match(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/files/[A-Za-z0-9_-]{43}/${name}$`));
    await conv!.waitForMessage(jid, `The link above downloads ${name}`, 30_000);

    const shot = await conv!.screenshot(join(runDir, `converse-${project}.png`));
    console.log(`      screenshot: ${shot}`);

    const got = await conv!.clickLinkAndDownload(jid, href, 30_000);
    console.log(`      downloaded: ${got.path} (${got.bytes.length} bytes, as "${got.suggestedFilename}")`);
    expect(got.suggestedFilename).to.equal(name);
    expect(got.bytes.length).to.equal(body.length);
    expect(sha256(got.bytes)).to.equal(sha256(body));

    // The component saw a client without SI or Jingle and chose the link straight away: nothing was offered.
    const caps = comp!.logged('client capabilities').find((l) => l.project === project);
    expect(caps, 'a "client capabilities" log line for the request').to.not.equal(undefined);
    expect(caps!.plan).to.deep.equal(['link']);
    expect(String(caps!.client)).to.match(/converse/i);
    expect(comp!.logged('link published').some((l) => l.project === project)).to.equal(true);
    expect(comp!.logged(/offer/i).filter((l) => l.project === project)).to.deep.equal([]);

    // Converse came from loopback, talked to loopback and downloaded from loopback: nothing else.
    expect(conv!.requests.some((u) => u.startsWith(`ws://127.0.0.1:${ej.httpPort}/ws`))).to.equal(true);
    expect(conv!.requests).to.include(href);
    expect(conv!.nonLoopbackRequests()).to.deep.equal([]);
  });
});
