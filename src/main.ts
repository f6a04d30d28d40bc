#!/usr/bin/env -S node --max-semi-space-size=4
// (--max-semi-space-size=4, here and wherever the component is started: see
// README "Memory". V8's young generation otherwise grows to ~48 MB under an
// in-band transfer's stream of 87 KB base64 strings; with 4 MB semi-spaces a
// 1 GiB IBB transfer peaks at ~100 MB instead of ~150 MB, at the same speed.)
// Command line: load the config, start the component, stop on SIGTERM/SIGINT, reload the config on SIGHUP.
import { App } from './app.js';
import { ConfigError, SETTINGS, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { HandshakeRefused, ServerNotTrusted } from './xmpp/connection.js';

function usage(): string {
  const lines = ['Usage: xmpp-reports [--config FILE]', '', 'Settings (config file key / environment variable):'];
  for (const s of SETTINGS) lines.push(`  ${s.key.padEnd(34)} ${s.env.padEnd(32)} ${s.doc}`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  const i = argv.indexOf('--config');
  const file = i >= 0 ? argv[i + 1] : undefined;
  let config;
  try {
    config = loadConfig(file ? { file } : {});
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`xmpp-reports: configuration error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.log.level, undefined, config.log.format, config.log.preciseTime);
  let app: App;
  try {
    app = await App.create(config, log, { loadConfig: () => loadConfig(file ? { file } : {}) });
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'cannot start');
    return 1;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    void app.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // systemd's ExecReload: the same reload as the admins' ad-hoc command.
  process.on('SIGHUP', () => {
    app
      .reload()
      .catch((err: unknown) =>
        log.error({ err: (err as Error).message }, 'configuration not reloaded; the running one is unchanged'),
      );
  });
  process.on('unhandledRejection', (err) => log.error({ err: String(err) }, 'unhandled rejection'));
  try {
    await app.start();
  } catch (err) {
    if (!(err instanceof HandshakeRefused || err instanceof ServerNotTrusted)) throw err;
    // A refused handshake at start-up, or a server whose TLS certificate or name
    // does not verify, is a configuration error (logged with the server's words
    // or what it presented): exit 2, which systemd does not restart.
    process.stderr.write(`xmpp-reports: configuration error: ${err.message}\n`);
    await app.stop(0);
    return 2;
  }
  return -1; // keep running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`xmpp-reports: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
