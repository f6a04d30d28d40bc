// The component's server link against fake XEP-0114 servers on loopback:
// what the real @xmpp/component does with a refused handshake, a server that
// goes away, bytes its XML parser throws on, several servers, and TLS (a
// certificate from a test CA, a wrong CA, a wrong name).
import { expect } from 'chai';
import { xml } from '@xmpp/component';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { createLogger } from '../../../src/log.js';
import { Connection, HandshakeRefused, ServerNotTrusted, type TlsOptions } from '../../../src/xmpp/connection.js';
import { LinkDownError } from '../../../src/xmpp/errors.js';
import { makeTestCa, type TestCa } from '../../support/tls.js';

const DOMAIN = 'reports.example.com';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** accept the handshake; refuse it with a stream error; or open the stream and never answer the handshake */
type Script = 'accept' | 'ignore' | { refuse: string; text?: string };

/** Answers each connection by its script (the last one repeats): accept the handshake, or refuse it with a stream error. */
class FakeServer {
  readonly sockets: Socket[] = [];
  handshakes = 0;
  /** application bytes received (after TLS, when TLS) */
  bytes = 0;
  /** TCP connections accepted (also those whose TLS handshake failed) */
  connections = 0;
  /** how it answers XEP-0199 pings: a result, an error (no mod_ping), or not at all (a vanished host) */
  pingMode: 'result' | 'error' | 'silent' = 'result';
  pings = 0;
  protected server!: Server | TlsServer;
  port = 0;

  constructor(private readonly scripts: Script[]) {}

