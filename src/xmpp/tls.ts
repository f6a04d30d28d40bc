// Direct TLS for the component link (ejabberd_service with `tls: true`).
//
// @xmpp/component 0.13 speaks plain TCP only: its connection (connection-tcp)
// accepts only xmpp:// services and opens the socket as `new this.Socket()`
// then `socket.connect({host, port})`, writing the stream header on the
// socket's 'connect' event. (@xmpp/tls and xmpps:// belong to @xmpp/client
// 0.14 and are not wired into the component.) So the adapter is a Socket class
// with net.Socket's small surface that the library uses (connect, write, end,
// and the events connect, data, error, close) over tls.connect. It emits
// 'connect' only after the handshake and our own check of the certificate and
// its name: nothing, not even the stream header, is written to a server that
// failed them.
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { checkServerIdentity, connect, type PeerCertificate, type TLSSocket } from 'node:tls';

export interface TlsOptions {
  /** PEM CA certificates to trust instead of the system's; undefined = the system's. */
  ca?: string;
  /** where `ca` came from, for error messages (e.g. the file name) */
  caOrigin?: string;
  /** the name the server's certificate must carry; undefined = the host connected to */
  serverName?: string;
}

/** The server's certificate or name failed verification: a configuration error, never retried at start-up. */
export class ServerNotTrusted extends Error {
  override name = 'ServerNotTrusted';
}

/** One line about a certificate: subject, names, issuer, validity, fingerprint. */
export function describeCertificate(c: PeerCertificate | undefined): string {
  if (!c || !c.subject) return 'no certificate';
  const dn = (o: Record<string, unknown> | undefined) =>
    o
      ? Object.entries(o)
          .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
          .join(', ')
      : '?';
  const names = c.subjectaltname ? ` (${c.subjectaltname})` : '';
  return `"${dn(c.subject)}"${names}, issued by "${dn(c.issuer)}", valid ${c.valid_from} to ${c.valid_to}, SHA-256 ${c.fingerprint256}`;
}

/** Why OpenSSL would not trust a chain, in words (the code stays for searching). */
function whyUntrusted(code: string): string {
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'it is self-signed';
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return 'it is not signed by a trusted CA';
    case 'CERT_HAS_EXPIRED':
      return 'it has expired';
    case 'CERT_NOT_YET_VALID':
      return 'it is not valid yet';
    default:
      return 'it does not verify';
  }
}

/**
 * A Socket class for @xmpp/connection-tcp (set as the component's `Socket`)
 * that connects with TLS and verifies the server before it says 'connect'.
 */
export function tlsSocketClass(opts: TlsOptions): new () => TlsSocket {
  return class extends TlsSocket {
    constructor() {
      super(opts);
    }
  };
}

export class TlsSocket extends EventEmitter {
  socket: TLSSocket | undefined;

  constructor(private readonly opts: TlsOptions) {
    super();
  }

  connect(params: { host: string; port: number }): void {
    const expected = this.opts.serverName ?? params.host;
    const s = connect({
      host: params.host,
      port: params.port,
      ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}),
      // SNI carries names only (RFC 6066 §3); the identity check below covers IP addresses too.
      ...(isIP(expected) ? {} : { servername: expected }),
      // Verified by hand on 'secureConnect' (below), so that the error can say
      // what the server presented: with rejectUnauthorized the socket is gone
      // before its certificate can be read. Until then nothing is written.
      rejectUnauthorized: false,
      checkServerIdentity: (_host, cert) => checkServerIdentity(expected, cert),
    });
    this.socket = s;
    s.on('secureConnect', () => {
      const cert = s.getPeerCertificate();
      const where = `${params.host}:${params.port}`;
      let problem: string | undefined;
      if (!s.authorized) {
        const code = String(s.authorizationError ?? 'unknown');
        // The chain is checked first; the name only on a chain that verified.
        if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
          problem =
            `the server's certificate is not for "${expected}" (${cert.subjectaltname ?? 'it names no host'}); ` +
            `the expected name is xmpp.tls.serverName (XR_XMPP_TLS_SERVER_NAME)${this.opts.serverName === undefined ? `, by default the host of xmpp.service` : ''}`;
        } else {
          problem =
            `the server's certificate is not trusted: ${whyUntrusted(code)} (${code}); ` +
            `trusted: ${this.opts.caOrigin ? `the CAs in xmpp.tls.caFile (XR_XMPP_TLS_CA_FILE) ${this.opts.caOrigin}` : "the system's CAs (set xmpp.tls.caFile, XR_XMPP_TLS_CA_FILE, for a private CA)"}`;
        }
      }
      if (problem !== undefined) {
        s.destroy();
        this.emit(
          'error',
          new ServerNotTrusted(`TLS to ${where}: ${problem}; it presented ${describeCertificate(cert)}`),
        );
        return;
      }
      this.emit('connect');
    });
    s.on('data', (d: Buffer) => this.emit('data', d));
    s.on('error', (err: Error) => this.emit('error', err));
    s.on('close', (hadError: boolean) => {
      this.socket = undefined;
      this.emit('close', hadError);
    });
  }

  write(data: string, cb?: (err?: Error | null) => void): void {
    if (!this.socket) {
      cb?.(new Error('socket closed'));
      return;
    }
    this.socket.write(data, cb);
  }

  end(): void {
    this.socket?.end();
  }

  destroy(): void {
    this.socket?.destroy();
  }

  setNoDelay(noDelay?: boolean): void {
    this.socket?.setNoDelay(noDelay);
  }
}
