// The component's server link against a fake XEP-0114 server on loopback:
// what the real @xmpp/component does with a refused handshake, a server that
// goes away, and bytes its XML parser throws on.
import { expect } from 'chai';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/log.js';
import { Connection, HandshakeRefused } from '../../../src/xmpp/connection.js';

const DOMAIN = 'reports.example.com';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Script = 'accept' | { refuse: string; text?: string };

/** Answers each connection by its script (the last one repeats): accept the handshake, or refuse it with a stream error. */
class FakeServer {
  readonly sockets: Socket[] = [];
  handshakes = 0;
  private server!: Server;
  port = 0;

  constructor(private readonly scripts: Script[]) {}

  async start(): Promise<this> {
    this.server = createServer((s) => this.serve(s));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  private serve(s: Socket): void {
    const script = this.scripts[Math.min(this.sockets.length, this.scripts.length - 1)];
    this.sockets.push(s);
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('<stream:stream') && !buf.includes('<handshake')) {
        s.write(
          `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='${DOMAIN}' id='s${this.sockets.length}'>`,
        );
      }
      if (buf.includes('</handshake>')) {
        buf = '';
        if (script === 'accept') {
          this.handshakes++;
          s.write('<handshake/>');
        } else {
          const text = script.text ? `<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>${script.text}</text>` : '';
          s.end(
            `<stream:error><${script.refuse} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>${text}</stream:error></stream:stream>`,
          );
        }
      }
    });
  }

  /** Writes raw bytes into the newest connection. */
  feed(bytes: string): void {
    this.sockets.at(-1)!.write(bytes);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

async function until(what: string, ok: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('xmpp/connection against a fake XEP-0114 server', function () {
  this.timeout(30000);
  let server: FakeServer | undefined;
  let conn: Connection | undefined;
  afterEach(async () => {
    await conn?.stop();
    await server?.stop();
    conn = server = undefined;
  });

  const connect = (port: number, log: ReturnType<typeof createLogger>) =>
    new Connection({ service: `xmpp://127.0.0.1:${port}`, domain: DOMAIN, secret: 's', reconnectMaxMs: 1000 }, log);

  it('a refused handshake at start-up rejects start() with the server’s own words, and stops retrying', async () => {
    server = await new FakeServer([{ refuse: 'not-authorized', text: 'Invalid secret for this component' }]).start();
    const { log, lines } = capture();
    conn = connect(server.port, log);
    let err: unknown;
    await conn.start().catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(HandshakeRefused);
    expect((err as Error).message).to.equal(
      `the XMPP server refused the component ${DOMAIN} (not-authorized): the server said "Invalid secret for this component"`,
    );
    expect(lines.find((l) => l.level === 60)?.msg).to.equal((err as Error).message);
    await sleep(2500); // longer than the first retry's backoff
    expect(server.sockets).to.have.length(1);
  });

  it('guesses the cause only when the server gave no text', async () => {
    server = await new FakeServer([{ refuse: 'host-unknown' }]).start();
    conn = connect(server.port, capture().log);
    const err = await conn.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.match(/\(host-unknown\): the server does not know this component domain/);
  });

  it('survives bytes its XML parser throws on (&#0;): logs, drops the connection, reconnects, goes on', async () => {
    server = await new FakeServer(['accept']).start();
    const { log, lines } = capture();
    conn = connect(server.port, log);
    const seen: string[] = [];
    conn.onStanza(async (el) => {
      if (el.name === 'message') seen.push(el.getChildText('body') ?? '');
      return undefined;
    });
    await conn.start();
    server.feed(`<message from='a@example.com/x' to='${DOMAIN}'><body>&#0;</body></message>`);
    await until('a second handshake', () => server!.handshakes === 2);
    expect(lines.some((l) => l.msg === 'the XMPP server sent XML we cannot parse; reconnecting')).to.equal(true);
    expect(String(lines.find((l) => l.msg === 'the XMPP server sent XML we cannot parse; reconnecting')?.err)).to.match(
      /Illegal XML character 0x0/,
    );
    await until('online again', () => conn!.isOnline);
    server.feed(`<message from='a@example.com/x' to='${DOMAIN}'><body>still here</body></message>`);
    await until('the next stanza', () => seen.includes('still here'));
    expect(seen).to.deep.equal(['still here']);
  });

  it('once it has worked, a lost link is retried and shown as reconnecting with the last error', async () => {
    server = await new FakeServer(['accept', { refuse: 'not-authorized' }, 'accept']).start();
    conn = connect(server.port, capture().log);
    await conn.start();
    expect(conn.link.state).to.equal('connected');
    server.sockets[0].destroy();
    await until('reconnecting', () => conn!.link.state === 'reconnecting' && conn!.link.lastError !== undefined);
    expect(conn.link.since).to.be.instanceOf(Date);
    await until('online again', () => conn!.isOnline, 15000);
    expect(server.sockets.length).to.be.at.least(3); // the refusal in between was retried, not fatal
    expect(conn.link).to.deep.equal({ state: 'connected', lastError: undefined, since: undefined });
  });
});
