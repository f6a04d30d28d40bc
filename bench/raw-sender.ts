// Raw loopback TCP baseline, sender side: a plain TCP server that writes one
// file to every connection and closes it. No XMPP, no SOCKS5, no spool: what
// a Node process moves from a (page-cached) file into a loopback socket, done
// the fastest way we know: 1 MiB reads into two reused buffers, one read while
// the socket takes the other (a new buffer per read is slower: the garbage
// collector then runs during the transfer).
//
// Usage: node dist/bench/raw-sender.js FILE [--memory]
//   --memory: read the file once into memory and write slices of it instead
//   (the pure TCP limit, without file reads).
// Prints {"event":"listening","port":N} on stdout; SIGTERM or EOF on stdin ends it.
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: raw-sender FILE [--memory]\n');
  process.exit(2);
}
const memory = process.argv.includes('--memory') ? readFileSync(file) : undefined;
const CHUNK = 1 << 20;

const write = (sock: Socket, b: Buffer) =>
  new Promise<void>((resolve, reject) => sock.write(b, (err) => (err ? reject(err) : resolve())));

async function sendFile(sock: Socket, path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const slots = [0, 1].map(() => ({ buf: Buffer.allocUnsafe(CHUNK), written: Promise.resolve() }));
    let pos = 0;
    for (let i = 0; ; i ^= 1) {
      const slot = slots[i];
      await slot.written;
      const { bytesRead } = await fh.read(slot.buf, 0, CHUNK, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      slot.written = write(sock, slot.buf.subarray(0, bytesRead));
      slot.written.catch(() => {});
    }
    await Promise.all(slots.map((s) => s.written));
  } finally {
    await fh.close();
  }
}

async function sendMemory(sock: Socket, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += CHUNK) {
    if (!sock.write(data.subarray(off, Math.min(off + CHUNK, data.length))))
      await new Promise((r) => sock.once('drain', r));
  }
}

const server = createServer({ noDelay: true }, (sock) => {
  sock.on('error', () => {});
  (memory ? sendMemory(sock, memory) : sendFile(sock, file)).then(
    () => sock.end(),
    () => sock.destroy(),
  );
});
server.listen({ host: '127.0.0.1', port: 0, backlog: 511 }, () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ event: 'listening', port: typeof a === 'object' && a ? a.port : 0 }) + '\n');
});
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
