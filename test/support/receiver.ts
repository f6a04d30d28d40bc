/**
 * A receiving XMPP client, run as a child process, that integration tests
 * drive through a small line protocol. Implemented by the libpurple client
 * (test/clients/purple-receiver.c, see ./purple.ts) and by the slixmpp one.
 *
 * The child prints one JSON object per line on stdout, each with an `event`
 * ("online", "message", "offer", "received", "failed", "vanishing", "error",
 * ...), and reads one JSON command per line on stdin ({"cmd":"send",...},
 * {"cmd":"subscribe",...}, {"cmd":"quit"}); EOF on stdin and SIGTERM also
 * mean quit.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

export type ReceiverEvent = { event: string; [k: string]: unknown };

/** A field of a receiver event as text ('' when absent). */
export function field(e: ReceiverEvent, key: string): string {
  const v = e[key];
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** What every receiving client (libpurple, slixmpp) is started with: the line protocol's shared options. */
export interface CommonReceiverOptions {
  /** Full JID with resource, e.g. alice@example.com/purple. */
  jid: string;
  password: string;
  /** c2s host and port of the test ejabberd (plain TCP, no STARTTLS). */
  host: string;
  port: number;
  /** Where accepted files are written (created if missing). */
  outDir: string;
  /** Decline every file offer (the sender gets <forbidden/> "Offer Declined"). */
  decline?: boolean;
  /** Vanish (no sign-off, exit code 4) once a transfer has this many bytes. */
  disconnectAfterBytes?: number;
  /** Hard cap on the process's life in seconds (default 120; then exit 3). */
  timeoutSec?: number;
  /** The client's debug log (including the XMPP traffic) on stderr. */
  debug?: boolean;
  /** How long to wait for the `online` event (default 30 000 ms). */
  startTimeoutMs?: number;
  onEvent?: (e: ReceiverEvent) => void;
  /** Run the client inside this network namespace (a network-lab host, test/support/netlab.ts). */
  netns?: string;
}

/** cmd and args, run inside `netns` when given (`ip netns exec` execs: the pid stays the client's). */
export function inNetns(netns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args];
}

/** The command-line arguments of the shared options, the same for every receiving client. */
export function commonReceiverArgs(opts: CommonReceiverOptions): string[] {
  const args = [
    '--jid',
    opts.jid,
    '--password',
    opts.password,
    '--host',
    opts.host,
    '--port',
    String(opts.port),
    '--out',
    opts.outDir,
    '--timeout',
    String(opts.timeoutSec ?? 120),
  ];
  if (opts.decline === true) args.push('--decline');
  if (opts.disconnectAfterBytes !== undefined) args.push('--disconnect-after-bytes', String(opts.disconnectAfterBytes));
  if (opts.debug === true) args.push('--debug');
  return args;
}

export interface ReceiverStartOptions {
  /** Label used in error messages (default: the command's base name). */
  name?: string;
  /** How long to wait for the `online` event (default 30 000 ms). */
  startTimeoutMs?: number;
  /** Which event means "ready" (default: `event === 'online'`). */
  ready?: (e: ReceiverEvent) => boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called for every event as it arrives (e.g. to log in a test). */
  onEvent?: (e: ReceiverEvent) => void;
  /** How much of stderr to keep for error messages (default 16 KiB). */
  stderrTailBytes?: number;
}

