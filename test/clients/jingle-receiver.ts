/**
 * A Jingle file-transfer receiver (XEP-0166/0234) on @xmpp/client, written
 * from the XEPs for the tests, independent of the component's own Jingle code:
 * SOCKS5 bytestreams (XEP-0260; the initiator's direct and proxy candidates,
 * tried in priority order) and in-band bytestreams (XEP-0261, after the
 * initiator's transport-replace). It speaks the receivers' line protocol
 * (test/support/receiver.ts): events `online`, `message`, `offer`,
 * `received` {name, size, sha256, method: s5b|ibb, streamhost, path},
 * `failed`; commands `send` and `quit` on stdin.
 *
 * node jingle-receiver.js --jid U@D/R --password P --host H --port N --out DIR [--timeout S]
 *   [--candidate-timeout MS] (per SOCKS5 candidate; default 5000)
 */
import { client, xml } from '@xmpp/client';
import type { Element } from '@xmpp/component';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const NS = {
  JINGLE: 'urn:xmpp:jingle:1',
  FT: 'urn:xmpp:jingle:apps:file-transfer:5',
  S5B: 'urn:xmpp:jingle:transports:s5b:1',
  JIBB: 'urn:xmpp:jingle:transports:ibb:1',
  IBB: 'http://jabber.org/protocol/ibb',
  DISCO: 'http://jabber.org/protocol/disco#info',
  VERSION: 'jabber:iq:version',
};

function arg(name: string, def?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : def;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

const jid = arg('jid');
const [bare, resource = 'jingle'] = jid.split('/');
const [username, domain] = bare.split('@');
const outDir = arg('out');
const candidateTimeoutMs = Number(arg('candidate-timeout', '5000'));
const emit = (e: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(e)}\n`);
setTimeout(() => process.exit(3), Number(arg('timeout', '120')) * 1000).unref();

const xmpp = client({
  service: `xmpp://${arg('host').includes(':') ? `[${arg('host')}]` : arg('host')}:${arg('port')}`,
  domain,
  username,
  password: arg('password'),
  resource,
});
xmpp.on('error', (err: Error) => process.stderr.write(`xmpp error: ${err.message}\n`));

xmpp.iqCallee.get(NS.DISCO, 'query', () =>
  xml(
    'query',
    { xmlns: NS.DISCO },
    xml('identity', { category: 'client', type: 'pc', name: 'xr-jingle-receiver' }),
    ...[NS.DISCO, NS.JINGLE, NS.FT, NS.S5B, NS.JIBB, NS.IBB, NS.VERSION].map((v) => xml('feature', { var: v })),
  ),
);
xmpp.iqCallee.get(NS.VERSION, 'query', () =>
  xml('query', { xmlns: NS.VERSION }, xml('name', {}, 'xr-jingle-receiver'), xml('version', {}, '1')),
);

interface Candidate {
  cid: string;
  host: string;
  port: number;
  jid: string;
  priority: number;
  type: string;
}

interface Session {
  sid: string;
  initiator: string;
  content: string;
  name: string;
  size: number;
  chunks: Buffer[];
  got: number;
  ibbSid?: string;
  done: boolean;
}

const sessions = new Map<string, Session>();

function jingle(s: Session, action: string, ...children: Element[]): Element {
  return xml(
    'iq',
    { type: 'set', to: s.initiator, id: `j${Math.random().toString(36).slice(2)}` },
    xml('jingle', { xmlns: NS.JINGLE, action, sid: s.sid, responder: String(xmpp.jid) }, ...children),
  );
}

async function finish(s: Session, method: 's5b' | 'ibb', streamhost: string): Promise<void> {
  if (s.done) return;
  s.done = true;
  const body = Buffer.concat(s.chunks).subarray(0, s.size);
  await mkdir(outDir, { recursive: true });
  const path = join(outDir, s.name);
  await writeFile(path, body);
  emit({
    event: 'received',
    name: s.name,
    size: body.length,
    sha256: createHash('sha256').update(body).digest('hex'),
    method,
    streamhost,
    path,
  });
}

function take(s: Session, chunk: Buffer): void {
  s.chunks.push(chunk);
  s.got += chunk.length;
}

/** SOCKS5 CONNECT with DST.ADDR = dstaddr, port 0 (XEP-0065 §5.3.2); resolves with the socket once the reply is read. */
function socks(c: Candidate, dstaddr: string, s: Session): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: c.host, port: c.port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('timeout'));
    }, candidateTimeoutMs);
    let buf = Buffer.alloc(0);
    let stage = 0;
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('connect', () => sock.write(Buffer.from([5, 1, 0])));
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) return reject(new Error('greeting refused'));
        buf = buf.subarray(2);
        stage = 1;
        const a = Buffer.from(dstaddr, 'latin1');
        sock.write(Buffer.concat([Buffer.from([5, 1, 0, 3, a.length]), a, Buffer.from([0, 0])]));
      }
      if (stage === 1 && buf.length >= 5) {
        if (buf[1] !== 0) return reject(new Error(`connect refused (${buf[1]})`));
        const len = buf[3] === 3 ? 5 + buf[4] + 2 : buf[3] === 4 ? 22 : 10;
        if (buf.length < len) return;
        clearTimeout(timer);
        stage = 2;
        sock.off('data', onData);
        const rest = buf.subarray(len);
        resolve(sock);
        if (rest.length) take(s, rest);
      }
    };
    sock.on('data', onData);
  });
}

