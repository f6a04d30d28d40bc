/**
 * A real Profanity (Debian `profanity`, 0.13.1 on bookworm) as a chat client
 * for integration tests, driven headless in tmux:
 *
 * - its own tmux server (`tmux -L <unique socket>`, no tmux config, the socket
 *   under a private TMUX_TMPDIR), one 200×50 session running Profanity;
 * - HOME and the XDG dirs in a private work dir, so nothing of the machine's
 *   Profanity or tmux configuration is read or written;
 * - keys go in with `send-keys -l` (literal text) and then Enter; the screen is
 *   read with `capture-pane -p`; every wait polls the screen and is bounded;
 * - stop() kills its own tmux server (kill-server on its own socket), then the
 *   server's and Profanity's pids if they are still alive. Nothing is killed by name.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 4 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** TERM, wait up to ms, then KILL; by pid only. */
async function stopPid(pid: number | undefined, ms: number): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid!, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) await sleep(100);
  if (!alive(pid)) return;
  try {
    process.kill(pid!, 'SIGKILL');
  } catch {
    return;
  }
  const d2 = Date.now() + 5000;
  while (alive(pid) && Date.now() < d2) await sleep(100);
}

/** Where a program is on PATH, or undefined. */
export async function which(program: string): Promise<string | undefined> {
  try {
    return (await run('sh', ['-c', 'command -v "$1"', 'sh', program], process.env, 10_000)).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Throws, saying how to install them, when profanity or tmux is not on PATH. */
export async function requireProfanityTools(): Promise<void> {
  const missing: string[] = [];
  for (const p of ['profanity', 'tmux']) if (!(await which(p))) missing.push(p);
  if (missing.length > 0)
    throw new Error(
      `${missing.join(' and ')} not found on PATH: the Profanity test needs the Debian packages ` +
        `${missing.join(' and ')} (bash scripts/deps.sh test installs them)`,
    );
}

let socketCounter = 0;

export class ProfanityClient {
  /** last screen read by capture(), for failure messages */
  lastScreen = '';
  private serverPid: number | undefined;
  private panePid: number | undefined;

  private constructor(
    readonly workDir: string,
    private readonly socket: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Starts Profanity in a fresh tmux server with HOME and XDG dirs under workDir, and waits for its first screen. */
  static async start(workDir: string, timeoutMs = 20_000): Promise<ProfanityClient> {
    const home = join(workDir, 'home');
    const dirs = {
      XDG_CONFIG_HOME: join(home, '.config'),
      XDG_DATA_HOME: join(home, '.local', 'share'),
      XDG_CACHE_HOME: join(home, '.cache'),
      XDG_STATE_HOME: join(home, '.local', 'state'),
      XDG_RUNTIME_DIR: join(workDir, 'run'),
      TMUX_TMPDIR: join(workDir, 'tmux'),
    };
    for (const d of Object.values(dirs)) await mkdir(d, { recursive: true, mode: 0o700 });
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      TERM: 'xterm-256color',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      TZ: 'UTC',
      ...dirs,
    };
    const socket = `xrprof-${process.pid}-${++socketCounter}`;
    const c = new ProfanityClient(workDir, socket, env);
    await c.tmux(['-f', '/dev/null', 'new-session', '-d', '-x', '200', '-y', '50', '-s', 'prof', 'profanity']);
    try {
      const [serverPid, panePid] = (await c.tmux(['display', '-p', '-t', 'prof', '#{pid} #{pane_pid}']))
        .trim()
        .split(' ')
        .map(Number);
      c.serverPid = serverPid;
      c.panePid = panePid;
      await c.waitForScreen(/Type '\/help' to show complete help|\[offline\]/, timeoutMs, 'Profanity to start');
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  private tmux(args: string[]): Promise<string> {
    return run('tmux', ['-L', this.socket, ...args], this.env, 10_000);
  }

  /** Types text literally, then presses Enter. */
  async type(text: string): Promise<void> {
    await this.tmux(['send-keys', '-t', 'prof', '-l', text]);
    await this.tmux(['send-keys', '-t', 'prof', 'Enter']);
  }

  /** The visible screen as text, one line per row, trailing blanks trimmed. */
  async capture(): Promise<string> {
    const raw = await this.tmux(['capture-pane', '-p', '-t', 'prof']);
    this.lastScreen = raw
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n');
    return this.lastScreen;
  }

  /**
   * Polls the screen until it matches; the screen is matched as shown and, for
   * wrapped lines, with every run of whitespace (line breaks and the indent of
   * continuation lines included) collapsed to one space. Returns the match.
   */
  async waitForScreen(pattern: RegExp | string, timeoutMs: number, what: string): Promise<RegExpMatchArray> {
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const screen = await this.capture();
      const m = re.exec(screen) ?? re.exec(collapse(screen));
      if (m) return m;
      if (Date.now() > deadline)
        throw new Error(`waited ${timeoutMs} ms for ${what} (${String(re)}) on Profanity's screen:\n${screen}`);
      await sleep(200);
    }
  }

  /** /connect over plain TCP (no TLS) and types the password at Profanity's prompt. */
  async connect(jid: string, password: string, host: string, port: number, timeoutMs = 30_000): Promise<void> {
    await this.type(`/connect ${jid} server ${host} port ${port} tls disable`);
    await this.waitForScreen('Enter password:', timeoutMs, 'the password prompt');
    await this.type(password);
    await this.waitForScreen(
      new RegExp(`${jid.replace(/[.]/g, '\\.')}/\\S+ logged in successfully`),
      timeoutMs,
      'the login',
    );
  }

  /** Opens (and switches to) the chat window with jid and sends text there. */
  async msg(jid: string, text: string): Promise<void> {
    await this.type(`/msg ${jid} ${text}`);
  }

  /** Writes the last screen read to file (for a look after a failure); returns the path. */
  async saveScreen(file: string): Promise<string> {
    try {
      await this.capture();
    } catch {
      // tmux already gone: the last screen read is saved
    }
    await writeFile(file, this.lastScreen);
    return file;
  }

  /** Profanity's own log file. */
  get logFile(): string {
    return join(this.workDir, 'home', '.local', 'share', 'profanity', 'logs', 'profanity.log');
  }

  /** Stops its own tmux server (and with it Profanity); by socket, then by pid. Fine to call twice. */
  async stop(): Promise<void> {
    try {
      await this.tmux(['kill-server']);
    } catch {
      // already gone
    }
    await stopPid(this.panePid, 3000);
    await stopPid(this.serverPid, 3000);
  }
}

function collapse(s: string): string {
  return s.replace(/\s+/g, ' ');
}
