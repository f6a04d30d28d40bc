/**
 * A real Gajim 1.7 (Debian `gajim`) as a receiving client for integration tests,
 * driven headless (see shared notes, "Gajim 1.7.3"):
 *
 * - Gajim refuses to run as root: it runs as a throw-away system user (useradd
 *   with a home in a private work dir, userdel at the end), HOME and XDG dirs
 *   in that home;
 * - the account is written before the first start with Gajim's own settings
 *   code (scripts/gajim-account.py, /usr/bin/python3 and the `gajim` modules):
 *   plain TCP (`custom_type` PLAIN) to a custom host and port, no
 *   unencrypted-connection prompt, autoconnect;
 * - Xvfb on its own display (test/support/x11.ts), Gajim under
 *   dbus-run-session as that user (runuser); its GApplication actions are on
 *   that session bus (org.gajim.Gajim, org.gtk.Actions), which is how the test
 *   opens a chat (`start-chat` with a JID and a message);
 * - an OOB link (jabber:x:oob, same URL as the body) from a contact is a file
 *   preview, and Gajim downloads an allowed type (application/pdf is one) under
 *   preview_max_file_size by itself into $XDG_DATA_HOME/gajim/downloads/.
 *
 * Every process is started and stopped by pid; every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DesktopClient, alive, run, sleep, startXvfb, stopPid } from './x11.js';

/** Installs gajim, xvfb, xdotool, dbus, imagemagick when missing (scripts/desktop-deps.sh gajim). */
export async function ensureGajimDeps(repoRoot: string, timeoutMs = 15 * 60_000): Promise<void> {
  await run('bash', [join(repoRoot, 'scripts', 'desktop-deps.sh'), 'gajim'], { timeoutMs });
}

/** Fails (never skips) with a clear message when a tool the Gajim test needs is missing. */
export async function requireGajimTools(): Promise<void> {
  const missing: string[] = [];
  for (const c of ['gajim', 'Xvfb', 'xdotool', 'dbus-run-session', 'runuser', 'useradd', 'userdel', 'gdbus'])
    if (!(await run('sh', ['-c', `command -v ${c}`], { timeoutMs: 5000 }).catch(() => ''))) missing.push(c);
  if (missing.length > 0)
    throw new Error(
      `${missing.join(', ')} not found on PATH: the Gajim test needs the Debian packages gajim, xvfb, xdotool and dbus ` +
        '(bash scripts/desktop-deps.sh gajim installs them) and runs as root (useradd/runuser)',
    );
}

export interface GajimOptions {
  /** private dir (it gets the user's home and the logs); made world-traversable */
  workDir: string;
  repoRoot: string;
  /** bare JID of the account, e.g. gajim@localhost */
  jid: string;
  password: string;
  resource?: string;
  /** c2s host and port (plain TCP, no TLS) */
  host: string;
  port: number;
}

export class GajimClient extends DesktopClient {
  protected readonly appName = 'Gajim';
  private xvfb: ChildProcess | undefined;
  // this.session: runuser … dbus-run-session
  private gajimPid: number | undefined;
  private uid: number | undefined;
  private readonly userName: string;
  readonly home: string;
  override readonly logFile: string;

  private constructor(private readonly o: GajimOptions) {
    super();
    this.home = join(o.workDir, 'home');
    this.logFile = join(o.workDir, 'gajim.log');
    this.userName = `xrgajim${process.pid % 100000}`;
  }

  get resource(): string {
    return this.o.resource ?? 'gajim';
  }

  /** Where Gajim's preview manager saves downloaded files. */
  get downloadDir(): string {
    return join(this.home, 'data', 'gajim', 'downloads');
  }

  private get pidFile(): string {
    return join(this.home, 'gajim.pid');
  }

  private get busFile(): string {
    return join(this.home, 'bus.addr');
  }

  private env(): NodeJS.ProcessEnv {
    return {
      PATH: '/usr/bin:/bin:/usr/sbin:/sbin',
      LANG: 'C.UTF-8',
      HOME: this.home,
      USER: this.userName,
      LOGNAME: this.userName,
      XDG_DATA_HOME: join(this.home, 'data'),
      XDG_CONFIG_HOME: join(this.home, 'config'),
      XDG_CACHE_HOME: join(this.home, 'cache'),
      XDG_RUNTIME_DIR: join(this.home, 'run'),
      DISPLAY: this.display,
      NO_AT_BRIDGE: '1',
      GTK_A11Y: 'none',
    };
  }

  /** runuser -u USER -- env -i VARS… cmd args (as the throw-away user, with Gajim's environment). */
  private asUser(cmd: string, args: string[], extra: NodeJS.ProcessEnv = {}): [string, string[]] {
    const vars = Object.entries({ ...this.env(), ...extra }).map(([k, v]) => `${k}=${v ?? ''}`);
    return ['runuser', ['-u', this.userName, '--', 'env', '-i', ...vars, cmd, ...args]];
  }