interface Waiter {
  pred: (e: ReceiverEvent) => boolean;
  resolve: (e: ReceiverEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  description: string;
}

function isReceiverEvent(v: unknown): v is ReceiverEvent {
  return (
    typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as { event?: unknown }).event === 'string'
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class ReceiverProcess {
  /** Every event printed so far, in order. */
  readonly events: ReceiverEvent[] = [];
  /** Resolves with the exit code (null when ended by a signal) once the
   *  process has exited and its output has been read completely. */
  readonly exited: Promise<number | null>;
  readonly name: string;

  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiters = new Set<Waiter>();
  private readonly stderrTailBytes: number;
  private stderrTail = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private spawnError: Error | undefined;

  private static readonly live = new Set<ReceiverProcess>();

  /**
   * Spawns the receiver and waits (bounded) for its `online` event. Rejects
   * with the events seen and the stderr tail when it exits first or the
   * timeout passes; the process is stopped in that case.
   */
  static async start(cmd: string, args: string[], opts: ReceiverStartOptions = {}): Promise<ReceiverProcess> {
    const rp = new ReceiverProcess(cmd, args, opts);
    const ready = opts.ready ?? ((e: ReceiverEvent) => e.event === 'online');
    try {
      await rp.waitFor(ready, opts.startTimeoutMs ?? 30_000);
    } catch (err) {
      await rp.kill();
      const msg = err instanceof Error ? err.message : String(err);
      throw new Error(`${rp.name} did not come online: ${msg}`);
    }
    return rp;
  }

  /** Stops every receiver still running (for mocha `after` hooks). */
  static async stopAll(): Promise<void> {
    await Promise.all([...ReceiverProcess.live].map((rp) => rp.quit()));
  }

  private constructor(cmd: string, args: string[], opts: ReceiverStartOptions) {
    this.name = opts.name ?? cmd.split('/').pop() ?? cmd;
    this.stderrTailBytes = opts.stderrTailBytes ?? 16 * 1024;
    this.child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    ReceiverProcess.live.add(this);

    // Writing to a child that has gone away must not crash the test run.
    this.child.stdin.on('error', () => undefined);

    const lines = createInterface({ input: this.child.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => this.onLine(line, opts.onEvent));

    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => this.appendStderr(chunk));

    this.exited = new Promise<number | null>((resolve) => {
      this.child.once('error', (err) => {
        // spawn failure (ENOENT, EACCES): there will be no 'close' with a code
        this.spawnError = err;
        if (this.child.pid === undefined) {
          this.exitInfo = { code: null, signal: null };
          this.settleExit();
          resolve(null);
        }
      });
      // 'close' comes after 'exit' and after stdout/stderr have ended, so
      // every event line has been handled when it fires.
      this.child.once('close', (code, signal) => {
        this.exitInfo = { code, signal };
        this.settleExit();
        resolve(code);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Exit code, null (signal), or undefined while still running. */
  get exitCode(): number | null | undefined {
    return this.exitInfo?.code;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** The last bytes the process wrote to stderr. */
  get stderr(): string {
    return this.stderrTail;
  }

  /**
   * Resolves with the first event, past or future, that matches `pred`.
   * Rejects on timeout or when the process exits first, with a message that
   * lists the events seen and the stderr tail.
   */
  waitFor(pred: (e: ReceiverEvent) => boolean, timeoutMs: number): Promise<ReceiverEvent> {
    const past = this.events.find(pred);
    if (past !== undefined) return Promise.resolve(past);
    if (!this.running) {
      return Promise.reject(new Error(this.describe(`exited (${this.exitText()}) before the awaited event`)));
    }
    return new Promise<ReceiverEvent>((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        resolve,
        reject,
        description: pred.toString().slice(0, 200),
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new Error(this.describe(`timed out after ${timeoutMs} ms waiting for ${waiter.description}`)));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** Sends a chat message from the receiving user. */
  send(to: string, body: string): void {
    this.command({ cmd: 'send', to, body });
  }

  /** Adds `to` to the roster and asks for a subscription (if supported). */
  subscribe(to: string): void {
    this.command({ cmd: 'subscribe', to });
  }

  /** Writes one JSON command line to the process's stdin. */
  command(cmd: { cmd: string; [k: string]: unknown }): void {
    if (!this.running || this.child.stdin.destroyed || this.child.stdin.writableEnded) {
      throw new Error(this.describe(`cannot send ${cmd.cmd}: the process's stdin is closed`));
    }
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  /**
   * Asks the process to sign off (quit command, then EOF); after `graceMs`
   * sends SIGTERM to its pid, after another `graceMs` SIGKILL. Resolves with
   * the exit code (null when killed by a signal).
   */
  async quit(graceMs = 5_000): Promise<number | null> {
    if (this.running && !this.child.stdin.destroyed && !this.child.stdin.writableEnded) {
      this.child.stdin.write(`${JSON.stringify({ cmd: 'quit' })}\n`);
      this.child.stdin.end();
    }
    if (await this.exitedWithin(graceMs)) return this.exited;
    this.signal('SIGTERM');
    if (await this.exitedWithin(graceMs)) return this.exited;
    this.signal('SIGKILL');
    return this.exited;
  }

  /** Ends the process at once (SIGKILL by pid). */
  async kill(): Promise<number | null> {
    if (this.running) this.signal('SIGKILL');
    return this.exited;
  }

  private signal(sig: NodeJS.Signals): void {
    if (!this.running || this.child.pid === undefined) return;
    try {
      process.kill(this.child.pid, sig);
    } catch {
      // already gone
    }
  }

  private async exitedWithin(ms: number): Promise<boolean> {
    if (!this.running) return true;
    const timedOut = Symbol('timeout');
    const r = await Promise.race([this.exited, sleep(ms).then(() => timedOut)]);
    return r !== timedOut;
  }

  private onLine(line: string, onEvent: ((e: ReceiverEvent) => void) | undefined): void {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    if (!isReceiverEvent(parsed)) {
      this.appendStderr(`[stdout, not an event] ${line}\n`);
      return;
    }
    const e = parsed;
    this.events.push(e);
    onEvent?.(e);
    for (const w of [...this.waiters]) {
      let hit = false;
      try {
        hit = w.pred(e);
      } catch (err) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.reject(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (hit) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(e);
      }
    }
  }

  private appendStderr(chunk: string): void {
    this.stderrTail += chunk;
    if (this.stderrTail.length > this.stderrTailBytes) {
      this.stderrTail = this.stderrTail.slice(-this.stderrTailBytes);
    }
  }

  private settleExit(): void {
    ReceiverProcess.live.delete(this);
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      clearTimeout(w.timer);
      w.reject(new Error(this.describe(`exited (${this.exitText()}) while waiting for ${w.description}`)));
    }
  }

  private exitText(): string {
    if (this.spawnError !== undefined && this.exitInfo?.code == null && this.exitInfo?.signal == null) {
      return `spawn failed: ${this.spawnError.message}`;
    }
    if (this.exitInfo === undefined) return 'running';
    return this.exitInfo.signal !== null ? `signal ${this.exitInfo.signal}` : `code ${String(this.exitInfo.code)}`;
  }

  private describe(what: string): string {
    const shown = this.events.slice(-40).map((e) => {
      const s = JSON.stringify(e);
      return s.length > 400 ? `${s.slice(0, 400)}…` : s;
    });
    const skipped = this.events.length - shown.length;
    const eventsText =
      shown.length === 0
        ? '(none)'
        : `${skipped > 0 ? `(${skipped} earlier events not shown)\n` : ''}${shown.join('\n')}`;
    const stderrLines = this.stderrTail.trimEnd().split('\n').slice(-40).join('\n');
    return (
      `${this.name} (pid ${String(this.child.pid)}) ${what}\n` +
      `events seen:\n${eventsText}\n` +
      `stderr tail:\n${stderrLines === '' ? '(empty)' : stderrLines}`
    );
  }
}
