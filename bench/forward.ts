// The HTTP source's floor, done by hand (bench/raw-forwarder.ts, and bench/http-path.ts mode fwd):
// a report taken from the intranet on a bare socket and handed on, with no XMPP, no spool and no
// HTTP client.
import { connect, type Socket } from 'node:net';

const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * GETs `target` (http:) on a bare socket and writes the body's bytes to `out` as they come: every
 * read into one reused 1 MiB buffer, reading stopped while the kernel has not taken the last write,
 * so the buffer is never overwritten under a write. Ends `out` after the last byte; destroys both
 * on an error, or on a response that is not a 200 framed by Content-Length.
 */
export function forwardGet(target: URL, out: Socket): void {
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
