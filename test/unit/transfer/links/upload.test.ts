import { expect } from 'chai';
import { xml, type Element } from '@xmpp/component';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  UploadError,
  buildSlotRequest,
  filterPutHeaders,
  parseServiceInfo,
  parseSlot,
  requestSlot,
  slotError,
  uploadFile,
  type UploadFailure,
} from '../../../../src/transfer/links/upload.js';
import { NS } from '../../../../src/xmpp/namespaces.js';

// ltx (the parser under @xmpp/xml) ships no types: a variable specifier keeps
// TypeScript from looking for them, and the cast names the one function used.
const ltxModule = 'ltx';
const { parse } = (await import(ltxModule)) as { parse: (text: string) => Element };

/** Rejects if p takes longer than ms: no test may hang. */
function within<T>(p: Promise<T>, ms: number, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

async function uploadError(p: Promise<unknown>, reason: UploadFailure, ms = 5000): Promise<UploadError> {
  try {
    await within(p, ms);
  } catch (err) {
    if (!(err instanceof UploadError)) throw err;
    expect(err.reason, err.message).to.equal(reason);
    return err;
  }
  expect.fail(`expected an UploadError ${reason}`);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// XEP-0363 §4, "The upload service responds with a slot" (version 1.x of the example).
const SLOT_EXAMPLE = `
<iq from='upload.montague.tld' id='step_03' to='romeo@montague.tld/garden' type='result'>
  <slot xmlns='urn:xmpp:http:upload:0'>
    <put url='https://upload.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/tr%C3%A8s%20cool.jpg'>
      <header name='Authorization'>Basic Base64String==</header>
      <header name='Cookie'>foo=bar; user=romeo</header>
    </put>
    <get url='https://download.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/tr%C3%A8s%20cool.jpg' />
  </slot>
</iq>`;

// The same example in earlier versions of the XEP carried a Host header: it must be ignored.
const SLOT_EXAMPLE_HOST = `
<iq from='upload.montague.tld' id='step_03' to='romeo@montague.tld/garden' type='result'>
  <slot xmlns='urn:xmpp:http:upload:0'>
    <put url='https://upload.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/my-juliet.jpg'>
      <header name='Authorization'>Basic Base64String==</header>
      <header name='Host'>montague.tld</header>
    </put>
    <get url='https://download.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/my-juliet.jpg' />
  </slot>
</iq>`;

// XEP-0363 §5 examples.
const TOO_LARGE = `
<iq from='upload.montague.tld' id='step_03' to='romeo@montague.tld/garden' type='error'>
  <request xmlns='urn:xmpp:http:upload:0' filename='très cool.jpg' size='23456' content-type='image/jpeg' />
  <error type='modify'>
    <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' />
    <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>File too large. The maximum file size is 20000 bytes</text>
    <file-too-large xmlns='urn:xmpp:http:upload:0'>
      <max-file-size>20000</max-file-size>
    </file-too-large>
  </error>
</iq>`;

const QUOTA = `
<iq from='upload.montague.tld' id='step_03' to='romeo@montague.tld/garden' type='error'>
  <request xmlns='urn:xmpp:http:upload:0' filename='très cool.jpg' size='23456' content-type='image/jpeg' />
  <error type='wait'>
    <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' />
    <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Quota reached. You can only upload 5 files in 5 minutes</text>
    <retry xmlns='urn:xmpp:http:upload:0' stamp='2017-12-03T23:42:05Z' />
  </error>
</iq>`;

const NOT_ALLOWED = `
<iq from='upload.montague.tld' id='step_03' to='romeo@montague.tld/garden' type='error'>
  <request xmlns='urn:xmpp:http:upload:0' filename='très cool.jpg' size='23456' content-type='image/jpeg' />
  <error type='cancel'>
    <not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' />
    <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Only premium members are allowed to upload files</text>
  </error>
</iq>`;

// XEP-0363 §3, disco#info of the upload service with a 5 MiB limit.
const DISCO_INFO = `
<iq from='upload.montague.tld' id='step_02' to='romeo@montague.tld/garden' type='result'>
  <query xmlns='http://jabber.org/protocol/disco#info'>
    <identity category='store' type='file' name='HTTP File Upload' />
    <feature var='urn:xmpp:http:upload:0' />
    <x type='result' xmlns='jabber:x:data'>
      <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field>
      <field var='max-file-size'><value>5242880</value></field>
    </x>
  </query>
</iq>`;

/** What a StanzaError from @xmpp/iq's caller looks like. */
function stanzaError(iqText: string): Error & { condition: string; element: Element } {
  const error = parse(iqText).getChild('error')!;
  const condition = error.getChildElements()[0].name;
  return Object.assign(new Error(condition), { name: 'StanzaError', condition, element: error });
}

describe('transfer/upload (XEP-0363)', () => {
  describe('stanzas', () => {
    it('builds the slot request of §4', () => {
      const iq = buildSlotRequest({
        id: 'step_03',
        from: '1234@reports.example.com/reports',
        service: 'upload.example.com',
        name: 'très cool.jpg',
        size: 23456,
        mime: 'image/jpeg',
      });
      expect(iq.attrs).to.deep.equal({
        type: 'get',
        id: 'step_03',
        from: '1234@reports.example.com/reports',
        to: 'upload.example.com',
      });
      const req = iq.getChild('request', NS.HTTP_UPLOAD)!;
      expect(req.attrs).to.deep.equal({
        xmlns: NS.HTTP_UPLOAD,
        filename: 'très cool.jpg',
        size: '23456',
        'content-type': 'image/jpeg',
      });
      expect(iq.toString()).to.contain(
        `<request xmlns="urn:xmpp:http:upload:0" filename="très cool.jpg" size="23456" content-type="image/jpeg"/>`,
      );
      const noType = buildSlotRequest({ id: 'x', from: 'a@b/c', service: 'u', name: 'n', size: 0, mime: '' });
      expect(noType.getChild('request')!.attrs).to.not.have.property('content-type');
    });

    it('reads the slot of the §4 example', () => {
      const slot = parseSlot(parse(SLOT_EXAMPLE));
      expect(slot).to.deep.equal({
        put: 'https://upload.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/tr%C3%A8s%20cool.jpg',
        get: 'https://download.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/tr%C3%A8s%20cool.jpg',
        headers: { Authorization: 'Basic Base64String==', Cookie: 'foo=bar; user=romeo' },
      });
      // the <slot/> itself is fine too
      expect(parseSlot(parse(SLOT_EXAMPLE).getChild('slot')!).get).to.equal(slot.get);
    });

    it("ignores headers other than Authorization, Cookie and Expires (the older example's Host)", () => {
      expect(parseSlot(parse(SLOT_EXAMPLE_HOST)).headers).to.deep.equal({ Authorization: 'Basic Base64String==' });
    });

    it('filters header names case-insensitively, strips newlines (§8) and drops unusable values', () => {
      expect(
        filterPutHeaders([
          { name: 'authorization', value: 'Bearer a\r\nX-Injected: 1' },
          { name: 'EXPIRES', value: ' Wed, 21 Oct 2026 07:28:00 GMT ' },
          { name: 'Cookie', value: 'a=1' },
          { name: 'cookie', value: 'b=2' },
          { name: 'Host', value: 'evil.example' },
          { name: 'Content-Length', value: '1' },
          { name: 'Transfer-Encoding', value: 'chunked' },
          { name: 'X-Other', value: 'x' },
          { name: 'Auth\norization', value: 'ok' },
        ]),
      ).to.deep.equal({ Authorization: 'ok', Expires: 'Wed, 21 Oct 2026 07:28:00 GMT', Cookie: 'a=1; b=2' });
      expect(
        filterPutHeaders([
          { name: 'Cookie', value: 'a\u0000b' },
          { name: 'Expires', value: '' },
        ]),
      ).to.deep.equal({});
    });

    it('refuses slots without a slot, without URLs or with non-HTTP URLs', () => {
      const slot = (put: string | undefined, get: string | undefined) =>
        xml(
          'iq',
          { type: 'result' },
          xml(
            'slot',
            { xmlns: NS.HTTP_UPLOAD },
            put === undefined ? null : xml('put', { url: put }),
            get === undefined ? null : xml('get', { url: get }),
          ),
        );
      expect(() => parseSlot(xml('iq', { type: 'result' }))).to.throw(UploadError, /without a slot/);
      expect(() => parseSlot(xml('iq', { type: 'result' }, xml('slot', { xmlns: 'urn:xmpp:http:upload' })))).to.throw(
        UploadError,
        /without a slot/,
      );
      expect(() => parseSlot(slot(undefined, 'https://x/g'))).to.throw(UploadError, /no PUT URL/);
      expect(() => parseSlot(slot('https://x/p', undefined))).to.throw(UploadError, /no GET URL/);
      expect(() => parseSlot(slot('ftp://x/p', 'https://x/g'))).to.throw(UploadError, /PUT URL is not http/);
      expect(() => parseSlot(slot('https://x/p', 'javascript:alert(1)'))).to.throw(UploadError, /GET URL is not http/);
      expect(() => parseSlot(slot('not a url', 'https://x/g'))).to.throw(UploadError, /not a URL/);
      expect(
        parseSlot(slot('http://127.0.0.1:5280/upload/a/b', 'http://127.0.0.1:5280/upload/a/b')).headers,
      ).to.deep.equal({});
    });

    it('reads the §5 errors: too large with its limit, quota with its retry time, refusal', () => {
      const big = slotError(parse(TOO_LARGE).getChild('error'));
      expect(big.reason).to.equal('too-large');
      expect(big.detail).to.deep.equal({ condition: 'not-acceptable', maxFileSize: 20000 });
      expect(big.message).to.equal('File too large. The maximum file size is 20000 bytes');
      const quota = slotError(parse(QUOTA).getChild('error'));
      expect(quota.reason).to.equal('quota');
      expect(quota.detail.retryAt?.toISOString()).to.equal('2017-12-03T23:42:05.000Z');
      const no = slotError(parse(NOT_ALLOWED).getChild('error'));
      expect(no.reason).to.equal('refused');
      expect(no.detail.condition).to.equal('not-allowed');
      expect(no.message).to.contain('not-allowed').and.to.contain('premium');
      expect(slotError(undefined, 'service-unavailable').detail.condition).to.equal('service-unavailable');
    });

    it('reads support and max-file-size from the §3 disco#info example', () => {
      const query = parse(DISCO_INFO).getChild('query')!;
      expect(parseServiceInfo(query)).to.deep.equal({ supported: true, maxFileSize: 5242880 });
      expect(
        parseServiceInfo(
          xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }, xml('feature', { var: 'urn:xmpp:ping' })),
        ),
      ).to.deep.equal({ supported: false });
    });
  });

  describe('requestSlot', () => {
    const o = {
      from: '1234@reports.example.com/reports',
      service: 'upload.example.com',
      name: 'status-1234.pdf',
      size: 1000,
      mime: 'application/pdf',
      timeoutMs: 1500,
    };

    it('sends the request with the timeout and returns the slot', async () => {
      let sent: Element | undefined;
      let timeout = 0;
      const slot = await requestSlot(async (iq, t) => {
        sent = iq;
        timeout = t;
        return parse(SLOT_EXAMPLE);
      }, o);
      expect(timeout).to.equal(1500);
      expect(sent!.attrs).to.include({ type: 'get', from: o.from, to: 'upload.example.com' });
      expect(sent!.attrs.id).to.match(/^xr-/);
      expect(sent!.getChild('request', NS.HTTP_UPLOAD)!.attrs).to.include({
        filename: 'status-1234.pdf',
        size: '1000',
        'content-type': 'application/pdf',
      });
      expect(slot.headers.Authorization).to.equal('Basic Base64String==');
    });

    it('turns IQ errors and timeouts into UploadErrors', async () => {
      const big = await uploadError(
        requestSlot(() => Promise.reject(stanzaError(TOO_LARGE)), o),
        'too-large',
      );
      expect(big.detail.maxFileSize).to.equal(20000);
      await uploadError(
        requestSlot(() => Promise.reject(stanzaError(QUOTA)), o),
        'quota',
      );
      await uploadError(
        requestSlot(() => Promise.reject(stanzaError(NOT_ALLOWED)), o),
        'refused',
      );
      const timeout = Object.assign(new Error('timeout'), { name: 'TimeoutError' });
      const t = await uploadError(
        requestSlot(() => Promise.reject(timeout), o),
        'timeout',
      );
      expect(t.message).to.contain('1500 ms');
      await uploadError(
        requestSlot(() => Promise.reject(new Error('offline')), o),
        'refused',
      );
      await uploadError(
        requestSlot(async () => xml('iq', { type: 'result' }), o),
        'bad-slot',
      );
    });
  });

  describe('uploadFile (real loopback HTTP)', function () {
    this.timeout(15000);
    type Handler = (req: IncomingMessage, res: ServerResponse) => void;
    let handler: Handler;
    let server: Server;
    let port: number;
    let dir: string;
    const sockets = new Set<Socket>();

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'upload-test-'));
      server = createServer((req, res) => handler(req, res));
      server.on('connection', (s: Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      port = (server.address() as AddressInfo).port;
    });
    after(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    });

    let n = 0;
    async function file(size: number): Promise<{ path: string; data: Buffer }> {
      const data = randomBytes(size);
      const path = join(dir, `f${++n}`);
      await writeFile(path, data);
      return { path, data };
    }

    /** Receives one upload like mod_http_upload would, checking method, length and type. */
    function receiver(
      status = 201,
    ): Promise<{ method: string; headers: IncomingMessage['headers']; body: Buffer; url: string }> {
      return new Promise((resolve) => {
        handler = (req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 201 ? '' : 'denied by test');
            resolve({
              method: req.method ?? '',
              headers: req.headers,
              body: Buffer.concat(chunks),
              url: req.url ?? '',
            });
          });
        };
      });
    }

    it('PUTs the bytes with Content-Length, Content-Type and the slot headers', async () => {
      const { path, data } = await file(3 * 1024 * 1024 + 7);
      const got = receiver();
      await within(
        uploadFile(
          `http://127.0.0.1:${port}/upload/abc/status%201234.pdf`,
          { Authorization: 'Basic QQ==', Cookie: 'c=1' },
          path,
          data.length,
          'application/pdf',
          3000,
        ),
        5000,
        'upload',
      );
      const r = await got;
      expect(r.method).to.equal('PUT');
      expect(r.url).to.equal('/upload/abc/status%201234.pdf');
      expect(r.headers['content-length']).to.equal(String(data.length));
      expect(r.headers['transfer-encoding']).to.equal(undefined);
      expect(r.headers['content-type']).to.equal('application/pdf');
      expect(r.headers.authorization).to.equal('Basic QQ==');
      expect(r.headers.cookie).to.equal('c=1');
      expect(r.body.length).to.equal(data.length);
      expect(sha(r.body)).to.equal(sha(data));
    });

    it('uploads an empty file', async () => {
      const { path } = await file(0);
      const got = receiver(200);
      await within(uploadFile(`http://127.0.0.1:${port}/e`, {}, path, 0, 'text/plain', 3000), 5000);
      const r = await got;
      expect(r.headers['content-length']).to.equal('0');
      expect(r.body.length).to.equal(0);
    });

    it('fails on a status other than 2xx, with the status and without the URL path', async () => {
      const { path, data } = await file(1000);
      void receiver(403);
      const err = await uploadError(
        uploadFile(`http://127.0.0.1:${port}/secret-slot-id/x.pdf`, {}, path, data.length, 'application/pdf', 3000),
        'http',
      );
      expect(err.detail.status).to.equal(403);
      expect(err.message).to.contain('HTTP 403').and.to.contain('denied by test');
      expect(err.message).not.to.contain('secret-slot-id');
    });

    it('reports an early refusal (413 before the body is read) by its status', async () => {
      const { path, data } = await file(8 * 1024 * 1024);
      handler = (_req, res) => {
        res.writeHead(413, { connection: 'close' }).end('too big');
      };
      const err = await uploadError(
        uploadFile(`http://127.0.0.1:${port}/big`, {}, path, data.length, 'application/pdf', 3000),
        'http',
      );
      expect(err.detail.status).to.equal(413);
    });

    it('gives up when the service makes no progress', async () => {
      const { path, data } = await file(100);
      handler = () => {}; // reads nothing, answers nothing
      const t0 = Date.now();
      const err = await uploadError(
        uploadFile(`http://127.0.0.1:${port}/stall`, {}, path, data.length, 'application/pdf', 300),
        'timeout',
        5000,
      );
      expect(Date.now() - t0).to.be.within(250, 3000);
      expect(err.message).to.contain('no progress for 300 ms');
    });

    it('refuses a file whose size is not the slot size, and a connection refused is an io error', async () => {
      const { path } = await file(100);
      await uploadError(uploadFile(`http://127.0.0.1:${port}/x`, {}, path, 99, 'text/plain', 1000), 'io');
      await uploadError(uploadFile(`ftp://127.0.0.1/x`, {}, path, 100, 'text/plain', 1000), 'bad-slot');
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
      const deadPort = (closed.address() as AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      const err = await uploadError(
        uploadFile(`http://127.0.0.1:${deadPort}/x`, {}, path, 100, 'text/plain', 1000),
        'io',
      );
      expect(err.message).to.contain('ECONNREFUSED');
    });
  });
});
