// Structured logs with pino: one line per event that matters to an operator.
import { pino, type Logger } from 'pino';

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'xmpp-reports' },
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
    destination ?? process.stdout,
  );
}
