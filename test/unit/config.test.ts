import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, SETTINGS, loadConfig, redacted, type Config } from '../../src/config.js';

/** The smallest environment that loads: only the required secret. */
const BASE_ENV = { XR_XMPP_SECRET: 's3cret' } as const;

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...BASE_ENV, ...extra };
}

/** Runs fn, expects a ConfigError, returns its message. */
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(ConfigError);
    expect((err as Error).name).to.equal('ConfigError');
    return (err as Error).message;
  }
  expect.fail('expected a ConfigError');
}

function setting(key: string) {
  const s = SETTINGS.find((x) => x.key === key);
  if (!s) throw new Error(`no setting ${key}`);
  return s;
}

describe('config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  let n = 0;
  async function file(ext: string, text: string): Promise<string> {
    const path = join(dir, `config-${n++}.${ext}`);
    await writeFile(path, text);
    return path;
  }

  describe('schema', () => {
    it('has unique keys and environment variables', () => {
      const keys = SETTINGS.map((s) => s.key);
      const envs = SETTINGS.map((s) => s.env);
      expect(new Set(keys).size).to.equal(keys.length);
      expect(new Set(envs).size).to.equal(envs.length);
      for (const e of envs) expect(e).to.match(/^XR_[A-Z0-9_]+$/);
    });

    it('documents every setting', () => {
      for (const s of SETTINGS) expect(s.doc, s.key).to.be.a('string').and.not.equal('');
    });
  });

  describe('defaults', () => {
    let c: Config;
    before(() => {
      c = loadConfig({ env: env() });
    });

    it('uses the documented defaults when only the secret is given', () => {
      expect(c.xmpp).to.deep.equal({
        service: ['xmpp://127.0.0.1:5275'],
        tls: { caFile: '', serverName: '' },
        domain: 'reports.example.com',
        secret: 's3cret',
        resource: 'reports',
        reconnectMaxMs: 30000,
        serverDomain: 'example.com',
        keepaliveMs: 0,
        balancing: { slots: 0, checkMs: 2000, answerMs: 500, releaseWaitMs: 30000 },
      });
      expect(c.reports).to.deep.equal({
        source: 'folder',
        folder: 'reports',
        urlTemplate: '',
        authHeader: '',
        basicUser: '',
        basicPassword: '',
        requesterHeader: '',
        timeoutMs: 30000,
        maxBytes: 100 * 1024 * 1024,
        fileName: 'status-{project}',
        spoolDir: '',
        metadataUrlTemplate: '',
      });
      expect(c.projects).to.deep.equal({ idPattern: '^[0-9]{1,12}$', example: '1234' });
      expect(c.transfer.methods).to.deep.equal(['s5b', 'ibb']);
      expect(c.transfer.offerTimeoutMs).to.equal(300000);
      expect(c.transfer.connectTimeoutMs).to.equal(60000);
      expect(c.transfer.stallTimeoutMs).to.equal(60000);
      expect(c.transfer.proxy).to.deep.equal({
        enabled: true,
        bindHost: '::',
        bindPort: 7625,
        advertiseHost: '',
        advertisePort: 0,
        handshakeTimeoutMs: 10000,
        maxConnections: 1000,
        maxPerAddress: 50,
        earlyClients: ['Pidgin', 'Finch'],
      });
      expect(c.access.allowJids).to.deep.equal([]);
      expect(c.access.denyJids).to.deep.equal([]);
      expect(c.shutdown.graceMs).to.equal(30000);
      expect(c.transfer.externalProxies).to.deep.equal([]);
      expect(c.transfer.discoverProxies).to.equal(true);
      expect(c.xmpp.serverDomain).to.equal('example.com'); // the parent of reports.example.com
      expect(c.transfer.memory).to.deep.equal({ maxUsers: 10000, ttlMs: 7 * 24 * 3600 * 1000 });
      expect(c.transfer.ibb).to.deep.equal({ blockSize: 32768, window: 8 });
      expect(c.log.level).to.equal('info');
      expect(c.metrics).to.deep.equal({ bindHost: '127.0.0.1', bindPort: 0 });
      expect(c.admin.jids).to.deep.equal([]);
    });

    it('takes the discovery domain as given, lower-cased, and discovery can be turned off', () => {
      const c = loadConfig({ env: env({ XR_XMPP_SERVER_DOMAIN: 'XMPP.Example.NET', XR_DISCOVER_PROXIES: 'false' }) });
      expect(c.xmpp.serverDomain).to.equal('xmpp.example.net');
      expect(c.transfer.discoverProxies).to.equal(false);
    });

    it('balancing slots: off by default; on with component_number; answerMs shorter than checkMs; at most 64', () => {
      const on = loadConfig({ env: env({ XR_XMPP_BALANCING_SLOTS: '2', XR_XMPP_BALANCING_CHECK_MS: '1000' }) });
      expect(on.xmpp.balancing).to.deep.equal({ slots: 2, checkMs: 1000, answerMs: 500, releaseWaitMs: 30000 });
      expect(() =>
        loadConfig({ env: env({ XR_XMPP_BALANCING_SLOTS: '2', XR_XMPP_BALANCING_CHECK_MS: '500' }) }),
      ).to.throw(/xmpp.balancing.answerMs .*shorter than xmpp.balancing.checkMs/);
      expect(() => loadConfig({ env: env({ XR_XMPP_BALANCING_SLOTS: '65' }) })).to.throw(/xmpp.balancing.slots/);
    });

    it('admin JIDs are bare, lower-cased; metrics port and metadata URL are checked', () => {
      expect(loadConfig({ env: env({ XR_ADMIN_JIDS: 'Boss@Example.com, ops@example.com' }) }).admin.jids).to.deep.equal(
        ['boss@example.com', 'ops@example.com'],
      );
      expect(() => loadConfig({ env: env({ XR_ADMIN_JIDS: 'example.com' }) })).to.throw(
        /admin.jids .*XR_ADMIN_JIDS.*bare JIDs/,
      );
      expect(() => loadConfig({ env: env({ XR_METRICS_BIND_PORT: '70000' }) })).to.throw(/metrics.bindPort/);
      expect(() =>
        loadConfig({ env: env({ XR_REPORTS_METADATA_URL_TEMPLATE: 'https://intranet/meta.json' }) }),
      ).to.throw(/metadataUrlTemplate.*\{project\}/);
      expect(() => loadConfig({ env: env({ XR_REPORTS_METADATA_URL_TEMPLATE: 'ftp://intranet/{project}' }) })).to.throw(
        /metadataUrlTemplate.*http/,
      );
      expect(() =>
        loadConfig({ env: env({ XR_REPORTS_METADATA_URL_TEMPLATE: 'https://u:p@intranet/{project}' }) }),
      ).to.throw(/metadataUrlTemplate.*credentials/);
      expect(
        loadConfig({ env: env({ XR_REPORTS_METADATA_URL_TEMPLATE: 'https://intranet/p/{project}.json' }) }).reports
          .metadataUrlTemplate,
      ).to.equal('https://intranet/p/{project}.json');
    });

    it('allow and deny lists take bare JIDs, lower-cased, and refuse anything else', () => {
      const c2 = loadConfig({
        env: env({ XR_ACCESS_ALLOW_JIDS: 'Guest@Partner.example', XR_ACCESS_DENY_JIDS: 'mallory@example.com' }),
      });
      expect(c2.access.allowJids).to.deep.equal(['guest@partner.example']);
      expect(c2.access.denyJids).to.deep.equal(['mallory@example.com']);
      expect(() => loadConfig({ env: env({ XR_ACCESS_DENY_JIDS: 'mallory@example.com/res' }) })).to.throw(
        /access.denyJids .*XR_ACCESS_DENY_JIDS.*bare JIDs/,
      );
    });

    it('allowedDomains defaults to the parent of the component domain', () => {
      expect(c.access.allowedDomains).to.deep.equal(['example.com']);
      const c2 = loadConfig({ env: env({ XR_XMPP_DOMAIN: 'Reports.Corp.Example.ORG' }) });
      expect(c2.xmpp.domain).to.equal('reports.corp.example.org');
      expect(c2.access.allowedDomains).to.deep.equal(['corp.example.org']);
    });

    it('explicit allowedDomains replace the default and are lower-cased', () => {
      const c2 = loadConfig({ env: env({ XR_ACCESS_ALLOWED_DOMAINS: ' A.example , b.example ,, ' }) });
      expect(c2.access.allowedDomains).to.deep.equal(['a.example', 'b.example']);
    });

    it('does not share default arrays between loads', () => {
      const a = loadConfig({ env: env() });
      a.transfer.methods.push('ibb');
      a.transfer.externalProxies.push('x@y:1');
      const b = loadConfig({ env: env() });
      expect(b.transfer.methods).to.deep.equal(['s5b', 'ibb']);
      expect(b.transfer.externalProxies).to.deep.equal([]);
      expect(SETTINGS.find((s) => s.key === 'transfer.methods')!.def).to.deep.equal(['s5b', 'ibb']);
    });

    it('never reads process.env when env is passed', () => {
      const saved = process.env.XR_XMPP_DOMAIN;
      process.env.XR_XMPP_DOMAIN = 'leak.example.net';
      try {
        expect(loadConfig({ env: env() }).xmpp.domain).to.equal('reports.example.com');
      } finally {
        if (saved === undefined) delete process.env.XR_XMPP_DOMAIN;
        else process.env.XR_XMPP_DOMAIN = saved;
      }
    });
  });

  describe('files', () => {
    it('reads a YAML file', async () => {
      const path = await file(
        'yaml',
        [
          'xmpp:',
          '  service: xmpp://ejabberd.internal:5347',
          '  domain: status.corp.example',
          '  secret: from-yaml',
          'reports:',
          '  source: http',
          '  urlTemplate: https://intranet.corp.example/p/{project}/status.pdf',
          '  timeoutMs: "1500"',
          '  maxBytes: 2048',
          'transfer:',
          '  methods: [ibb]',
          '  proxy:',
          '    enabled: false',
          '    bindPort: 0',
          '  externalProxies:',
          '    - proxy.corp.example@proxy.corp.example:7777',
          'access:',
          '  allowedDomains: corp.example, Partner.example',
          'log:',
          '  level: debug',
        ].join('\n'),
      );
      const c = loadConfig({ file: path, env: {} });
      expect(c.xmpp.service).to.deep.equal(['xmpp://ejabberd.internal:5347']);
      expect(c.xmpp.domain).to.equal('status.corp.example');
      expect(c.xmpp.secret).to.equal('from-yaml');
      expect(c.reports.source).to.equal('http');
      expect(c.reports.urlTemplate).to.equal('https://intranet.corp.example/p/{project}/status.pdf');
      expect(c.reports.timeoutMs).to.equal(1500);
      expect(c.reports.maxBytes).to.equal(2048);
      expect(c.transfer.methods).to.deep.equal(['ibb']);
      expect(c.transfer.proxy.enabled).to.equal(false);
      expect(c.transfer.proxy.bindPort).to.equal(0);
      expect(c.transfer.externalProxies).to.deep.equal(['proxy.corp.example@proxy.corp.example:7777']);
      expect(c.access.allowedDomains).to.deep.equal(['corp.example', 'partner.example']);
      expect(c.log.level).to.equal('debug');
      // untouched settings keep their defaults
      expect(c.xmpp.resource).to.equal('reports');
    });

    it('reads a JSON file', async () => {
      const path = await file(
        'json',
        JSON.stringify({
          xmpp: { domain: 'reports.json.example', secret: 'from-json', reconnectMaxMs: 5000 },
          reports: { folder: '/srv/reports', fileName: 'report-{project}' },
          projects: { idPattern: '^[A-Z]{2}-[0-9]+$', example: 'AB-12' },
          transfer: { ibb: { blockSize: 4096, window: 1 } },
        }),
      );
      const c = loadConfig({ file: path, env: {} });
      expect(c.xmpp.domain).to.equal('reports.json.example');
      expect(c.xmpp.secret).to.equal('from-json');
      expect(c.xmpp.reconnectMaxMs).to.equal(5000);
      expect(c.reports.folder).to.equal('/srv/reports');
      expect(c.reports.fileName).to.equal('report-{project}');
      expect(c.projects).to.deep.equal({ idPattern: '^[A-Z]{2}-[0-9]+$', example: 'AB-12' });
      expect(c.transfer.ibb).to.deep.equal({ blockSize: 4096, window: 1 });
      expect(c.access.allowedDomains).to.deep.equal(['json.example']);
    });

    it('takes the file from XR_CONFIG when no file is passed', async () => {
      const path = await file('yml', 'xmpp:\n  secret: via-xr-config\n  resource: bot\n');
      const c = loadConfig({ env: { XR_CONFIG: path } });
      expect(c.xmpp.secret).to.equal('via-xr-config');
      expect(c.xmpp.resource).to.equal('bot');
    });

    it('accepts an empty file (defaults apply)', async () => {
      const path = await file('yaml', '');
      expect(loadConfig({ file: path, env: env() }).xmpp.domain).to.equal('reports.example.com');
    });

    it('a null value in the file means "use the default"', async () => {
      const path = await file('yaml', 'xmpp:\n  secret: x\n  resource:\n');
      expect(loadConfig({ file: path, env: {} }).xmpp.resource).to.equal('reports');
    });

    it('a numeric value for a string setting becomes a string', async () => {
      const path = await file('yaml', 'xmpp:\n  secret: 12345\nprojects:\n  example: 42\n');
      const c = loadConfig({ file: path, env: {} });
      expect(c.xmpp.secret).to.equal('12345');
      expect(c.projects.example).to.equal('42');
    });

    it('refuses a missing file, naming it', () => {
      const path = join(dir, 'nope.yaml');
      const msg = configError(() => loadConfig({ file: path, env: env() }));
      expect(msg).to.include('cannot read config file').and.include(path);
    });

    it('refuses invalid YAML and invalid JSON, naming the format', async () => {
      const y = await file('yaml', 'xmpp: [unclosed\n  secret: x');
      expect(configError(() => loadConfig({ file: y, env: env() })))
        .to.include(y)
        .and.include('not valid YAML');
      const j = await file('json', '{"xmpp": ');
      expect(configError(() => loadConfig({ file: j, env: env() })))
        .to.include(j)
        .and.include('not valid JSON');
    });

    it('refuses a file whose top is not a mapping', async () => {
      const a = await file('yaml', '- a\n- b\n');
      expect(configError(() => loadConfig({ file: a, env: env() }))).to.include('expected a mapping at the top');
      const s = await file('json', '"just a string"');
      expect(configError(() => loadConfig({ file: s, env: env() }))).to.include('expected a mapping at the top');
    });
  });

  describe('unknown keys in the file', () => {
    const cases: Array<[string, string, string]> = [
      ['a top-level key', 'xmpp:\n  secret: x\nfoo: 1\n', '"foo"'],
      ['a nested key', 'xmpp:\n  secret: x\n  sercet: y\n', '"xmpp.sercet"'],
      ['a deeply nested key', 'xmpp:\n  secret: x\ntransfer:\n  proxy:\n    port: 1\n', '"transfer.proxy.port"'],
      ['an env variable name used as a key', 'XR_XMPP_SECRET: x\n', '"XR_XMPP_SECRET"'],
    ];
    for (const [what, text, key] of cases) {
      it(`refuses ${what}`, async () => {
        const path = await file('yaml', text);
        const msg = configError(() => loadConfig({ file: path, env: env() }));
        expect(msg).to.include('unknown key').and.include(key).and.include(path);
      });
    }

    // Regression guard (was a bug): a top-level key
    // that contains dots, e.g. "reports.timeoutMs: 5" or "transfer.proxy:
    // {bindPort: 1}", passes the unknown-key check (it compares the joined
    // path with the schema keys) but getPath() looks up nested mappings only,
    // so the value is silently ignored and the default used instead.
    it('refuses (or applies) a flat dotted key', async () => {
      const p1 = await file('yaml', '"reports.timeoutMs": 5000\n');
      let c: Config | undefined;
      try {
        c = loadConfig({ file: p1, env: env() });
      } catch (err) {
        expect(err).to.be.instanceOf(ConfigError);
      }
      if (c) expect(c.reports.timeoutMs, 'flat key was accepted, so it must apply').to.equal(5000);
      const p2 = await file('json', JSON.stringify({ 'transfer.proxy': { bindPort: 1 } }));
      let c2: Config | undefined;
      try {
        c2 = loadConfig({ file: p2, env: env() });
      } catch (err) {
        expect(err).to.be.instanceOf(ConfigError);
      }
      if (c2) expect(c2.transfer.proxy.bindPort, 'flat key was accepted, so it must apply').to.equal(1);
    });

    it('refuses a section given as a scalar or list', async () => {
      const p1 = await file('yaml', 'xmpp:\n  secret: x\ntransfer: 5\n');
      expect(configError(() => loadConfig({ file: p1, env: {} }))).to.include('"transfer" must be a mapping');
      const p2 = await file('yaml', 'xmpp:\n  secret: x\ntransfer:\n  proxy: [1, 2]\n');
      expect(configError(() => loadConfig({ file: p2, env: {} }))).to.include('"transfer.proxy" must be a mapping');
    });

    it('refuses unknown keys in JSON as well', async () => {
      const path = await file('json', JSON.stringify({ xmpp: { secret: 'x' }, reports: { url: 'http://x' } }));
      expect(configError(() => loadConfig({ file: path, env: {} }))).to.include('"reports.url"');
    });
  });

  describe('the environment', () => {
    it('overrides the file', async () => {
      const path = await file(
        'yaml',
        'xmpp:\n  secret: file-secret\n  domain: file.example.com\nreports:\n  timeoutMs: 1000\ntransfer:\n  methods: [s5b]\n  proxy:\n    enabled: true\n',
      );
      const c = loadConfig({
        file: path,
        env: {
          XR_XMPP_SECRET: 'env-secret',
          XR_XMPP_DOMAIN: 'env.example.org',
          XR_REPORTS_TIMEOUT_MS: ' 2500 ',
          XR_TRANSFER_METHODS: 'ibb, s5b',
          XR_PROXY_ENABLED: 'off',
        },
      });
      expect(c.xmpp.secret).to.equal('env-secret');
      expect(c.xmpp.domain).to.equal('env.example.org');
      expect(c.reports.timeoutMs).to.equal(2500);
      expect(c.transfer.methods).to.deep.equal(['ibb', 's5b']);
      expect(c.transfer.proxy.enabled).to.equal(false);
    });

    it('an empty environment variable does not override the file', async () => {
      const path = await file('yaml', 'xmpp:\n  secret: file-secret\n  resource: fromfile\n');
      const c = loadConfig({ file: path, env: { XR_XMPP_SECRET: '', XR_XMPP_RESOURCE: '' } });
      expect(c.xmpp.secret).to.equal('file-secret');
      expect(c.xmpp.resource).to.equal('fromfile');
    });

    it('parses booleans in the usual spellings', () => {
      for (const v of ['true', 'TRUE', '1', 'yes', 'On'])
        expect(loadConfig({ env: env({ XR_PROXY_ENABLED: v }) }).transfer.proxy.enabled, v).to.equal(true);
      for (const v of ['false', 'False', '0', 'no', 'OFF'])
        expect(loadConfig({ env: env({ XR_PROXY_ENABLED: v }) }).transfer.proxy.enabled, v).to.equal(false);
    });

    it('parses lists as comma-separated strings', () => {
      const c = loadConfig({ env: env({ XR_EXTERNAL_PROXIES: 'a.example@a.example:7777, b.example@10.0.0.1:1080' }) });
      expect(c.transfer.externalProxies).to.deep.equal(['a.example@a.example:7777', 'b.example@10.0.0.1:1080']);
    });

    it('accepts an IPv6 service address', () => {
      expect(loadConfig({ env: env({ XR_XMPP_SERVICE: 'xmpp://[::1]:5275' }) }).xmpp.service).to.deep.equal([
        'xmpp://[::1]:5275',
      ]);
    });

    it('accepts several servers, in order, plain and TLS', () => {
      const c = loadConfig({
        env: env({
          XR_XMPP_SERVICE: 'xmpps://xmpp-a.corp.example:5275, xmpp://[2001:db8::2]:5275,xmpps://192.0.2.3:5276',
        }),
      });
      expect(c.xmpp.service).to.deep.equal([
        'xmpps://xmpp-a.corp.example:5275',
        'xmpp://[2001:db8::2]:5275',
        'xmpps://192.0.2.3:5276',
      ]);
    });

    it('takes a CA file and a server name for xmpps:// servers', async () => {
      const ca = await file(
        'pem',
        // a real (throw-away, self-signed) CA certificate
        (await import('node:child_process')).execFileSync(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'rsa:2048',
            '-nodes',
            '-keyout',
            join(dir, 'ca-unit.key'),
            '-subj',
            '/CN=unit CA',
            '-days',
            '1',
          ],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
        ),
      );
      const c = loadConfig({
        env: env({
          XR_XMPP_SERVICE: 'xmpps://127.0.0.1:5275',
          XR_XMPP_TLS_CA_FILE: ca,
          XR_XMPP_TLS_SERVER_NAME: 'xmpp.corp.example',
        }),
      });
      expect(c.xmpp.tls).to.deep.equal({ caFile: ca, serverName: 'xmpp.corp.example' });
    });
  });

  describe('the secret', () => {
    it('is required', () => {
      const msg = configError(() => loadConfig({ env: {} }));
      expect(msg).to.include('xmpp.secret').and.include('XR_XMPP_SECRET').and.include('required');
    });

    it('an empty environment variable does not count', () => {
      const msg = configError(() => loadConfig({ env: { XR_XMPP_SECRET: '' } }));
      expect(msg).to.include('xmpp.secret').and.include('XR_XMPP_SECRET').and.include('required');
    });

    it('an empty string in the file is refused', async () => {
      const path = await file('yaml', 'xmpp:\n  secret: ""\n');
      const msg = configError(() => loadConfig({ file: path, env: {} }));
      expect(msg).to.include('xmpp.secret').and.include('XR_XMPP_SECRET').and.include('must not be empty');
    });

    it('a bad secret value is not echoed', async () => {
      const path = await file('yaml', 'xmpp:\n  secret: [hunter2]\n');
      const msg = configError(() => loadConfig({ file: path, env: {} }));
      expect(msg).to.include('xmpp.secret').and.include('(hidden)');
      expect(msg).not.to.include('hunter2');
    });
  });

  describe('bad values', () => {
    // [env variable, value, what the message must say was expected]
    const typeCases: Array<[string, string, string]> = [
      ['XR_XMPP_RECONNECT_MAX_MS', 'soon', 'a whole number'],
      ['XR_REPORTS_TIMEOUT_MS', '1.5', 'a whole number'],
      ['XR_REPORTS_MAX_BYTES', '10MB', 'a whole number'],
      ['XR_REPORTS_TIMEOUT_MS', '99', 'a whole number >= 100'],
      ['XR_XMPP_RECONNECT_MAX_MS', '-5', 'a whole number >= 1000'],
      ['XR_PROXY_BIND_PORT', '-1', 'a whole number >= 0'],
      ['XR_REPORTS_MAX_BYTES', '0', 'a whole number >= 1'],
      ['XR_PROXY_ENABLED', 'maybe', 'true or false'],
      ['XR_REPORTS_SOURCE', 'ftp', 'one of folder, http'],
      ['XR_LOG_LEVEL', 'verbose', 'one of trace, debug, info, warn, error, fatal, silent'],
    ];

    for (const [envVar, value, expected] of typeCases) {
      it(`${envVar}=${JSON.stringify(value)} is refused with "expected ${expected}", naming the variable`, () => {
        const msg = configError(() => loadConfig({ env: env({ [envVar]: value }) }));
        expect(msg).to.include(envVar).and.include(`expected ${expected}`).and.include(JSON.stringify(value));
      });
    }

    // The same type errors from the file name the key.
    const fileCases: Array<[string, string, string]> = [
      ['reports:\n  timeoutMs: soon\n', 'reports.timeoutMs', 'a whole number'],
      ['reports:\n  timeoutMs: 2.5\n', 'reports.timeoutMs', 'a whole number'],
      ['reports:\n  timeoutMs: true\n', 'reports.timeoutMs', 'a whole number'],
      ['reports:\n  maxBytes: 0\n', 'reports.maxBytes', 'a whole number >= 1'],
      ['transfer:\n  proxy:\n    enabled: maybe\n', 'transfer.proxy.enabled', 'true or false'],
      ['transfer:\n  proxy:\n    enabled: 1\n', 'transfer.proxy.enabled', 'true or false'],
      ['reports:\n  source: [folder]\n', 'reports.source', 'one of folder, http'],
      ['transfer:\n  methods: 5\n', 'transfer.methods', 'a list of strings'],
      ['transfer:\n  methods: [s5b, 5]\n', 'transfer.methods', 'a list of strings'],
      ['xmpp:\n  domain: {a: 1}\n', 'xmpp.domain', 'a string'],
      ['xmpp:\n  resource: true\n', 'xmpp.resource', 'a string'],
    ];
    for (const [text, key, expected] of fileCases) {
      it(`file ${JSON.stringify(text.trim())} is refused with "expected ${expected}", naming ${key}`, async () => {
        const path = await file('yaml', text);
        const msg = configError(() => loadConfig({ file: path, env: env() }));
        expect(msg).to.include(key).and.include(`expected ${expected}`).and.include(path);
      });
    }

    // Regression guard (was a bug): a value of the wrong type was reported with
    // only one of its two names: from the environment "environment
    // XR_REPORTS_TIMEOUT_MS: expected a whole number ..." (no key), from the
    // file "<file>: reports.timeoutMs: expected ..." (no env variable). Every
    // other ConfigError names both, as "reports.timeoutMs (environment XR_...)".
    it('a type error names both the key and the env variable', async () => {
      const fromEnv = configError(() => loadConfig({ env: env({ XR_REPORTS_TIMEOUT_MS: 'soon' }) }));
      expect(fromEnv).to.include('reports.timeoutMs').and.include('XR_REPORTS_TIMEOUT_MS');
      const path = await file('yaml', 'xmpp:\n  secret: x\nreports:\n  timeoutMs: soon\n');
      const fromFile = configError(() => loadConfig({ file: path, env: {} }));
      expect(fromFile).to.include('reports.timeoutMs').and.include('XR_REPORTS_TIMEOUT_MS');
    });

    // Checks made after all values are read: message "<key> (environment <VAR>): <what was expected>".
    const validateCases: Array<[string, Record<string, string>, string, RegExp]> = [
      [
        'a service that is not xmpp://host:port',
        { XR_XMPP_SERVICE: 'http://127.0.0.1:5275' },
        'xmpp.service',
        /expected xmpp:\/\/host:port/,
      ],
      [
        'a service without a port',
        { XR_XMPP_SERVICE: 'xmpp://127.0.0.1' },
        'xmpp.service',
        /expected xmpp:\/\/host:port/,
      ],
      ['a service with a path', { XR_XMPP_SERVICE: 'xmpp://h:5275/x' }, 'xmpp.service', /expected xmpp:\/\/host:port/],
      [
        'a bad entry among several, naming it',
        { XR_XMPP_SERVICE: 'xmpp://a.example:5275,xmpps://b.example' },
        'xmpp.service',
        /: entry 2 of 2, "xmpps:\/\/b.example": expected xmpp:\/\/host:port or xmpps:\/\/host:port$/,
      ],
      [
        'a port out of range',
        { XR_XMPP_SERVICE: 'xmpp://a.example:5275,xmpp://b.example:70000' },
        'xmpp.service',
        /entry 2 of 2, "xmpp:\/\/b.example:70000": port 70000 is not 1-65535/,
      ],
      [
        'a server listed twice',
        { XR_XMPP_SERVICE: 'xmpp://a.example:5275,xmpp://A.example:5275' },
        'xmpp.service',
        /entry 2 of 2, "xmpp:\/\/A.example:5275" is listed twice/,
      ],
      ['no server at all', { XR_XMPP_SERVICE: ' , ' }, 'xmpp.service', /give at least one server/],
      [
        'a CA file without any xmpps:// server',
        { XR_XMPP_TLS_CA_FILE: '/etc/ssl/certs/ca-certificates.crt' },
        'xmpp.tls.caFile',
        /no server in xmpp.service uses TLS \(xmpps:\/\/host:port\): the link would not be encrypted/,
      ],
      [
        'a server name without any xmpps:// server',
        { XR_XMPP_TLS_SERVER_NAME: 'xmpp.example.com' },
        'xmpp.tls.serverName',
        /no server in xmpp.service uses TLS/,
      ],
      [
        'a CA file that is not there',
        { XR_XMPP_SERVICE: 'xmpps://a.example:5275', XR_XMPP_TLS_CA_FILE: '/nonexistent/ca.pem' },
        'xmpp.tls.caFile',
        /cannot read \/nonexistent\/ca.pem: ENOENT/,
      ],
      [
        'a CA file without a certificate',
        { XR_XMPP_SERVICE: 'xmpps://a.example:5275', XR_XMPP_TLS_CA_FILE: 'package.json' },
        'xmpp.tls.caFile',
        /package.json holds no usable CA certificate: no PEM certificate in it/,
      ],
      [
        'a server name with a space',
        { XR_XMPP_SERVICE: 'xmpps://a.example:5275', XR_XMPP_TLS_SERVER_NAME: 'a b' },
        'xmpp.tls.serverName',
        /expected a host name or address/,
      ],
      ['a domain without a dot', { XR_XMPP_DOMAIN: 'localhost' }, 'xmpp.domain', /expected a domain name/],
      ['a domain with a space', { XR_XMPP_DOMAIN: 'reports example.com' }, 'xmpp.domain', /expected a domain name/],
      ['a domain with an @', { XR_XMPP_DOMAIN: 'x@reports.example.com' }, 'xmpp.domain', /expected a domain name/],
      ['a resource with a slash', { XR_XMPP_RESOURCE: 'a/b' }, 'xmpp.resource', /expected letters, digits/],
      ['a resource longer than 64', { XR_XMPP_RESOURCE: 'r'.repeat(65) }, 'xmpp.resource', /expected letters, digits/],
      [
        'an id pattern that is not a regex',
        { XR_PROJECTS_ID_PATTERN: '^[0-9' },
        'projects.idPattern',
        /not a valid regular expression/,
      ],
      [
        'an http source without a template',
        { XR_REPORTS_SOURCE: 'http' },
        'reports.urlTemplate',
        /URL template containing \{project\}/,
      ],
      [
        'a template without {project}',
        { XR_REPORTS_SOURCE: 'http', XR_REPORTS_URL_TEMPLATE: 'http://intranet/status.pdf' },
        'reports.urlTemplate',
        /containing \{project\}/,
      ],
      [
        'a template that is not a URL',
        { XR_REPORTS_SOURCE: 'http', XR_REPORTS_URL_TEMPLATE: 'intranet/{project}.pdf' },
        'reports.urlTemplate',
        /not a valid URL/,
      ],
      [
        'a template that is not http',
        { XR_REPORTS_SOURCE: 'http', XR_REPORTS_URL_TEMPLATE: 'ftp://intranet/{project}.pdf' },
        'reports.urlTemplate',
        /expected an http: or https: URL/,
      ],
      [
        'basic auth together with an auth header',
        {
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: 'http://i/{project}',
          XR_REPORTS_AUTH_HEADER: 'Bearer x',
          XR_REPORTS_BASIC_USER: 'u',
        },
        'reports.basicUser',
        /either basic auth or reports.authHeader/,
      ],
      [
        'a file name without {project}',
        { XR_REPORTS_FILE_NAME: 'status' },
        'reports.fileName',
        /plain file name containing \{project\}/,
      ],
      ['a file name with a slash', { XR_REPORTS_FILE_NAME: '../{project}' }, 'reports.fileName', /plain file name/],
      ['a file name with a backslash', { XR_REPORTS_FILE_NAME: 'a\\{project}' }, 'reports.fileName', /plain file name/],
      [
        'an unknown transfer method',
        { XR_TRANSFER_METHODS: 's5b,jingle' },
        'transfer.methods',
        /unknown method "jingle"/,
      ],
      ['no transfer method', { XR_TRANSFER_METHODS: ' , ' }, 'transfer.methods', /at least one method/],
      ['a bind port above 65535', { XR_PROXY_BIND_PORT: '65536' }, 'transfer.proxy.bindPort', /up to 65535/],
      [
        'an advertised port above 65535',
        { XR_PROXY_ADVERTISE_PORT: '70000' },
        'transfer.proxy.advertisePort',
        /up to 65535/,
      ],
      [
        'an external proxy without a port',
        { XR_EXTERNAL_PROXIES: 'proxy.example@proxy.example' },
        'transfer.externalProxies',
        /expected jid@host:port/,
      ],
      [
        'an external proxy without a jid',
        { XR_EXTERNAL_PROXIES: 'proxy.example:7777' },
        'transfer.externalProxies',
        /expected jid@host:port/,
      ],
      [
        'a discovery domain that is no domain',
        { XR_XMPP_SERVER_DOMAIN: 'example.com/x' },
        'xmpp.serverDomain',
        /expected a domain/,
      ],
      ['a negative memory size', { XR_MEMORY_MAX_USERS: '-1' }, 'transfer.memory.maxUsers', />= 0/],
      ['an IBB block size above 65535', { XR_IBB_BLOCK_SIZE: '65536' }, 'transfer.ibb.blockSize', /at most 65535/],
      ['an IBB window above 256', { XR_IBB_WINDOW: '257' }, 'transfer.ibb.window', /at most 256/],
    ];
    for (const [what, vars, key, expected] of validateCases) {
      it(`refuses ${what}, naming ${key} and its variable`, () => {
        const msg = configError(() => loadConfig({ env: env(vars) }));
        expect(msg).to.include(`${key} (environment ${setting(key).env})`);
        expect(msg).to.match(expected);
      });
    }

    it('the same checks apply to values from the file', async () => {
      const path = await file('yaml', 'xmpp:\n  secret: x\n  domain: nodots\n');
      const msg = configError(() => loadConfig({ file: path, env: {} }));
      expect(msg)
        .to.include('xmpp.domain (environment XR_XMPP_DOMAIN)')
        .and.include('expected a domain name')
        .and.include('"nodots"');
    });

    it('basic auth and an auth header together are fine for the folder source', () => {
      const c = loadConfig({ env: env({ XR_REPORTS_AUTH_HEADER: 'Bearer x', XR_REPORTS_BASIC_USER: 'u' }) });
      expect(c.reports.source).to.equal('folder');
    });

    it('accepts a valid http setup', () => {
      const c = loadConfig({
        env: env({
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: 'https://intranet.example.com/projects/{project}/status.pdf',
          XR_REPORTS_BASIC_USER: 'bot',
          XR_REPORTS_BASIC_PASSWORD: 'pw',
          XR_REPORTS_REQUESTER_HEADER: 'X-Requested-By',
        }),
      });
      expect(c.reports.basicUser).to.equal('bot');
      expect(c.reports.requesterHeader).to.equal('X-Requested-By');
    });
  });

  describe('redacted()', () => {
    it('hides xmpp.secret, reports.authHeader and reports.basicPassword', () => {
      const c = loadConfig({
        env: env({
          XR_XMPP_SECRET: 'component-pw',
          XR_REPORTS_SOURCE: 'http',
          XR_REPORTS_URL_TEMPLATE: 'http://i.example/{project}',
          XR_REPORTS_AUTH_HEADER: 'Bearer tok-123',
        }),
      });
      const r = redacted(c) as { xmpp: Record<string, unknown>; reports: Record<string, unknown> };
      expect(r.xmpp.secret).to.equal('(hidden)');
      expect(r.reports.authHeader).to.equal('(hidden)');
      expect(JSON.stringify(r)).not.to.include('component-pw').and.not.include('tok-123');
      // everything else is kept
      expect(r.xmpp.domain).to.equal('reports.example.com');
      expect(r.reports.urlTemplate).to.equal('http://i.example/{project}');

      const c2 = loadConfig({ env: env({ XR_REPORTS_BASIC_USER: 'bot', XR_REPORTS_BASIC_PASSWORD: 'basic-pw' }) });
      const r2 = redacted(c2) as { reports: Record<string, unknown> };
      expect(r2.reports.basicPassword).to.equal('(hidden)');
      expect(r2.reports.basicUser).to.equal('bot');
      expect(JSON.stringify(r2)).not.to.include('basic-pw');
    });

    it('does not change the config it is given', () => {
      const c = loadConfig({ env: env({ XR_XMPP_SECRET: 'component-pw' }) });
      redacted(c);
      expect(c.xmpp.secret).to.equal('component-pw');
    });

    it('hides every setting marked secret', () => {
      const secrets = SETTINGS.filter((s) => s.secret).map((s) => s.key);
      expect(secrets).to.include.members(['xmpp.secret', 'reports.authHeader', 'reports.basicPassword']);
    });
  });
});
