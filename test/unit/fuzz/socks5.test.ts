// Property tests of the SOCKS5 handshake parsers: arbitrary bytes never
// throw and yield well-formed results; a result once decided on a prefix
// never changes as more bytes arrive, so a handshake split anywhere by TCP
// parses exactly as if it came whole.
import { expect } from 'chai';
import fc from 'fast-check';
import {
  MAX_HANDSHAKE_BYTES,
  connectReply,
  parseConnect,
  parseGreeting,
  type Parse,
} from '../../../src/transfer/s5b/socks5.js';

const RUNS = 2000;

type Parser<T> = (buf: Buffer) => Parse<T>;

/** Feeds chunks as the streamhost does (accumulate, parse after each): the first decided result, or need-more. */
function feed<T>(parse: Parser<T>, whole: Buffer, cuts: number[]): Parse<T> {
  let buf = Buffer.alloc(0);
  let from = 0;
  for (const cut of [...cuts, whole.length]) {
    buf = Buffer.concat([buf, whole.subarray(from, cut)]);
    from = cut;
    const r = parse(buf);
    if (r.status !== 'need-more') return r;
  }
  return { status: 'need-more' };
}

/** Sorted cut points inside a buffer of the given length. */
const cutsFor = (len: number) =>
  fc.uniqueArray(fc.integer({ min: 0, max: len }), { maxLength: 12 }).map((a) => a.sort((x, y) => x - y));

const bytes = (maxLength = 600) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

/** Bytes that start like a handshake often enough to reach the deeper branches. */
const handshakeish = fc.oneof(
  bytes(),
  fc
    .tuple(fc.constantFrom([5], [5, 1], [5, 1, 0], [5, 1, 0, 3], [5, 2, 0, 1]), bytes(300))
    .map(([p, rest]) => Buffer.concat([Buffer.from(p), rest])),
);

const greeting = fc
  .uint8Array({ minLength: 1, maxLength: 255 })
  .map((methods) => ({ methods: [...methods], buf: Buffer.from([5, methods.length, ...methods]) }));

const request = fc
  .record({ addr: fc.uint8Array({ minLength: 1, maxLength: 255 }), port: fc.integer({ min: 0, max: 65535 }) })
  .map(({ addr, port }) => ({
    addr: Buffer.from(addr).toString('latin1'),
    port,
    buf: Buffer.concat([
      Buffer.from([5, 1, 0, 3, addr.length]),
      Buffer.from(addr),
      Buffer.from([port >> 8, port & 0xff]),
    ]),
  }));

function checkShape<T>(r: Parse<T>, len: number): void {
  expect(['need-more', 'bad', 'ok']).to.include(r.status);
  if (r.status === 'bad') expect(r.reason).to.be.a('string').and.not.equal('');
  if (r.status === 'ok') expect(r.consumed).to.be.within(1, len);
}

describe('fuzz: SOCKS5 handshake parsers', () => {
  it('parseGreeting on arbitrary bytes: never throws, well-formed, methods exactly as announced', () => {
    fc.assert(
      fc.property(handshakeish, (buf) => {
        const r = parseGreeting(buf);
        checkShape(r, buf.length);
        if (r.status === 'ok') {
          expect(buf[0]).to.equal(5);
          expect(r.consumed).to.equal(2 + buf[1]);
          expect(r.methods).to.deep.equal([...buf.subarray(2, r.consumed)]);
        }
        if (buf.length > 0 && buf[0] !== 5) expect(r.status).to.equal('bad');
      }),
      { numRuns: RUNS },
    );
  });

  it('parseConnect on arbitrary bytes: never throws, well-formed, only CONNECT to a domain name', () => {
    fc.assert(
      fc.property(handshakeish, (buf) => {
        const r = parseConnect(buf);
        checkShape(r, buf.length);
        if (r.status === 'ok') {
          expect([...buf.subarray(0, 4)]).to.deep.equal([5, 1, 0, 3]);
          const len = buf[4];
          expect(len).to.be.greaterThan(0);
          expect(r.consumed).to.equal(7 + len);
          expect(r.addr).to.equal(buf.subarray(5, 5 + len).toString('latin1'));
          expect(r.port).to.equal(buf.readUInt16BE(5 + len));
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('arbitrary bytes split at arbitrary points parse as the whole (a decided prefix never changes its mind)', () => {
    fc.assert(
      fc.property(
        handshakeish.chain((buf) => fc.tuple(fc.constant(buf), cutsFor(buf.length))),
        ([buf, cuts]) => {
          expect(feed(parseGreeting, buf, cuts)).to.deep.equal(parseGreeting(buf));
          expect(feed(parseConnect, buf, cuts)).to.deep.equal(parseConnect(buf));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('a valid greeting, whole or split anywhere, gives its methods; every strict prefix needs more', () => {
    fc.assert(
      fc.property(
        greeting.chain((g) => fc.tuple(fc.constant(g), cutsFor(g.buf.length), bytes(40))),
        ([g, cuts, trailing]) => {
          const whole = Buffer.concat([g.buf, trailing]);
          const expected = { status: 'ok', consumed: g.buf.length, methods: g.methods };
          expect(parseGreeting(whole)).to.deep.equal(expected);
          expect(feed(parseGreeting, whole, cuts)).to.deep.equal(expected);
          for (let i = 0; i < g.buf.length; i++)
            expect(parseGreeting(g.buf.subarray(0, i)).status).to.equal('need-more');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('a valid CONNECT request, whole or split anywhere, gives its address and port; every strict prefix needs more', () => {
    fc.assert(
      fc.property(
        request.chain((q) => fc.tuple(fc.constant(q), cutsFor(q.buf.length), bytes(40))),
        ([q, cuts, trailing]) => {
          const whole = Buffer.concat([q.buf, trailing]);
          const expected = { status: 'ok', consumed: q.buf.length, addr: q.addr, port: q.port };
          expect(parseConnect(whole)).to.deep.equal(expected);
          expect(feed(parseConnect, whole, cuts)).to.deep.equal(expected);
          for (let i = 0; i < q.buf.length; i++)
            expect(parseConnect(q.buf.subarray(0, i)).status).to.equal('need-more');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('a pipelined greeting + request fits MAX_HANDSHAKE_BYTES and parses in sequence', () => {
    fc.assert(
      fc.property(greeting, request, (g, q) => {
        const whole = Buffer.concat([g.buf, q.buf]);
        expect(whole.length).to.be.at.most(MAX_HANDSHAKE_BYTES);
        const a = parseGreeting(whole);
        expect(a.status).to.equal('ok');
        if (a.status !== 'ok') return;
        const b = parseConnect(whole.subarray(a.consumed));
        expect(b).to.deep.equal({ status: 'ok', consumed: q.buf.length, addr: q.addr, port: q.port });
      }),
      { numRuns: RUNS },
    );
  });

  it('connectReply echoes any address as a well-formed domain reply (truncated to 255 bytes)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 300 }), (rep, raw) => {
        const addr = Buffer.from(raw).toString('latin1');
        const out = connectReply(rep, addr);
        const len = Math.min(raw.length, 255);
        expect(out.length).to.equal(7 + len);
        expect([...out.subarray(0, 5)]).to.deep.equal([5, rep, 0, 3, len]);
        expect([...out.subarray(5, 5 + len)]).to.deep.equal([...raw.subarray(0, len)]);
        expect(out.readUInt16BE(5 + len)).to.equal(0);
      }),
      { numRuns: RUNS },
    );
  });
});
