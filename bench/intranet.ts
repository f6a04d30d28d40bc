// The stand-in intranet: an HTTP server of its own (as a real intranet is),
// serving /projects/<id>/status.pdf from the file that DIR/<encoded id>
// links to, so the bench process's own work (reading every component's log
// lines) never delays an answer.
//
// Usage: node dist/bench/intranet.js DIR
// Prints {"event":"listening","port":N} on stdout; SIGTERM or EOF on stdin ends it.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: intranet DIR\n');
  process.exit(2);
}
const server = createServer((req, res) => {
  const m = /^\/projects\/([^/]+)\/status\.pdf$/.exec(req.url ?? '');
  let size = -1;
  let path = '';
  try {
    // the file is named by the id as encodeURIComponent writes it, whichever escaping the request used
    if (m) path = join(dir, encodeURIComponent(decodeURIComponent(m[1])));
    if (m) size = statSync(path).size; // follows the link
  } catch {
    size = -1;
  }
  if (size < 0) return void res.writeHead(404).end('not found');
  res.writeHead(200, { 'content-type': 'application/pdf', 'content-length': size });
  createReadStream(path).pipe(res);
});
// Apache httpd's default KeepAliveTimeout (5 s); Node's HTTP agent does not reuse a connection whose
// server announced timeout=1, which would give every request a new TCP connection.
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ event: 'listening', port: (server.address() as AddressInfo).port }) + '\n');
});
const stop = () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
