import { expect } from 'chai';
import { advertisedHosts, type InterfaceAddress } from '../../../../src/transfer/s5b/addresses.js';

const v4 = (address: string, internal = false): InterfaceAddress => ({ address, family: 'IPv4', internal });
const v6 = (address: string, internal = false): InterfaceAddress => ({ address, family: 'IPv6', internal });

// A company host: loopback, a LAN NIC with a private and a public-looking address, link-local and ULA IPv6.
const host = {
  lo: [v4('127.0.0.1', true), v6('::1', true)],
  eth0: [v4('10.1.2.3'), v6('fe80::1'), v6('fd00::3'), v6('2001:db8:1::20')],
  eth1: [v4('192.0.2.20'), v4('169.254.7.7')],
};

describe('transfer/s5b/addresses: which streamhost addresses are offered (XEP-0065 §5.3.1)', () => {
  it('bound to :: offers every non-loopback, non-link-local address: public IPv4, private IPv4, global IPv6, ULA', () => {
    const a = advertisedHosts({ bindHost: '::', advertiseHost: '', interfaces: host });
    expect(a.hosts).to.deep.equal(['192.0.2.20', '10.1.2.3', '2001:db8:1::20', 'fd00::3']);
    expect(a.loopbackOnly).to.equal(false);
  });

  it('bound to 0.0.0.0 offers IPv4 only (an IPv4 socket cannot take IPv6 connections)', () => {
    const a = advertisedHosts({ bindHost: '0.0.0.0', advertiseHost: '', interfaces: host });
    expect(a.hosts).to.deep.equal(['192.0.2.20', '10.1.2.3']);
  });

  it('puts advertiseHost (an address or a DNS name) first, and never twice', () => {
    expect(
      advertisedHosts({ bindHost: '::', advertiseHost: 'files.example.com', interfaces: host }).hosts,
    ).to.deep.equal(['files.example.com', '192.0.2.20', '10.1.2.3', '2001:db8:1::20', 'fd00::3']);
    expect(advertisedHosts({ bindHost: '::', advertiseHost: '10.1.2.3', interfaces: host }).hosts).to.deep.equal([
      '10.1.2.3',
      '192.0.2.20',
      '2001:db8:1::20',
      'fd00::3',
    ]);
  });

  it('never offers 127.0.0.1 when the host has another address; only loopback says so', () => {
    const a = advertisedHosts({ bindHost: '::', advertiseHost: '', interfaces: { lo: host.lo } });
    expect(a).to.deep.equal({ hosts: ['127.0.0.1'], loopbackOnly: true });
    const b = advertisedHosts({ bindHost: '0.0.0.0', advertiseHost: '', interfaces: host });
    expect(b.hosts).to.not.include('127.0.0.1');
  });

  it('bound to one address offers that address (after advertiseHost); loopback behind an advertiseHost is dropped', () => {
    expect(advertisedHosts({ bindHost: '192.0.2.20', advertiseHost: '', interfaces: host }).hosts).to.deep.equal([
      '192.0.2.20',
    ]);
    expect(
      advertisedHosts({ bindHost: '192.0.2.20', advertiseHost: '198.51.100.1', interfaces: host }).hosts,
    ).to.deep.equal(['198.51.100.1', '192.0.2.20']);
    expect(advertisedHosts({ bindHost: '127.0.0.1', advertiseHost: 'h.example', interfaces: host })).to.deep.equal({
      hosts: ['h.example'],
      loopbackOnly: false,
    });
    expect(advertisedHosts({ bindHost: '127.0.0.1', advertiseHost: '', interfaces: host })).to.deep.equal({
      hosts: ['127.0.0.1'],
      loopbackOnly: true,
    });
  });

  it('takes the numeric family of older Node builds too', () => {
    const a = advertisedHosts({
      bindHost: '::',
      advertiseHost: '',
      interfaces: {
        e: [
          { address: '2001:db8::5', family: 6, internal: false },
          { address: '192.0.2.9', family: 4, internal: false },
        ],
      },
    });
    expect(a.hosts).to.deep.equal(['192.0.2.9', '2001:db8::5']);
  });
});
