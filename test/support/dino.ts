/**
 * A real Dino 0.4.2 (Debian `dino-im`) as a receiving client for integration
 * tests, driven headless (see shared notes, "Dino 0.4.2"):
 *
 * - Xvfb (its own display, chosen with -displayfd), GTK4 with the cairo renderer,
 *   under dbus-run-session, HOME and XDG dirs in a private work dir;
 * - run inside `unshare -m` with a CA bundle that includes the test CA
 *   bind-mounted over /etc/ssl/certs/ca-certificates.crt, so Dino trusts the test
 *   ejabberd's STARTTLS certificate and nothing on the system changes;
 * - the account is one row of its sqlite dino.db, inserted after a first start
 *   has created the schema; Dino always connects to localhost:5222;
 * - `dino-im 'xmpp:JID?message'` (on Dino's own session bus) opens a chat, xdotool
 *   types into it; received files land in $XDG_DATA_HOME/dino/files/<hex>_<name>;
 * - --print-xmpp=all logs its XMPP traffic to stderr (kept in dino.log).
 *
 * Every process is started and stopped by pid; every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { alive, run, sleep, startXvfb, stopPid } from './x11.js';

/** Installs dino-im, xvfb, xdotool, dbus, sqlite3, openssl… when missing (scripts/desktop-deps.sh dino). */
export async function ensureDinoDeps(repoRoot: string, timeoutMs = 15 * 60_000): Promise<void> {
  await run('bash', [join(repoRoot, 'scripts', 'desktop-deps.sh'), 'dino'], { timeoutMs });
}

// The test CA moved to ./tls.js (the TLS component link uses it too); re-exported for the Dino test.
export { makeTestCa, type TestCa } from './tls.js';

export interface DinoOptions {
  /** private dir for HOME, XDG dirs, logs */
  workDir: string;
  /** bare JID of the account, e.g. dave@localhost */
  jid: string;
  password: string;
  resource?: string;
  /** CA bundle Dino should trust (TestCa.bundle) */
  caBundle: string;
  startTimeoutMs?: number;
}

export class DinoClient {
  private xvfb: ChildProcess | undefined;
  private display = '';
  private session: ChildProcess | undefined; // unshare → dbus-run-session
  private dinoPid: number | undefined;
  private readonly home: string;
  readonly logFile: string;

  private constructor(private readonly o: DinoOptions) {
    this.home = join(o.workDir, 'home');
    this.logFile = join(o.workDir, 'dino.log');
  }

  get dataDir(): string {
    return join(this.home, 'data');
  }

  get filesDir(): string {
    return join(this.dataDir, 'dino', 'files');
  }

  get fullJid(): string {
    return `${this.o.jid}/${this.o.resource ?? 'dino'}`;
  }

