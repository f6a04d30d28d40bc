// A real Profanity 0.13.1 (Debian `profanity`), driven headless in tmux
// (test/support/profanity.ts), as the user: it advertises neither SI nor
// Jingle, so a report request gets an HTTP link from the component's own link
// server, and Profanity's `/url save` must save the report byte-exact.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProfanityClient, requireProfanityTools } from '../support/profanity.js';
import {
  freePort,
  getEjabberd,
  getIntranet,
  startComponent,
  user,
  waitForFile,
  type RunningComponent,
} from './harness.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('integration: a real Profanity 0.13.1 gets the report as a link and saves it', function () {
  this.timeout(180_000);
  let workDir: string;
  let comp: RunningComponent | undefined;
  let prof: ProfanityClient | undefined;
  let linkPort: number;
  let keep = true; // until before() is through: a failed set-up keeps the work dir

  before(async function () {
    this.timeout(150_000);
    await requireProfanityTools(); // fails (never skips) when profanity or tmux is missing
    workDir = await mkdtemp(join(tmpdir(), 'xr-profanity-'));
    const intranet = await getIntranet();
    await getEjabberd();
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
    prof = await ProfanityClient.start(join(workDir, 'profanity'));
    keep = false;
  });

  afterEach(async function () {
    if (!prof) return;
    const file = await prof.saveScreen(join(workDir, 'screen.txt'));
    if (this.currentTest?.state !== 'failed') return;
    keep = true;
    console.error(`Profanity's last screen: ${file}\nits log: ${prof.logFile}\n(work dir kept: ${workDir})`);
  });

  after(async () => {
    await prof?.stop();
    await comp?.stop();
    if (workDir && !keep) await rm(workDir, { recursive: true, force: true });
  });

  it('messages the project JID, reads the link and why, and /url save writes the report byte-exact', async () => {
    const ej = await getEjabberd();
    const u = await user('profanity');
    const body = randomBytes(400_000);
    const project = String(760000 + Math.floor(Math.random() * 90000));
    (await getIntranet()).projects.set(project, { kind: 'file', body });
    const name = `status-${project}.pdf`;

    await prof!.connect(u.jid, u.password, '127.0.0.1', ej.c2sPort);
    await prof!.msg(`${project}@${ej.componentDomain}`, 'report');

    // What Profanity's user reads: why a link, the link, and what it downloads.
    await prof!.waitForScreen(
      `Your chat client does not receive file transfers, so here is a download link for ${name} instead.`,
      60_000,
      'the link-instead line',
    );
    const [url] = await prof!.waitForScreen(
      new RegExp(`http://127\\.0\\.0\\.1:${linkPort}/files/[A-Za-z0-9_-]{43}/${escape(name)}`),
      30_000,
      'the link',
    );
    await prof!.waitForScreen(
      new RegExp(
        `The link above downloads ${escape(name)} \\(.+?\\); it works until \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC\\.`,
      ),
      30_000,
      'the closing line',
    );
    expect(comp!.logged('link published').find((l) => l.project === project)).to.include({ why: 'no-file-transfer' });

    const saveDir = join(workDir, 'saved');
    await mkdir(saveDir); // Profanity does not create it: "Unable to open output file … (No such file or directory)"
    await prof!.type(`/url save ${url} ${saveDir}/`);
    const saved = join(saveDir, name);
    await waitForFile(saved, body.length, 60_000);
    // and Profanity says so itself
    await prof!.waitForScreen(`Downloading '${url}': done`, 30_000, "Profanity's download-done line");
    await prof!.waitForScreen(`Saved to '${saved}'`, 30_000, "Profanity's saved-to line");
    expect(sha256(await readFile(saved))).to.equal(sha256(body));
  });
});
