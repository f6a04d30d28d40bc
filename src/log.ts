// Structured logs with pino: one line per event that matters to an operator.
// JSON lines for systemd, CI and log shippers; on a terminal (the demo, a
// manual run) the same lines as plain text a person can read.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export type LogFormat = 'auto' | 'json' | 'pretty';

export function createLogger(
  level: string,
  destination?: NodeJS.WritableStream,
  format: LogFormat = 'json',
  preciseTime = false,
): Logger {
  const out = destination ?? process.stdout;
  const pretty = format === 'pretty' || (format === 'auto' && (out as { isTTY?: boolean }).isTTY === true);
  // JSON lines to our own stdout are written asynchronously (pino's SonicBoom, flushed on exit):
  // process.stdout to a pipe writes synchronously on Linux, and a log line's write() was then
  // on the path of every request (bench item 7 profile: ~2 ms of a 100 KiB request under load).
  const sink = destination || pretty || level === 'silent' ? undefined : pino.destination({ dest: 1, sync: false });
  return pino(
    {
      level,
      base: { service: 'xmpp-reports' },
      // Milliseconds with a microsecond fraction, for tracing one request's steps.
      ...(preciseTime ? { timestamp: () => `,"time":${(performance.timeOrigin + performance.now()).toFixed(3)}` } : {}),
      // Belt and braces: the config is logged redacted already; these keys never print.
      redact: {
        paths: [
          'secret',
          '*.secret',
          'password',
          '*.password',
          'authorization',
          '*.authorization',
          'authHeader',
          '*.authHeader',
        ],
        censor: '(hidden)',
      },
    },
    pretty ? prettyStream(out) : (sink ?? out),
  );
}

/**
 * Runs a log call once this turn of the event loop is over (setImmediate), for the lines on the
 * critical path of a small transfer: the stanza or request that follows the line in the code is then
 * written first. pino serializes a line synchronously, 70–90 µs with a child's bindings on the
 * bench's busy 2 cores (item 7: six such lines sat between the request and the last byte). The
 * line's time is when it is written; lines deferred this way keep their order among themselves.
 */
export function soon(line: () => void): void {
  setImmediate(line);
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const COLOURS: Record<number, string> = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[1;31m' };
const SKIP = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'service']);

/** One JSON log line as "12:00:01.234 INFO  message  key=value …". */
export function prettyLine(json: string, colour: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const level = typeof o.level === 'number' ? o.level : 30;
  const time = typeof o.time === 'number' ? new Date(o.time).toISOString().slice(11, 23) : '';
  const name = (LEVELS[level] ?? String(level)).padEnd(5);
  const fields = Object.entries(o)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  const head = colour && COLOURS[level] ? `${COLOURS[level]}${name}\x1b[0m` : name;
  return `${time} ${head} ${typeof o.msg === 'string' ? o.msg : ''}${fields ? `  ${fields}` : ''}`;
}

function prettyStream(out: NodeJS.WritableStream): Writable {
  const colour = (out as { isTTY?: boolean }).isTTY === true;
  let rest = '';
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      const lines = (rest + chunk.toString()).split('\n');
      rest = lines.pop() ?? '';
      out.write(lines.map((l) => prettyLine(l, colour) + '\n').join(''), () => cb());
    },
  });
}