  private env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C.UTF-8',
      HOME: this.home,
      XDG_DATA_HOME: this.dataDir,
      XDG_CONFIG_HOME: join(this.home, 'config'),
      XDG_CACHE_HOME: join(this.home, 'cache'),
      XDG_RUNTIME_DIR: join(this.home, 'run'),
      DISPLAY: this.display,
      GSK_RENDERER: 'cairo',
      NO_AT_BRIDGE: '1',
      GTK_A11Y: 'none',
    };
  }

  /** Starts Xvfb and Dino, creates the account, and resolves once Dino is logged in. */
  static async start(o: DinoOptions): Promise<DinoClient> {
    const d = new DinoClient(o);
    try {
      await d.boot();
    } catch (err) {
      await d.stop();
      throw err;
    }
    return d;
  }

  private async boot(): Promise<void> {
    const limit = this.o.startTimeoutMs ?? 60_000;
    for (const sub of ['data', 'config', 'cache', 'run'])
      await mkdir(join(this.home, sub), { recursive: true, mode: 0o700 });
    const x = await startXvfb(15_000);
    this.xvfb = x.proc;
    this.display = x.display;
    const db = join(this.dataDir, 'dino', 'dino.db');
    if (!existsSync(db) || !(await this.hasAccount(db))) {
      // First start: Dino creates its schema; then the account row goes in.
      await this.launch();
      await this.until(
        async () =>
          existsSync(db) &&
          (await this.query(db, "select count(*) from sqlite_master where type='table' and name='account'")).trim() ===
            '1',
        limit,
        'Dino to create its database',
      );
      await sleep(500);
      await this.stopDino();
      const q = (s: string) => `'${s.replace(/'/g, "''")}'`;
      await this.query(
        db,
        `insert or replace into account(bare_jid, resourcepart, password, alias, enabled) values (${q(this.o.jid)}, ${q(this.o.resource ?? 'dino')}, ${q(this.o.password)}, 'test', 1)`,
      );
    }
    const from = await this.logSize();
    await this.launch();
    // Logged in: its initial presence went out.
    await this.until(
      async () => /XMPP OUT[^\n]*\n<\{jabber:client\}:presence/.test(await this.logSince(from)),
      limit,
      'Dino to log in (STARTTLS to localhost:5222)',
    );
  }

  private async hasAccount(db: string): Promise<boolean> {
    try {
      return (
        (
          await this.query(db, `select count(*) from account where bare_jid='${this.o.jid.replace(/'/g, "''")}'`)
        ).trim() === '1'
      );
    } catch {
      return false;
    }
  }

  private query(db: string, sql: string): Promise<string> {
    return run('sqlite3', [db, sql], { timeoutMs: 15_000 });
  }

  private async launch(): Promise<void> {
    const pidFile = join(this.o.workDir, 'dino.pid');
    const busFile = join(this.o.workDir, 'bus.addr');
    await writeFile(pidFile, '');
    // unshare -m: a private mount namespace (root; else also a user namespace), where
    // the CA bundle with the test CA is bound over the system one for Dino alone.
    const unshareArgs = process.getuid?.() === 0 ? ['-m'] : ['-r', '-m'];
    const inner = `echo $$ > "$XR_DINO_PID"; echo "$DBUS_SESSION_BUS_ADDRESS" > "$XR_DINO_BUS"; exec dino-im --print-xmpp=all`;
    const script = `mount --bind "$XR_DINO_CA" /etc/ssl/certs/ca-certificates.crt && exec dbus-run-session -- sh -c '${inner}'`;
    const log = openSync(this.logFile, 'a');
    try {
      this.session = spawn('unshare', [...unshareArgs, 'sh', '-c', script], {
        env: { ...this.env(), XR_DINO_CA: this.o.caBundle, XR_DINO_PID: pidFile, XR_DINO_BUS: busFile },
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    await this.until(async () => /^\d+$/.test((await readFile(pidFile, 'utf8')).trim()), 15_000, 'Dino to start');
    this.dinoPid = Number((await readFile(pidFile, 'utf8')).trim());
  }

  private async stopDino(): Promise<void> {
    await stopPid(this.dinoPid, 10_000);
    this.dinoPid = undefined;
    // dbus-run-session ends with its child and stops its bus daemon; give it the time to.
    const s = this.session?.pid;
    const deadline = Date.now() + 5_000;
    while (alive(s) && Date.now() < deadline) await sleep(100);
    await stopPid(s, 5_000);
    this.session = undefined;
    // Whatever is left of this Dino's session (its bus daemon if dbus-run-session was cut short), by pid.
    for (const pid of this.leftovers()) await stopPid(pid, 5_000);
  }

  /** Processes started for this Dino (they carry its XR_DINO_PID path in their environment). */
  private leftovers(): number[] {
    const mark = `XR_DINO_PID=${join(this.o.workDir, 'dino.pid')}`;
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

  private async until(pred: () => Promise<boolean>, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (await pred().catch(() => false)) return;
      if (this.session && !alive(this.session.pid) && what !== 'Dino to start')
        throw new Error(`Dino exited while waiting for ${what}; log tail:\n${(await this.logSince(0)).slice(-3000)}`);
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${ms} ms waiting for ${what}; log tail:\n${(await this.logSince(0).catch(() => '')).slice(-3000)}`,
        );
      await sleep(200);
    }
  }

  private async logSize(): Promise<number> {
    try {
      return (await stat(this.logFile)).size;
    } catch {
      return 0;
    }
  }

  /** Dino's stderr (its XMPP traffic) from a byte offset on. */
  async logSince(offset: number): Promise<string> {
    const buf = await readFile(this.logFile).catch(() => Buffer.alloc(0));
    return buf.subarray(offset).toString('utf8');
  }

  get logOffset(): Promise<number> {
    return this.logSize();
  }

  /** Opens (and creates) the conversation with a JID, as a click on an xmpp: link would. */
  async openChat(jid: string): Promise<void> {
    const bus = (await readFile(join(this.o.workDir, 'bus.addr'), 'utf8')).trim();
    await run('dino-im', [`xmpp:${jid}?message`], {
      env: { ...this.env(), DBUS_SESSION_BUS_ADDRESS: bus },
      timeoutMs: 20_000,
    });
    await sleep(1000);
  }

  /** Types a message into the open conversation and sends it (xdotool). */
  async sendMessage(text: string): Promise<void> {
    const env = this.env();
    const ids = (
      await run('xdotool', ['search', '--onlyvisible', '--class', 'dino'], { env, timeoutMs: 10_000 }).catch(() => '')
    )
      .split(/\s+/)
      .filter(Boolean);
    let geo = { x: 0, y: 0, w: 1200, h: 700 };
    for (const id of ids) {
      const out = await run('xdotool', ['getwindowgeometry', '--shell', id], { env, timeoutMs: 10_000 });
      const v = Object.fromEntries(
        out
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => l.split('=') as [string, string]),
      );
      const w = Number(v.WIDTH);
      const h = Number(v.HEIGHT);
      if (w > 200 && h > 200) {
        geo = { x: Number(v.X), y: Number(v.Y), w, h };
        break;
      }
    }
    // The chat entry runs along the bottom of the conversation pane (right of the 305 px chat list).
    const cx = Math.round(geo.x + 305 + (geo.w - 305) / 2);
    const cy = Math.round(geo.y + geo.h - 38);
    await run('xdotool', ['mousemove', String(cx), String(cy), 'click', '1'], { env, timeoutMs: 10_000 });
    await sleep(300);
    await run('xdotool', ['type', '--delay', '40', text], { env, timeoutMs: 30_000 });
    await run('xdotool', ['key', 'Return'], { env, timeoutMs: 10_000 });
  }

  /** A PNG of the screen (for debugging a failed run). */
  async screenshot(path: string): Promise<void> {
    await run('sh', ['-c', `xwd -root -silent | convert xwd:- "${path}"`], { env: this.env(), timeoutMs: 20_000 });
  }

  /** Names in Dino's download folder. */
  async files(): Promise<string[]> {
    return readdir(this.filesDir).catch(() => []);
  }

  /**
   * Waits for a new file (not in `before`) named <hex>_<name> to reach `size`
   * bytes; resolves with its path and SHA-256.
   */
  async waitForFile(
    name: string,
    size: number,
    before: readonly string[],
    timeoutMs: number,
  ): Promise<{ path: string; sha256: string }> {
    let found: string | undefined;
    await this.until(
      async () => {
        for (const f of await this.files()) {
          if (before.includes(f) || !f.endsWith('_' + name)) continue;
          const p = join(this.filesDir, f);
          if ((await stat(p)).size === size) {
            found = p;
            return true;
          }
        }
        return false;
      },
      timeoutMs,
      `${name} (${size} bytes) in ${this.filesDir}`,
    );
    const sha256 = createHash('sha256')
      .update(await readFile(found!))
      .digest('hex');
    return { path: found!, sha256 };
  }

  /** Waits for a pattern in Dino's XMPP log (from an offset on). */
  async waitForLog(pattern: RegExp, from: number, timeoutMs: number, what: string): Promise<string> {
    let text = '';
    await this.until(
      async () => {
        text = await this.logSince(from);
        return pattern.test(text);
      },
      timeoutMs,
      what,
    );
    return text;
  }

  /** Stops Dino, its session bus and Xvfb, each by pid. */
  async stop(): Promise<void> {
    await this.stopDino();
    await stopPid(this.xvfb?.pid, 5_000);
    this.xvfb = undefined;
  }
}
