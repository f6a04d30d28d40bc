// A throw-away test CA and server certificates signed by it (openssl), for
// TLS in tests: ejabberd's STARTTLS for Dino, the component link over TLS.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './x11.js';

export interface TestCa {
  caCert: string;
  /** server certificate for `localhost` (and *.localhost), its key and the CA, for XR_EJ_CERTFILE */
  serverPem: string;
  /** the system CA bundle plus the test CA, for Dino */
  bundle: string;
}

/** A throw-away CA and a `localhost` server certificate signed by it (openssl). */
export async function makeTestCa(dir: string): Promise<TestCa> {
  await mkdir(dir, { recursive: true });
  const p = (f: string) => join(dir, f);
  const t = { timeoutMs: 60_000 };
  await run(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      p('ca.key'),
      '-out',
      p('ca.crt'),
      '-days',
      '2',
      '-subj',
      '/CN=xmpp-reports test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    t,
  );
  await run(
    'openssl',
    [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      p('server.key'),
      '-out',
      p('server.csr'),
      '-subj',
      '/CN=localhost',
    ],
    t,
  );
  await writeFile(
    p('ext.cnf'),
    'subjectAltName=DNS:localhost,DNS:*.localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
  );
  await run(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      p('server.csr'),
      '-CA',
      p('ca.crt'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-out',
      p('server.crt'),
      '-days',
      '2',
      '-extfile',
      p('ext.cnf'),
    ],
    t,
  );
  const [crt, key, ca] = await Promise.all([
    readFile(p('server.crt'), 'utf8'),
    readFile(p('server.key'), 'utf8'),
    readFile(p('ca.crt'), 'utf8'),
  ]);
  await writeFile(p('server.pem'), crt + key + ca, { mode: 0o600 });
  const system = existsSync('/etc/ssl/certs/ca-certificates.crt')
    ? await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8')
    : '';
  await writeFile(p('bundle.crt'), system + '\n' + ca);
  return { caCert: p('ca.crt'), serverPem: p('server.pem'), bundle: p('bundle.crt') };
}