  async start(): Promise<this> {
    this.server = this.listen((s) => this.serve(s));
    this.server.on('connection', () => this.connections++);
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  protected listen(serve: (s: Socket) => void): Server | TlsServer {
    return createServer(serve);
  }

  private serve(s: Socket): void {
    const script = this.scripts[Math.min(this.sockets.length, this.scripts.length - 1)];
    this.sockets.push(s);
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      this.bytes += d.length;
      buf += d.toString();
      if (buf.includes('<stream:stream') && !buf.includes('<handshake')) {
        s.write(
          `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='${DOMAIN}' id='s${this.sockets.length}'>`,
        );
      }
      for (const m of buf.matchAll(/<iq [^>]*?id=['"]([^'"]+)['"][^>]*>\s*<ping /g)) {
        this.pings++;
        buf = '';
        const from = "from='example.com'";
        if (this.pingMode === 'result') s.write(`<iq type='result' ${from} to='${DOMAIN}' id='${m[1]}'/>`);
        if (this.pingMode === 'error')
          s.write(
            `<iq type='error' ${from} to='${DOMAIN}' id='${m[1]}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
          );
      }
      if (buf.includes('</handshake>')) {
        buf = '';
        if (script === 'ignore') return;
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

/** The same XEP-0114 server behind direct TLS (ejabberd_service with `tls: true`), with the given certificate. */
class FakeTlsServer extends FakeServer {
  constructor(
    scripts: Script[],
    private readonly pem: string,
  ) {
    super(scripts);
  }

  protected override listen(serve: (s: Socket) => void): TlsServer {
    const srv = createTlsServer({ key: this.pem, cert: this.pem }, serve);
    srv.on('tlsClientError', () => {});
    return srv;
  }

  /** Presents another certificate from the next connection on. */
  present(pem: string): void {
    (this.server as TlsServer).setSecureContext({ key: pem, cert: pem });
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
    new Connection({ services: [`xmpp://127.0.0.1:${port}`], domain: DOMAIN, secret: 's', reconnectMaxMs: 1000 }, log);

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
    expect(conn.link).to.deep.equal({
      state: 'connected',
      server: `xmpp://127.0.0.1:${server.port}`,
      lastError: undefined,
      since: undefined,
    });
  });

  it('while the link is down, a send or an IQ request rejects with LinkDownError (not a TypeError from no socket)', async () => {
    server = await new FakeServer(['accept', 'ignore']).start();
    conn = connect(server.port, capture().log);
    await conn.start();
    server.sockets[0].destroy();
    await until('offline', () => !conn!.isOnline);
    const msg = xml('message', { from: DOMAIN, to: 'a@example.com/x' }, xml('body', {}, 'hi'));
    const iq = xml(
      'iq',
      { type: 'get', from: DOMAIN, to: 'a@example.com/x', id: 'q1' },
      xml('query', { xmlns: 'urn:xmpp:ping' }),
    );
    const failed = async (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: unknown) => e,
      );
    const sent = await failed(conn.send(msg));
    expect(sent).to.be.instanceOf(LinkDownError);
    expect((sent as Error).message).to.equal('not connected to the XMPP server');
    expect(await failed(conn.request(iq, 1000))).to.be.instanceOf(LinkDownError);
    expect(await failed(conn.sendWhenOnline(msg, 100))).to.be.instanceOf(LinkDownError);
  });

  it("a spare connection: its own handshake; IQ replies reach the primary's requests, IQ gets are answered on it, intercepted stanzas go nowhere else", async () => {
    server = await new FakeServer(['accept']).start();
    const { log } = capture();
    conn = connect(server.port, log);
    const handled: string[] = [];
    conn.onStanza((el) => {
      if (el.name !== 'handshake') handled.push(`${el.name} ${el.attrs.type ?? ''} ${el.attrs.id ?? ''}`);
      return Promise.resolve(el.name === 'iq' ? true : undefined);
    });
    await conn.start();
    const intercepted: string[] = [];
    const spare = await conn.openSpare((el) => {
      if (el.attrs.to?.startsWith('xr-slot-')) {
        intercepted.push(el.attrs.to);
        return true;
      }
      return false;
    }, 5000);
    expect(server.handshakes).to.equal(2);
    const onSpare = server.sockets[1];
    let written = '';
    onSpare.on('data', (d: Buffer) => (written += d.toString()));
    // the reply to a request sent through the primary, arriving on the spare
    const pending = conn.request(
      xml('iq', { type: 'get', to: 'alice@example.com/x', id: 'q1' }, xml('query', { xmlns: 'jabber:iq:version' })),
      5000,
    );
    onSpare.write(
      `<iq type='result' id='q1' from='alice@example.com/x' to='${DOMAIN}'><query xmlns='jabber:iq:version'/></iq>`,
    );
    const answer = await pending;
    expect(answer.attrs.id).to.equal('q1');
    expect(answer.getChild('query', 'jabber:iq:version')).to.not.equal(undefined);
    // an IQ get: the same handler, answered once, on the spare
    onSpare.write(
      `<iq type='get' id='g1' from='alice@example.com/x' to='1234@${DOMAIN}/reports'><ping xmlns='urn:xmpp:ping'/></iq>`,
    );
    // a slot message: intercepted, never handled
    onSpare.write(`<message from='xr-slot-00ff00ff@${DOMAIN}' to='xr-slot-00ff00ff@${DOMAIN}'/>`);
    await until(
      'the answer on the spare',
      () => /<iq[^>]*type=.result.[^>]*id=.g1./.test(written) || /id=.g1.[^>]*type=.result./.test(written),
    );
    expect(handled).to.deep.equal(['iq get g1']);
    expect(intercepted).to.deep.equal([`xr-slot-00ff00ff@${DOMAIN}`]);
    expect(written.match(/g1/g)).to.have.length(1);
    let closed = false;
    spare.onClosed(() => (closed = true));
    await spare.close();
    await until('the spare closed', () => closed);
    expect(conn.isOnline).to.equal(true);
  });
});

