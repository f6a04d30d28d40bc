/**
 * A real Psi 1.5 (Debian `psi`) as a receiving client for integration tests,
 * driven headless (see shared notes, "Psi 1.5"):
 *
 * - Xvfb on its own display (test/support/x11.ts), Psi under dbus-run-session,
 *   HOME and XDG dirs in a private work dir;
 * - the profile is written before the first start: Psi 1.5 reads
 *   $XDG_CONFIG_HOME/psi/profiles/default/accounts.xml (options `accounts.a0.*`:
 *   `use-host`, `host`, `port`, `ssl` = no, `allow-plain` = always, `auto` for
 *   autoconnect, the password XOR-encoded with the JID as Psi's encodePassword
 *   does) and options.xml over its defaults (no tips dialog, file dialogs popping
 *   up at once, the save folder). With an account there, no import wizard shows;
 * - `psi --uri=xmpp:JID?message;type=chat` on Psi's own session bus opens a chat;
 *   xdotool finds windows by name (`search --name`), focuses them with
 *   `windowfocus` (no window manager) and types.
 *
 * Every process is started and stopped by pid; every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DesktopClient, alive, run, sleep, startXvfb, stopPid } from './x11.js';

/** Installs psi, xvfb, xdotool, dbus, imagemagick when missing (scripts/desktop-deps.sh psi). */
export async function ensurePsiDeps(repoRoot: string, timeoutMs = 15 * 60_000): Promise<void> {
  await run('bash', [join(repoRoot, 'scripts', 'desktop-deps.sh'), 'psi'], { timeoutMs });
}

/** Fails (never skips) with a clear message when a tool the Psi test needs is missing. */
export async function requirePsiTools(): Promise<void> {
  const missing: string[] = [];
  for (const c of ['psi', 'Xvfb', 'xdotool', 'dbus-run-session'])
    if (!(await run('sh', ['-c', `command -v ${c}`], { timeoutMs: 5000 }).catch(() => ''))) missing.push(c);
  if (missing.length > 0)
    throw new Error(
      `${missing.join(', ')} not found on PATH: the Psi test needs the Debian packages psi, xvfb, xdotool and dbus ` +
        '(bash scripts/desktop-deps.sh psi installs them)',
    );
}