async function onInitiate(j: Element, from: string): Promise<void> {
  const content = j.getChild('content');
  const file = content?.getChild('description', NS.FT)?.getChild('file');
  const t = content?.getChild('transport', NS.S5B) ?? content?.getChild('transport', NS.JIBB);
  if (!content || !file || !t) return;
  const s: Session = {
    sid: j.attrs.sid as string,
    initiator: (j.attrs.initiator as string) ?? from,
    content: content.attrs.name as string,
    name: file.getChildText('name') ?? 'file',
    size: Number(file.getChildText('size') ?? '0'),
    chunks: [],
    got: 0,
    done: false,
  };
  sessions.set(s.sid, s);
  emit({ event: 'offer', name: s.name, size: s.size, from, transport: t.attrs.xmlns });
  const contentEl = (transport: Element) =>
    xml('content', { creator: 'initiator', name: s.content }, xml('description', { xmlns: NS.FT }, file), transport);
  if (t.attrs.xmlns === NS.JIBB) {
    s.ibbSid = t.attrs.sid;
    await xmpp.send(jingle(s, 'session-accept', contentEl(xml('transport', { ...t.attrs }))));
    return;
  }
  // S5B: accept with no candidates of our own, then try the initiator's, highest priority first.
  const tsid = t.attrs.sid as string;
  await xmpp.send(jingle(s, 'session-accept', contentEl(xml('transport', { xmlns: NS.S5B, sid: tsid, mode: 'tcp' }))));
  const cands: Candidate[] = t
    .getChildren('candidate')
    .map((c) => ({
      cid: c.attrs.cid as string,
      host: c.attrs.host as string,
      port: Number(c.attrs.port),
      jid: c.attrs.jid as string,
      priority: Number(c.attrs.priority),
      type: (c.attrs.type as string) ?? 'direct',
    }))
    .sort((a, b) => b.priority - a.priority);
  for (const c of cands) {
    try {
      const sock = await socks(c, t.attrs.dstaddr as string, s);
      emit({ event: 'candidate', cid: c.cid, type: c.type, host: c.host, used: true });
      sock.on('data', (d: Buffer) => {
        take(s, d);
        if (s.got >= s.size) void finish(s, 's5b', c.jid);
      });
      sock.on('end', () => {
        if (!s.done && s.got >= s.size) void finish(s, 's5b', c.jid);
      });
      const tr = xml('transport', { xmlns: NS.S5B, sid: tsid }, xml('candidate-used', { cid: c.cid }));
      await xmpp.send(jingle(s, 'transport-info', xml('content', { creator: 'initiator', name: s.content }, tr)));
      if (s.got >= s.size && s.size > 0) void finish(s, 's5b', c.jid);
      return;
    } catch (err) {
      emit({ event: 'candidate', cid: c.cid, type: c.type, host: c.host, used: false, err: (err as Error).message });
    }
  }
  const tr = xml('transport', { xmlns: NS.S5B, sid: tsid }, xml('candidate-error'));
  await xmpp.send(jingle(s, 'transport-info', xml('content', { creator: 'initiator', name: s.content }, tr)));
}

xmpp.iqCallee.set(NS.JINGLE, 'jingle', (ctx: { stanza: Element; element: Element }) => {
  const j = ctx.element;
  const from = ctx.stanza.attrs.from as string;
  const s = sessions.get(j.attrs.sid as string);
  switch (j.attrs.action) {
    case 'session-initiate':
      // answered at once (XEP-0166 §6.3); the session-accept follows
      setImmediate(() => void onInitiate(j, from).catch((e: Error) => emit({ event: 'error', message: e.message })));
      break;
    case 'transport-replace': {
      const t = j.getChild('content')?.getChild('transport', NS.JIBB);
      if (s && t) {
        s.ibbSid = t.attrs.sid;
        const accept = jingle(
          s,
          'transport-accept',
          xml('content', { creator: 'initiator', name: s.content }, xml('transport', { ...t.attrs })),
        );
        setImmediate(() => void xmpp.send(accept));
      }
      break;
    }
    case 'session-terminate':
      if (s && !s.done) {
        const reason = j.getChild('reason')?.children.find((c) => typeof c !== 'string');
        if (reason?.name !== 'success' || s.got < s.size) {
          s.done = true;
          emit({ event: 'failed', name: s.name, bytes: s.got, reason: reason?.name ?? 'none' });
        }
      }
      break;
  }
  return true;
});

const ibbSession = (sid: string) => [...sessions.values()].find((x) => x.ibbSid === sid);
xmpp.iqCallee.set(NS.IBB, 'open', () => true);
xmpp.iqCallee.set(NS.IBB, 'data', (ctx: { element: Element }) => {
  const s = ibbSession(ctx.element.attrs.sid as string);
  if (s) {
    take(s, Buffer.from(ctx.element.text(), 'base64'));
    if (s.got >= s.size) void finish(s, 'ibb', 'in-band');
  }
  return true;
});
xmpp.iqCallee.set(NS.IBB, 'close', () => true);

xmpp.on('stanza', (el: Element) => {
  if (el.is('message') && el.getChildText('body'))
    emit({ event: 'message', from: el.attrs.from, body: el.getChildText('body') });
});

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const c = JSON.parse(line) as { cmd: string; to?: string; body?: string };
  if (c.cmd === 'send' && c.to)
    void xmpp.send(xml('message', { type: 'chat', to: c.to }, xml('body', {}, c.body ?? '')));
  if (c.cmd === 'quit') void xmpp.stop().finally(() => process.exit(0));
});
lines.on('close', () => void xmpp.stop().finally(() => process.exit(0)));
process.on('SIGTERM', () => process.exit(0));

xmpp
  .start()
  .then(async () => {
    await xmpp.send(xml('presence'));
    emit({ event: 'online', jid: String(xmpp.jid) });
  })
  .catch((err: Error) => {
    process.stderr.write(`login failed: ${err.message}\n`);
    process.exit(1);
  });