/** A port nobody listens on (now): connection refused. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('xmpp/connection with several servers (xmpp.service as a list)', function () {
  this.timeout(30000);
  const servers: FakeServer[] = [];
  let conn: Connection | undefined;
  afterEach(async () => {
    await conn?.stop();
    for (const s of servers.splice(0)) await s.stop();
    conn = undefined;
  });
  const uri = (port: number) => `xmpp://127.0.0.1:${port}`;
  const start = async (n: number) => {
    for (let i = 0; i < n; i++) servers.push(await new FakeServer(['accept']).start());
  };

  it('uses the first server that answers, in order, and says which', async () => {
    await start(2);
    const dead = await deadPort();
    const { log, lines } = capture();
    conn = new Connection(
      {
        services: [uri(dead), uri(servers[0].port), uri(servers[1].port)],
        domain: DOMAIN,
        secret: 's',
        reconnectMaxMs: 1000,
      },
      log,
    );
    await conn.start();
    expect(conn.link.server).to.equal(uri(servers[0].port));
    expect(servers.map((s) => s.handshakes)).to.deep.equal([1, 0]);
    const connected = lines.filter((l) => l.msg === 'connected to the XMPP server');
    expect(connected.map((l) => l.server)).to.deep.equal([uri(servers[0].port)]);
    expect(lines.some((l) => l.msg === 'XMPP connection error' && l.server === uri(dead))).to.equal(true);
  });

  it('when its server goes away, moves to the next one in the list (and around)', async () => {
    await start(2);
    const { log, lines } = capture();
    conn = new Connection(
      { services: [uri(servers[0].port), uri(servers[1].port)], domain: DOMAIN, secret: 's', reconnectMaxMs: 1000 },
      log,
    );
    const lost: string[] = [];
    conn.onLost(() => lost.push('lost'));
    await conn.start();
    expect(conn.link.server).to.equal(uri(servers[0].port));
    servers[0].sockets[0].destroy();
    await until('online on the second server', () => conn!.isOnline && conn!.link.server === uri(servers[1].port));
    expect(servers.map((s) => s.handshakes)).to.deep.equal([1, 1]);
    expect(lost).to.deep.equal(['lost']);
    const warn = lines.find((l) => l.msg === 'disconnected from the XMPP server; reconnecting');
    expect(warn).to.include({ server: uri(servers[0].port), next: uri(servers[1].port) });
    // the second one goes too: back to the first
    servers[1].sockets[0].destroy();
    await until('online on the first server again', () => conn!.isOnline && conn!.link.server === uri(servers[0].port));
    expect(servers.map((s) => s.handshakes)).to.deep.equal([2, 1]);
    expect(lines.filter((l) => l.msg === 'connected to the XMPP server').map((l) => l.server)).to.deep.equal([
      uri(servers[0].port),
      uri(servers[1].port),
      uri(servers[0].port),
    ]);
  });

  it('an attempt is bounded: a server that takes the connection and never answers the handshake is left for the next', async () => {
    servers.push(await new FakeServer(['ignore']).start(), await new FakeServer(['accept']).start());
    const { log, lines } = capture();
    conn = new Connection(
      {
        services: [uri(servers[0].port), uri(servers[1].port)],
        domain: DOMAIN,
        secret: 's',
        reconnectMaxMs: 1000,
        attemptTimeoutMs: 3000,
      },
      log,
    );
    await conn.start();
    expect(conn.link.server).to.equal(uri(servers[1].port));
    expect(servers[0].sockets).to.have.length(1);
    expect(servers[0].sockets[0].destroyed || servers[0].sockets[0].readableEnded).to.equal(true);
    expect(
      lines.some(
        (l) => l.server === uri(servers[0].port) && l.err === `no answer from ${uri(servers[0].port)} within 3000 ms`,
      ),
    ).to.equal(true);
  });

  it('warns about each plain (xmpp://) server that is not on loopback', () => {
    const { log, lines } = capture();
    new Connection(
      {
        services: ['xmpp://127.0.0.1:5275', 'xmpp://[::1]:5275', 'xmpp://192.0.2.10:5275', 'xmpps://192.0.2.11:5275'],
        domain: DOMAIN,
        secret: 's',
        reconnectMaxMs: 1000,
      },
      log,
    );
    expect(lines.filter((l) => l.level === 40).map((l) => [l.server, l.msg])).to.deep.equal([
      [
        'xmpp://192.0.2.10:5275',
        'the link to this XMPP server is not encrypted: use xmpps:// with a TLS listener (ejabberd: tls: true)',
      ],
    ]);
  });

  it('shows the server being tried while none answers', async () => {
    const [a, b] = [await deadPort(), await deadPort()];
    conn = new Connection(
      { services: [uri(a), uri(b)], domain: DOMAIN, secret: 's', reconnectMaxMs: 1000 },
      capture().log,
    );
    void conn.start();
    await until('the second server tried', () => conn!.link.server === uri(b));
    expect(conn.link.state).to.equal('connecting');
    expect(conn.link.lastError).to.match(/ECONNREFUSED/);
  });
});

describe('xmpp/connection keepalive (XEP-0199 pings to the server domain)', function () {
  this.timeout(30000);
  const servers: FakeServer[] = [];
  let conn: Connection | undefined;
  afterEach(async () => {
    await conn?.stop();
    for (const s of servers.splice(0)) await s.stop();
    conn = undefined;
  });
  const uri = (port: number) => `xmpp://127.0.0.1:${port}`;
  const connect = (log: ReturnType<typeof capture>['log']) =>
    new Connection(
      {
        services: servers.map((s) => uri(s.port)),
        domain: DOMAIN,
        secret: 's',
        reconnectMaxMs: 1000,
        keepalive: { to: 'example.com', intervalMs: 200 },
      },
      log,
    );

  it('a server that stops answering (a vanished host: no FIN, no RST) is left for the next one', async () => {
    servers.push(await new FakeServer(['accept']).start(), await new FakeServer(['accept']).start());
    servers[0].pingMode = 'silent';
    const { log, lines } = capture();
    conn = connect(log);
    await conn.start();
    expect(conn.link.server).to.equal(uri(servers[0].port));
    await until('online on the second server', () => conn!.isOnline && conn!.link.server === uri(servers[1].port));
    expect(servers[0].pings).to.be.at.least(1);
    expect(lines.find((l) => l.msg === 'the XMPP server did not answer a ping; dropping the link')).to.include({
      server: uri(servers[0].port),
    });
  });

  it('an error answer (a server without mod_ping) keeps the link', async () => {
    servers.push(await new FakeServer(['accept']).start());
    servers[0].pingMode = 'error';
    const { log, lines } = capture();
    conn = connect(log);
    await conn.start();
    await until('three pings answered', () => servers[0].pings >= 3);
    expect(conn.isOnline).to.equal(true);
    expect(servers[0].handshakes).to.equal(1);
    expect(lines.some((l) => l.msg === 'the XMPP server did not answer a ping; dropping the link')).to.equal(false);
  });
});

describe('xmpp/connection over TLS (xmpps://)', function () {
  this.timeout(60000);
  let dir: string;
  let good: TestCa;
  let other: TestCa; // another CA, and its own localhost certificate
  let server: FakeTlsServer | undefined;
  let conn: Connection | undefined;

  before(async function () {
    this.timeout(60000);
    dir = await mkdtemp(join(tmpdir(), 'xr-tls-unit-'));
    [good, other] = await Promise.all([makeTestCa(join(dir, 'good')), makeTestCa(join(dir, 'other'))]);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await conn?.stop();
    await server?.stop();
    conn = server = undefined;
  });

  const tlsConnect = async (tls: TlsOptions, log = capture().log, host = '127.0.0.1') =>
    new Connection(
      { services: [`xmpps://${host}:${server!.port}`], domain: DOMAIN, secret: 's', reconnectMaxMs: 1000, tls },
      log,
    );
  const caOf = async (ca: TestCa) => ({ ca: await readFile(ca.caCert, 'utf8'), caOrigin: ca.caCert });

  it('connects with a certificate from the configured CA and the expected name, and the stream runs inside TLS', async () => {
    server = await new FakeTlsServer(['accept'], await readFile(good.serverPem, 'utf8')).start();
    const { log, lines } = capture();
    conn = await tlsConnect({ ...(await caOf(good)), serverName: 'localhost' }, log);
    await conn.start();
    expect(server.handshakes).to.equal(1);
    expect(conn.link.server).to.equal(`xmpps://127.0.0.1:${server.port}`);
    expect(lines.find((l) => l.msg === 'connected to the XMPP server')).to.include({ tls: true });
  });

  it('by default expects the host of the service as the name', async () => {
    server = await new FakeTlsServer(['accept'], await readFile(good.serverPem, 'utf8')).start();
    conn = await tlsConnect(await caOf(good), capture().log, 'localhost');
    await conn.start();
    expect(server.handshakes).to.equal(1);
  });

  it('a certificate from another CA: start() fails with what the server presented, and not one byte is sent', async () => {
    server = await new FakeTlsServer(['accept'], await readFile(other.serverPem, 'utf8')).start();
    const { log, lines } = capture();
    conn = await tlsConnect({ ...(await caOf(good)), serverName: 'localhost' }, log);
    const err = await conn.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).to.be.instanceOf(ServerNotTrusted);
    expect(err!.message).to.include(`TLS to 127.0.0.1:${server.port}: the server's certificate is not trusted`);
    expect(err!.message).to.include(`xmpp.tls.caFile (XR_XMPP_TLS_CA_FILE) ${good.caCert}`);
    expect(err!.message).to.match(
      /it presented "CN=localhost" \(DNS:localhost, DNS:\*\.localhost\), issued by "CN=xmpp-reports test CA"/,
    );
    expect(lines.find((l) => l.level === 60)?.msg).to.equal(err!.message);
    await sleep(2500); // longer than the first retry's backoff
    expect(server.connections).to.equal(1); // it did connect, and never again
    expect(server.bytes).to.equal(0); // no stream header, no handshake
  });

  it('the right CA but another name: start() fails naming xmpp.tls.serverName, and not one byte is sent', async () => {
    server = await new FakeTlsServer(['accept'], await readFile(good.serverPem, 'utf8')).start();
    conn = await tlsConnect({ ...(await caOf(good)), serverName: 'xmpp.example.net' });
    const err = await conn.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).to.be.instanceOf(ServerNotTrusted);
    expect(err!.message).to.include(
      `the server's certificate is not for "xmpp.example.net" (DNS:localhost, DNS:*.localhost); the expected name is xmpp.tls.serverName (XR_XMPP_TLS_SERVER_NAME)`,
    );
    expect(server.connections).to.equal(1);
    expect(server.bytes).to.equal(0);
  });

  it("the system's CAs by default: a private CA's certificate is refused, and the error says how to trust it", async () => {
    server = await new FakeTlsServer(['accept'], await readFile(good.serverPem, 'utf8')).start();
    conn = await tlsConnect({ serverName: 'localhost' });
    const err = await conn.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).to.be.instanceOf(ServerNotTrusted);
    expect(err!.message).to.include("trusted: the system's CAs (set xmpp.tls.caFile");
    expect(server.bytes).to.equal(0);
  });

  it('once it has worked, a certificate that stops verifying is retried (shown as the last error), not fatal', async () => {
    const goodPem = await readFile(good.serverPem, 'utf8');
    server = await new FakeTlsServer(['accept'], goodPem).start();
    conn = await tlsConnect({ ...(await caOf(good)), serverName: 'localhost' });
    await conn.start();
    server.present(await readFile(other.serverPem, 'utf8'));
    const bytesBefore = server.bytes;
    server.sockets[0].destroy();
    await until('a refused certificate', () => /not trusted/.test(conn!.link.lastError ?? ''));
    expect(conn.link.state).to.equal('reconnecting');
    expect(server.bytes).to.equal(bytesBefore);
    server.present(goodPem);
    await until('online again', () => conn!.isOnline, 15000);
    expect(server.handshakes).to.equal(2);
  });
});