/** Psi's encodePassword(): each UTF-16 unit XOR the key's (cycled), as 4 hex digits. */
export function encodePsiPassword(pass: string, key: string): string {
  let out = '';
  for (let i = 0; i < pass.length; i++)
    out += (pass.charCodeAt(i) ^ key.charCodeAt(i % key.length)).toString(16).padStart(4, '0');
  return out;
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface PsiOptions {
  /** private dir for HOME, XDG dirs, logs */
  workDir: string;
  /** bare JID of the account, e.g. psi@localhost */
  jid: string;
  password: string;
  resource?: string;
  /** c2s host and port (plain TCP, no TLS) */
  host: string;
  port: number;
  /** where the Save As dialog starts */
  saveDir: string;
}

export class PsiClient extends DesktopClient {
  protected readonly appName = 'Psi';
  private xvfb: ChildProcess | undefined;
  // this.session: dbus-run-session
  private psiPid: number | undefined;
  private readonly home: string;
  override readonly logFile: string;

  private constructor(private readonly o: PsiOptions) {
    super();
    this.home = join(o.workDir, 'home');
    this.logFile = join(o.workDir, 'psi.log');
  }

  get resource(): string {
    return this.o.resource ?? 'psi';
  }

  private get pidFile(): string {
    return join(this.o.workDir, 'psi.pid');
  }

  private env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C.UTF-8',
      HOME: this.home,
      XDG_DATA_HOME: join(this.home, 'data'),
      XDG_CONFIG_HOME: join(this.home, 'config'),
      XDG_CACHE_HOME: join(this.home, 'cache'),
      XDG_RUNTIME_DIR: join(this.home, 'run'),
      DISPLAY: this.display,
      QT_QPA_PLATFORM: 'xcb',
      QT_ACCESSIBILITY: '0',
      NO_AT_BRIDGE: '1',
    };
  }

  /** Writes the profile, starts Xvfb and Psi; Psi connects by itself (the caller waits for the session). */
  static async start(o: PsiOptions): Promise<PsiClient> {
    const p = new PsiClient(o);
    try {
      await p.boot();
    } catch (err) {
      await p.stop();
      throw err;
    }
    return p;
  }

  private async boot(): Promise<void> {
    for (const sub of ['data', 'config', 'cache', 'run'])
      await mkdir(join(this.home, sub), { recursive: true, mode: 0o700 });
    await this.writeProfile();
    const x = await startXvfb(15_000);
    this.xvfb = x.proc;
    this.display = x.display;
    const busFile = join(this.o.workDir, 'bus.addr');
    await writeFile(this.pidFile, '');
    const inner = `echo $$ > "$XR_PSI_PID"; echo "$DBUS_SESSION_BUS_ADDRESS" > "$XR_PSI_BUS"; exec psi`;
    const log = openSync(this.logFile, 'a');
    try {
      this.session = spawn('dbus-run-session', ['--', 'sh', '-c', inner], {
        env: { ...this.env(), XR_PSI_PID: this.pidFile, XR_PSI_BUS: busFile },
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    await this.until(async () => /^\d+$/.test((await readFile(this.pidFile, 'utf8')).trim()), 15_000, 'Psi to start');
    this.psiPid = Number((await readFile(this.pidFile, 'utf8')).trim());
  }

  private async writeProfile(): Promise<void> {
    const dir = join(this.home, 'config', 'psi', 'profiles', 'default');
    await mkdir(dir, { recursive: true });
    await mkdir(this.o.saveDir, { recursive: true });
    const { jid } = this.o;
    const s = (k: string, v: string) => `   <${k} type="QString">${xml(v)}</${k}>`;
    const b = (k: string, v: boolean) => `   <${k} type="bool">${v}</${k}>`;
    const accounts = [
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<!DOCTYPE psi>',
      '<accounts version="1.3" xmlns="http://psi-im.org/options">',
      ' <accounts>',
      '  <a0>',
      s('id', 'xr-test-account'),
      b('enabled', true),
      b('auto', true),
      b('reconn', false),
      s('name', 'test'),
      s('jid', jid),
      s('password', encodePsiPassword(this.o.password, jid)),
      b('use-host', true),
      s('host', this.o.host),
      `   <port type="int">${this.o.port}</port>`,
      s('ssl', 'no'),
      s('allow-plain', 'always'),
      s('resource', this.resource),
      b('automatic-resource', false),
      '  </a0>',
      ' </accounts>',
      '</accounts>',
      '',
    ].join('\n');
    const options = [
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<!DOCTYPE options>',
      '<options version="1.5" xmlns="http://psi-im.org/options">',
      ' <options>',
      '  <ui>',
      '   <tip><show type="bool">false</show></tip>',
      '   <file-transfer><auto-popup type="bool">true</auto-popup></file-transfer>',
      `   <last-used-save-path type="QString">${xml(this.o.saveDir)}</last-used-save-path>`,
      '  </ui>',
      ' </options>',
      '</options>',
      '',
    ].join('\n');
    await writeFile(join(dir, 'accounts.xml'), accounts);
    await writeFile(join(dir, 'options.xml'), options);
  }

  /** Opens the chat with a JID, as a click on an xmpp: link would (on Psi's own session bus). */
  async openChat(jid: string): Promise<void> {
    const bus = (await readFile(join(this.o.workDir, 'bus.addr'), 'utf8')).trim();
    await run('psi', [`--uri=xmpp:${jid}?message;type=chat`], {
      env: { ...this.env(), DBUS_SESSION_BUS_ADDRESS: bus },
      timeoutMs: 20_000,
    });
  }

  /** Processes started for this Psi (they carry its XR_PSI_PID path in their environment). */
  private leftovers(): number[] {
    const mark = `XR_PSI_PID=${this.pidFile}`;
    const out: number[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      try {
        if (readFileSync(`/proc/${name}/environ`, 'latin1').split('\0').includes(mark)) out.push(Number(name));
      } catch {
        // gone, or not ours to read
      }
    }
    return out;
  }

  /** Stops Psi, its session bus and Xvfb, each by pid. */
  async stop(): Promise<void> {
    await stopPid(this.psiPid, 10_000);
    this.psiPid = undefined;
    const s = this.session?.pid;
    const deadline = Date.now() + 5_000;
    while (alive(s) && Date.now() < deadline) await sleep(100);
    await stopPid(s, 5_000);
    this.session = undefined;
    for (const pid of this.leftovers()) await stopPid(pid, 5_000);
    await stopPid(this.xvfb?.pid, 5_000);
    this.xvfb = undefined;
  }
}