  /** Creates the user, writes the account, starts Xvfb and Gajim; Gajim connects by itself. */
  static async start(o: GajimOptions): Promise<GajimClient> {
    const g = new GajimClient(o);
    try {
      await g.boot();
    } catch (err) {
      await g.stop();
      throw err;
    }
    return g;
  }

  private async boot(): Promise<void> {
    await mkdir(this.o.workDir, { recursive: true });
    await chmod(this.o.workDir, 0o755);
    // A leftover user of a killed run with the same name goes first.
    await run('userdel', ['-r', '-f', this.userName], { timeoutMs: 15_000 }).catch(() => '');
    await run(
      'useradd',
      ['-M', '-d', this.home, '-s', '/usr/sbin/nologin', '-K', 'MAIL_DIR=/dev/null', this.userName],
      {
        timeoutMs: 15_000,
      },
    );
    this.uid = Number((await run('id', ['-u', this.userName], { timeoutMs: 5000 })).trim());
    for (const sub of ['', 'data', 'config', 'cache', 'run'])
      await mkdir(join(this.home, sub), { recursive: true, mode: 0o700 });
    // A copy in the user's home: the checkout may sit in a directory only root can enter (mktemp -d).
    const accountScript = join(this.home, 'gajim-account.py');
    await copyFile(join(this.o.repoRoot, 'scripts', 'gajim-account.py'), accountScript);
    await run('chown', ['-R', `${this.userName}:`, this.home], { timeoutMs: 10_000 });
    const x = await startXvfb(15_000);
    this.xvfb = x.proc;
    this.display = x.display;
    // The account, with Gajim's own settings code, as the user Gajim runs as.
    const [c, a] = this.asUser('/usr/bin/python3', [
      accountScript,
      this.o.jid,
      this.o.password,
      this.o.host,
      String(this.o.port),
      this.resource,
    ]);
    await run(c, a, { timeoutMs: 60_000 });
    const inner = `echo $$ > "$XR_GAJIM_PID"; echo "$DBUS_SESSION_BUS_ADDRESS" > "$XR_GAJIM_BUS"; exec gajim`;
    const log = openSync(this.logFile, 'a');
    try {
      const [cmd, args] = this.asUser('dbus-run-session', ['--', 'sh', '-c', inner], {
        XR_GAJIM_PID: this.pidFile,
        XR_GAJIM_BUS: this.busFile,
      });
      this.session = spawn(cmd, args, { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    await this.until(async () => /^\d+$/.test((await readFile(this.pidFile, 'utf8')).trim()), 30_000, 'Gajim to start');
    this.gajimPid = Number((await readFile(this.pidFile, 'utf8')).trim());
  }

  /** Activates one of Gajim's GApplication actions on its session bus (org.gtk.Actions.Activate). */
  async action(name: string, parameter: string): Promise<void> {
    const bus = (await readFile(this.busFile, 'utf8')).trim();
    const [c, a] = this.asUser(
      'gdbus',
      [
        'call',
        '--session',
        '--dest',
        'org.gajim.Gajim',
        '--object-path',
        '/org/gajim/Gajim',
        '--method',
        'org.gtk.Actions.Activate',
        name,
        parameter,
        '{}',
      ],
      { DBUS_SESSION_BUS_ADDRESS: bus },
    );
    await run(c, a, { timeoutMs: 20_000 });
  }

  /** Files in Gajim's download dir (none when it does not exist yet). */
  async downloads(): Promise<string[]> {
    return readdir(this.downloadDir).catch(() => []);
  }

  /** Processes of the throw-away user (Gajim's helpers, its bus daemon). */
  private leftovers(): number[] {
    if (this.uid === undefined) return [];
    const out: number[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      try {
        const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'));
        if (m && Number(m[1]) === this.uid) out.push(Number(name));
      } catch {
        // gone
      }
    }
    return out;
  }

  /** Stops Gajim, its session bus and Xvfb, each by pid, and removes the user. */
  async stop(): Promise<void> {
    await stopPid(this.gajimPid, 10_000);
    this.gajimPid = undefined;
    const s = this.session?.pid;
    const deadline = Date.now() + 5_000;
    while (alive(s) && Date.now() < deadline) await sleep(100);
    await stopPid(s, 5_000);
    this.session = undefined;
    for (const pid of this.leftovers()) await stopPid(pid, 5_000);
    await stopPid(this.xvfb?.pid, 5_000);
    this.xvfb = undefined;
    if (this.uid !== undefined) {
      await run('userdel', ['-f', this.userName], { timeoutMs: 15_000 }).catch(() => '');
      this.uid = undefined;
    }
  }
}
