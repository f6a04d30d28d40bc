import { expect } from 'chai';
import {
  MAX_HANDSHAKE_BYTES,
  REPLY,
  connectReply,
  dstAddr,
  greetingReply,
  parseConnect,
  parseGreeting,
} from '../../../../src/transfer/s5b/socks5.js';

function connectRequest(addr: string, port = 0, cmd = 1, atyp = 3): Buffer {
  const a = Buffer.from(addr, 'latin1');
  const b = Buffer.alloc(7 + a.length);
  b[0] = 5;
  b[1] = cmd;
  b[2] = 0;
  b[3] = atyp;
  b[4] = a.length;
  a.copy(b, 5);
  b.writeUInt16BE(port, 5 + a.length);
  return b;
}

describe('transfer/socks5', () => {
  it('computes DST.ADDR as hex SHA1 of sid + initiator + target (XEP-0065 §5.3.2)', () => {
    // SHA1("abc") is the FIPS 180 test vector: the three parts are concatenated in this order.
    expect(dstAddr('a', 'b', 'c')).to.equal('a9993e364706816aba3e25717850c26c9cd0d89d');
    expect(dstAddr('c', 'b', 'a')).to.not.equal(dstAddr('a', 'b', 'c'));
    expect(dstAddr('vxf9n471bn46', 'requester@example.com/foo', 'target@example.org/bar')).to.match(/^[0-9a-f]{40}$/);
  });

  it('parses a greeting, also when it arrives byte by byte', () => {
    const g = Buffer.from([5, 2, 0, 2]);
    for (let i = 0; i < g.length; i++) expect(parseGreeting(g.subarray(0, i)).status).to.equal('need-more');
    const r = parseGreeting(g);
    expect(r).to.deep.equal({ status: 'ok', consumed: 4, methods: [0, 2] });
  });

  it('refuses greetings that are not SOCKS5 or offer no method', () => {
    expect(parseGreeting(Buffer.from([4, 1, 0])).status).to.equal('bad');
    expect(parseGreeting(Buffer.from('GET / HTTP/1.1\r\n')).status).to.equal('bad');
    expect(parseGreeting(Buffer.from([5, 0])).status).to.equal('bad');
  });

  it('parses CONNECT to a 40-character domain address with port 0', () => {
    const addr = dstAddr('s', 'a@b/c', 'd@e/f');
    const req = connectRequest(addr);
    for (let i = 0; i < req.length; i++) expect(parseConnect(req.subarray(0, i)).status).to.equal('need-more');
    expect(parseConnect(req)).to.deep.equal({ status: 'ok', consumed: req.length, addr, port: 0 });
  });

  it('refuses other commands, address types and a zero-length address', () => {
    expect(parseConnect(connectRequest('x', 0, 2)).status).to.equal('bad'); // BIND
    expect(parseConnect(connectRequest('x', 0, 1, 1)).status).to.equal('bad'); // IPv4
    expect(parseConnect(connectRequest('', 0)).status).to.equal('bad');
    const rsv = connectRequest('x');
    rsv[2] = 1;
    expect(parseConnect(rsv).status).to.equal('bad');
  });

  it('builds replies byte-exact', () => {
    expect([...greetingReply(0)]).to.deep.equal([5, 0]);
    const r = connectReply(REPLY.SUCCEEDED, 'abc');
    expect([...r]).to.deep.equal([5, 0, 0, 3, 3, 0x61, 0x62, 0x63, 0, 0]);
  });

  it('never throws on random bytes (2000 cases)', () => {
    let seed = 42;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256;
    for (let i = 0; i < 2000; i++) {
      const len = rnd() % 64;
      const b = Buffer.from(Array.from({ length: len }, rnd));
      if (i % 2) b[0] = 5;
      const g = parseGreeting(b);
      const c = parseConnect(b);
      expect(['need-more', 'bad', 'ok']).to.include(g.status);
      expect(['need-more', 'bad', 'ok']).to.include(c.status);
    }
    expect(MAX_HANDSHAKE_BYTES).to.equal(519);
  });
});
