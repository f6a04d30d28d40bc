// The stand-in intranet (./report-server.ts) as a process of its own, for a
// network-lab host: `node report-server-main.js HOST PORT`. Prints
// {"listening":PORT} once it listens; reads one JSON command a line on stdin:
// {"project":"123","file":"/path"} serves that file as the project's report.
// EOF on stdin, SIGTERM and SIGINT stop it.
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { ReportServer } from './report-server.js';

async function main(): Promise<void> {
  const [host = '0.0.0.0', port = '0'] = process.argv.slice(2);
  const srv = await new ReportServer().start(host, Number(port));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await srv.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    void (async () => {
      try {
        const c = JSON.parse(line) as { project?: unknown; file?: unknown };
        if (typeof c.project !== 'string' || typeof c.file !== 'string') throw new Error('expected {project, file}');
        srv.projects.set(c.project, { kind: 'file', body: await readFile(c.file) });
        process.stdout.write(`${JSON.stringify({ set: c.project })}\n`);
      } catch (err) {
        process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
      }
    })();
  });
  lines.on('close', () => void stop());
  process.stdout.write(`${JSON.stringify({ listening: srv.port })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`report server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
