/**
 * What the headless real-client drivers (Dino, Psi, Gajim) share: bounded
 * command runs, pid checks and stops, an Xvfb on a display it picks itself,
 * and (DesktopClient) finding, focusing and typing into windows by xdotool.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs a command (bounded); resolves with its stdout, rejects with the tail of its stderr. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs: number; input?: string },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs, maxBuffer: 16 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-2000)}`));
        else resolve(stdout);
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Whether a pid is a live (not zombie) process. */
export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** TERM, wait up to ms, then KILL; by pid only. */
export async function stopPid(pid: number | undefined, ms: number): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid!, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) await sleep(100);
  if (alive(pid)) {
    try {
      process.kill(pid!, 'SIGKILL');
    } catch {
      // gone
    }
    const d2 = Date.now() + 5000;
    while (alive(pid) && Date.now() < d2) await sleep(100);
  }
}

/** Starts Xvfb on a display it picks itself; resolves with the display and the process. */
export async function startXvfb(timeoutMs: number): Promise<{ display: string; proc: ChildProcess }> {
  const proc = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
  const display = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`Xvfb gave no display within ${timeoutMs} ms: ${err}`)), timeoutMs);
    (proc.stdio[3] as NodeJS.ReadableStream).on('data', (c: Buffer) => {
      out += c.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(':' + m[1]);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Xvfb exited (${code}): ${err}`));
    });
  });
  return { display, proc };
}

/**
 * A desktop client on its own Xvfb display, driven by xdotool. There is no
 * window manager: a window gets the keyboard by XSetInputFocus (windowfocus).
 */
export abstract class DesktopClient {
  protected display = '';
  /** the process tree the client runs in (e.g. dbus-run-session) */
  protected session: ChildProcess | undefined;
  /** the client's name in messages, e.g. "Psi" */
  protected abstract readonly appName: string;
  abstract readonly logFile: string;

  /** The client's stdout and stderr. */
  async log(): Promise<string> {
    return readFile(this.logFile, 'utf8').catch(() => '');
  }

  /** Waits (bounded) for pred; fails at once, with the log's tail, when the client exits. */
  protected async until(pred: () => Promise<boolean>, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (await pred().catch(() => false)) return;
      if (this.session && !alive(this.session.pid))
        throw new Error(
          `${this.appName} exited while waiting for ${what}; log tail:\n${(await this.log()).slice(-3000)}`,
        );
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${ms} ms waiting for ${what}; ${this.appName}'s log tail:\n${(await this.log()).slice(-3000)}`,
        );
      await sleep(250);
    }
  }

  protected xdo(args: string[], timeoutMs = 10_000): Promise<string> {
    return run('xdotool', args, { env: { ...process.env, DISPLAY: this.display }, timeoutMs });
  }

  /** Visible windows whose name matches (xdotool search --onlyvisible --name). */
  async windows(name: string): Promise<string[]> {
    const out = await this.xdo(['search', '--onlyvisible', '--name', name]).catch(() => '');
    return out.split(/\s+/).filter(Boolean);
  }

  /** Names of all visible windows (for failure messages). */
  async windowNames(): Promise<string[]> {
    const names: string[] = [];
    for (const id of await this.windows('.')) {
      const n = (await this.xdo(['getwindowname', id]).catch(() => '')).trim();
      if (n) names.push(n);
    }
    return names;
  }

  /** Waits (bounded) for a visible window whose name matches; resolves with its id. */
  async waitForWindow(name: string, timeoutMs: number): Promise<string> {
    let id = '';
    await this.until(
      async () => {
        [id = ''] = await this.windows(name);
        return id !== '';
      },
      timeoutMs,
      `a window named /${name}/`,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\nvisible windows: ${JSON.stringify(await this.windowNames())}`);
    });
    return id;
  }

  private async focus(id: string): Promise<void> {
    await this.xdo(['windowraise', id]);
    await this.xdo(['windowfocus', '--sync', id]);
    await sleep(200);
  }

  /** Gives a window the keyboard focus and sends keys to it. */
  async keys(id: string, ...keys: string[]): Promise<void> {
    await this.focus(id);
    for (const k of keys) {
      await this.xdo(['key', '--clearmodifiers', k]);
      await sleep(150);
    }
  }

  /** Types text into a window (focused first). */
  async type(id: string, text: string): Promise<void> {
    await this.focus(id);
    await this.xdo(['type', '--delay', '30', text], 30_000);
  }

  /** A PNG of the screen (for debugging a failed run): imagemagick's import, else xwd. */
  async screenshot(path: string): Promise<void> {
    await run('sh', ['-c', `import -window root "$1" 2>/dev/null || xwd -root -silent -out "$1.xwd"`, 'sh', path], {
      env: { ...process.env, DISPLAY: this.display },
      timeoutMs: 20_000,
    });
  }
}
