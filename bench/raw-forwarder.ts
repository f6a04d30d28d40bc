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
import { connect, createServer, type Socket } from 'node:net';

const url = process.argv[2] ? new URL(process.argv[2]) : undefined;
if (!url || url.protocol !== 'http:') {
  process.stderr.write('usage: raw-forwarder http://HOST:PORT/PATH\n');
  process.exit(2);
}
const target = url;
const HEAD_END = Buffer.from('\r\n\r\n');

function forward(out: Socket): void {
  const buf = Buffer.allocUnsafe(1 << 20);
  let left = -1; // body bytes still to come; -1 until the head is read
  let head = Buffer.alloc(0);
  const fail = () => {
    out.destroy();
    src.destroy();
  };
  // a write the kernel did not take at once: reading waits for it
  const send = (bytes: Buffer): boolean => {
    left -= bytes.length;
    out.write(bytes, (err) => {
      if (err) return fail();
      if (left === 0) out.end();
      else if (src.isPaused()) src.resume();
    });
    return out.writableLength === 0;
  };
  const src = connect({
    host: target.hostname,
    port: Number(target.port || 80),
    noDelay: true,
    onread: {
      buffer: buf,
      callback: (n: number, b: Uint8Array) => {
        let bytes = (b as Buffer).subarray(0, n);
        if (left < 0) {
          head = Buffer.concat([head, bytes]); // only until the head is complete
          const i = head.indexOf(HEAD_END);
          if (i < 0) return true;
          const m = /\r\ncontent-length:\s*(\d+)/i.exec(head.subarray(0, i).toString('latin1'));
          if (!m || !head.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 200')) {
            fail();
            return false;
          }
          left = Number(m[1]);
          bytes = head.subarray(i + 4);
          if (bytes.length === 0) return true;
        }
        if (send(bytes)) return true;
        src.pause();
        return false;
      },
    },
  });
  src.on('connect', () =>
    src.write(`GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`),
  );
  src.on('error', fail);
  src.on('end', () => {
    if (left !== 0) fail();
  });
  out.on('error', fail);
}

const server = createServer({ noDelay: true }, forward);
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
