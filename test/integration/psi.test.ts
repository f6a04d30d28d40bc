// SI file transfer (XEP-0095/0096 over XEP-0065 S5B, through the component's
// own streamhost) to a real Psi 1.5 (Debian `psi`), driven headless under
// Xvfb (test/support/psi.ts): the user messages the project JID, Psi pops up
// its "Receive File" dialog, the test accepts it and saves the file, and the
// saved file is the report byte-exact.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PsiClient, ensurePsiDeps, requirePsiTools } from '../support/psi.js';
import {
  getEjabberd,
  getIntranet,
  sleep,
  startComponent,
  user,
  waitForFile,
  waitForSession,
  type RunningComponent,
} from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const repoRoot = process.cwd();

describe('integration: SI file transfer by S5B to a real Psi 1.5', function () {
  this.timeout(240_000);
  let workDir: string;
  let comp: RunningComponent | undefined;
  let psi: PsiClient | undefined;
  let keep = true; // until the test passed: a failed run keeps the work dir and its screenshot

  before(async function () {
    this.timeout(20 * 60_000); // a first run installs psi and friends
    await ensurePsiDeps(repoRoot);
    await requirePsiTools(); // fails (never skips) when psi, Xvfb, xdotool or dbus-run-session is missing
    workDir = await mkdtemp(join(tmpdir(), 'xr-psi-'));
    const intranet = await getIntranet();
    const ej = await getEjabberd();
    const u = await user('psi');
    comp = await startComponent({ XR_REPORTS_SOURCE: 'http', XR_REPORTS_URL_TEMPLATE: intranet.urlTemplate });
    psi = await PsiClient.start({
      workDir: join(workDir, 'psi'),
      jid: u.jid,
      password: u.password,
      host: '127.0.0.1',
      port: ej.c2sPort,
      saveDir: join(workDir, 'saved'),
    });
    // Psi connects by itself (autoconnect account); ejabberd says when its session is there.
    await waitForSession(
      ej,
      u.username,
      psi.resource,
      60_000,
      async () =>
        `visible windows: ${JSON.stringify(await psi!.windowNames())}; Psi's log tail:\n${(await psi!.log()).slice(-2000)}`,
    );
  });

  afterEach(async function () {
    if (this.currentTest?.state !== 'failed' || !psi) return;
    const shot = join(workDir, `failure-${Date.now()}.png`);
    await psi.screenshot(shot).catch(() => {});
    console.error(`Psi's screen: ${shot}\nits log: ${psi.logFile}\n(work dir kept: ${workDir})`);
  });

  after(async function () {
    this.timeout(60_000);
    if (psi && keep && workDir) await psi.screenshot(join(workDir, 'last-screen.png')).catch(() => {});
    await psi?.stop();
    await comp?.stop();
    if (workDir && !keep) await rm(workDir, { recursive: true, force: true });
  });

  it('messages the project JID, accepts the Receive File dialog, saves the report byte-exact, delivered by s5b', async () => {
    const ej = await getEjabberd();
    const body = randomBytes(700_000);
    const project = String(870000 + Math.floor(Math.random() * 90000));
    (await getIntranet()).projects.set(project, { kind: 'file', body });
    const name = `status-${project}.pdf`;
    const jid = `${project}@${ej.componentDomain}`;

    await psi!.openChat(jid);
    const chat = await psi!.waitForWindow(project, 30_000);
    await sleep(500);
    await psi!.type(chat, 'report');
    await psi!.keys(chat, 'Return');

    // Psi's incoming-file dialog (options.ui.file-transfer.auto-popup): Accept is its default button.
    const offer = await psi!.waitForWindow('^Receive File', 60_000);
    await sleep(500);
    await psi!.keys(offer, 'Return');
    // Qt's Save As dialog starts in last-used-save-path with the offered name; the file name box has the focus.
    const saveAs = await psi!.waitForWindow('^Save', 30_000);
    await sleep(500);
    const saved = join(workDir, 'saved', name);
    await psi!.keys(saveAs, 'ctrl+a');
    await psi!.type(saveAs, saved);
    await psi!.keys(saveAs, 'Return');

    await waitForFile(saved, body.length, 60_000);
    expect(sha256(await readFile(saved))).to.equal(sha256(body));
    // An SI offer (not Jingle), and the bytes went through the component's own streamhost (offered under the project's JID).
    const offered = comp!.logged('file offered').find((l) => l.project === project);
    expect(offered, 'a file offered log line for the project').to.include({ bytes: body.length });
    expect(offered!.protocol, 'an SI offer, not Jingle').to.not.equal('jingle');
    const connected = comp!.logged('bytestream connected').find((l) => l.project === project);
    expect(connected, 'a bytestream connected log line').to.include({ method: 's5b' });
    expect(String(connected!.streamhost)).to.match(
      new RegExp(`^${project}@${ej.componentDomain.replace(/\./g, '\\.')}/`),
    );
    const delivered = comp!.logged('delivered').find((l) => l.project === project);
    expect(delivered, 'a delivered log line for the project').to.include({ method: 's5b', bytes: body.length });
    keep = false;
  });
});
