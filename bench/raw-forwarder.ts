// The HTTP source's floor, sender side: a plain TCP server that, for every
// connection, GETs one URL from the intranet on a bare socket and writes the
// body's bytes to the connection as they come. No XMPP, no SOCKS5, no spool, no
// HTTP client: what a Node process must spend to take a report from the
// intranet and hand it on, done the cheapest way we know (every read into one
// reused 1 MiB buffer; reading stops while the kernel has not taken the last
// write, so the buffer is never overwritten under a write).
//
// Usage: node dist/bench/raw-forwarder.js URL   (http: only; the response must frame its body by Content-Length)
// Prints {"event":"listening","port":N} on stdout; SIGTERM or EOF on stdin ends it.
import { createServer } from 'node:net';
import { forwardGet } from './forward.js';

const url = process.argv[2] ? new URL(process.argv[2]) : undefined;
if (!url || url.protocol !== 'http:') {
  process.stderr.write('usage: raw-forwarder http://HOST:PORT/PATH\n');
  process.exit(2);
}
const target = url;
const server = createServer({ noDelay: true }, (out) => forwardGet(target, out));
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ event: 'listening', port: typeof a === 'object' && a ? a.port : 0 }) + '\n');
});
const stop = () => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
