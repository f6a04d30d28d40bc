// A real Gajim 1.7 (Debian `gajim`), driven headless under Xvfb as a
// throw-away user (test/support/gajim.ts), as the user: it advertises Jingle
// file transfer, but Gajim 1's Jingle is broken (transfer.jingle.brokenClients,
// default "Gajim 1"), so a report request gets an HTTP link (body = URL plus
// jabber:x:oob) from the component's own link server straight away. Gajim shows
// the link as a file preview and downloads it; the saved file is the report
// byte-exact.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GajimClient, ensureGajimDeps, requireGajimTools } from '../support/gajim.js';
import {
  freePort,
  getEjabberd,
  getIntranet,
  sleep,
  startComponent,
  user,
  waitForSession,
  type RunningComponent,
} from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const repoRoot = process.cwd();

describe('integration: a real Gajim 1.7 gets the report as a link (no Jingle) and downloads it', function () {
  this.timeout(240_000);
  let workDir: string;
  let comp: RunningComponent | undefined;
  let gajim: GajimClient | undefined;
  let linkPort: number;
  const project = String(880000 + Math.floor(Math.random() * 90000));
  let keep = true; // until the test passed: a failed run keeps the work dir and its screenshot

  before(async function () {
    this.timeout(20 * 60_000); // a first run installs gajim and friends
    await ensureGajimDeps(repoRoot);
    await requireGajimTools(); // fails (never skips) when gajim, Xvfb, xdotool, dbus-run-session… is missing
    workDir = await mkdtemp(join(tmpdir(), 'xr-gajim-'));
    await chmod(workDir, 0o755); // Gajim's user needs to reach its home below it
    const intranet = await getIntranet();
    const ej = await getEjabberd();
    const u = await user('gajim');
    linkPort = await freePort();
    comp = await startComponent({
      XR_REPORTS_SOURCE: 'http',
      XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate,
      XR_LINKS_PUBLIC_BASE_URL: `http://127.0.0.1:${linkPort}/files/`,
      XR_LINKS_BIND_HOST: '127.0.0.1',
      XR_LINKS_BIND_PORT: String(linkPort),
      XR_LINKS_STATE_DIR: join(workDir, 'links'),
    });
    expect(comp.app.linkServer?.port).to.equal(linkPort);
    // The project JID in the user's roster, subscribed both ways, before Gajim logs in: Gajim 1.7 answers
    // XEP-0092 (which the component reads to tell Gajim 1 from a fixed Gajim) only to a contact with a
    // presence subscription from the user (SoftwareVersion._allow_reply); anyone else gets <forbidden/>.
    const res = await fetch(`http://127.0.0.1:${ej.httpPort}/api/add_rosteritem`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        localuser: u.username,
        localhost: ej.domain,
        user: project,
        host: ej.componentDomain,
        nick: `Project ${project}`,
        group: 'Reports',
        subs: 'both',
      }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.status, await res.text()).to.equal(200);
    gajim = await GajimClient.start({
      workDir: join(workDir, 'gajim'),
      repoRoot,
      jid: u.jid,
      password: u.password,
      host: '127.0.0.1',
      port: ej.c2sPort,
    });
    // Gajim connects by itself (autoconnect account); ejabberd says when its session is there.
    await waitForSession(
      ej,
      u.username,
      gajim.resource,
      90_000,
      async () =>
        `visible windows: ${JSON.stringify(await gajim!.windowNames())}; Gajim's log tail:\n${(await gajim!.log()).slice(-2000)}`,
    );
  });

  afterEach(async function () {
    if (this.currentTest?.state !== 'failed' || !gajim) return;
    const shot = join(workDir, `failure-${Date.now()}.png`);
    await gajim.screenshot(shot).catch(() => {});
    console.error(`Gajim's screen: ${shot}\nits log: ${gajim.logFile}\n(work dir kept: ${workDir})`);
  });

  after(async function () {
    this.timeout(60_000);
    if (gajim && keep && workDir) await gajim.screenshot(join(workDir, 'last-screen.png')).catch(() => {});
    await gajim?.stop();
    await comp?.stop();
    if (workDir && !keep) await rm(workDir, { recursive: true, force: true });
  });

  it('messages the project JID, gets the link without a Jingle offer, and Gajim saves the report byte-exact', async () => {
    const ej = await getEjabberd();
    const body = randomBytes(500_000);
    (await getIntranet()).projects.set(project, { kind: 'file', body });
    const jid = `${project}@${ej.componentDomain}`;

    // Gajim's own start-chat action (as an xmpp: link would), with the message prefilled.
    await gajim!.action('start-chat', `[<['${jid}', 'report']>]`);
    const dialog = await gajim!.waitForWindow('^Start / Join Chat$', 30_000);
    await sleep(1500); // the dialog selects its first row: the roster contact with that JID
    await gajim!.keys(dialog, 'Return');
    // The chat opens in the main window with "report" in the message input, which has the focus.
    const main = await gajim!.waitForWindow('^Gajim$', 30_000);
    await sleep(1500);
    await gajim!.keys(main, 'Return');

    // The link arrives as an OOB file preview; Gajim 1.7 downloads an allowed type (application/pdf) under
    // preview_max_file_size by itself, into its downloads dir as <stem>_<sha1 of the URL><suffix>.
    const stem = `status-${project}_`;
    const deadline = Date.now() + 60_000;
    let saved = '';
    for (;;) {
      const f = (await gajim!.downloads()).find((n) => n.startsWith(stem) && n.endsWith('.pdf'));
      if (f) {
        const size = (await stat(join(gajim!.downloadDir, f))).size;
        if (size === body.length) {
          saved = join(gajim!.downloadDir, f);
          break;
        }
      }
      if (Date.now() > deadline) {
        const lines = comp!.logs.filter((l) => l.project === project);
        throw new Error(
          `Gajim saved no ${stem}*.pdf of ${body.length} bytes within 60 s (downloads: ` +
            `${JSON.stringify(await gajim!.downloads())}); component log for the project: ${JSON.stringify(lines)}`,
        );
      }
      await sleep(250);
    }
    expect(sha256(await readFile(saved))).to.equal(sha256(body));

    const lines = comp!.logs.filter((l) => l.project === project);
    const broken = lines.find((l) => l.msg === 'known-broken Jingle client: no Jingle offer');
    expect(broken, `a known-broken Jingle client line; got ${JSON.stringify(lines.map((l) => l.msg))}`).to.not.equal(
      undefined,
    );
    expect(String(broken!.client)).to.match(/gajim/);
    expect(String(broken!.version), 'the XEP-0092 version Gajim reported').to.match(/^1\.\d+/);
    expect(lines.find((l) => l.msg === 'link published')).to.include({ why: 'no-file-transfer' });
    expect(
      lines.find((l) => l.msg === 'file offered'),
      'no file offer (SI or Jingle) to Gajim',
    ).to.equal(undefined);
    keep = false;
  });
});
