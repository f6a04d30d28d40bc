/**
 * A real Converse.js 14 (npm `converse.js`) as a chat client for integration
 * tests, in Debian's Chromium driven headless by puppeteer-core (see shared
 * notes, "Real clients of Debian bookworm"):
 *
 * - converse.js's dist files and a small HTML page are served from loopback by
 *   a static HTTP server started here, never from a CDN; the page loads
 *   Converse as an ES module with `view_mode: 'overlayed'` and logs in over
 *   the server's WebSocket (`ws://127.0.0.1:<http port>/ws`);
 * - Chromium runs as root with --no-sandbox, the flags that keep it off the
 *   network, a fresh --user-data-dir, and a host resolver that resolves no
 *   name but localhost; every URL the browser asks for is recorded, so a test
 *   can check that all of them were loopback;
 * - a small page plugin hands the test Converse's own API (to open a chat);
 *   the message itself is typed into the chat's text area and sent with Enter,
 *   and a link in the chat is clicked like a user would;
 * - downloads go to <workDir>/downloads through CDP Browser.setDownloadBehavior,
 *   one file per download named by its CDP guid.
 *
 * The browser and the static server are stopped by the handles (and the pid)
 * this module got; every wait is bounded.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type CDPSession, type Page } from 'puppeteer-core';

export const CHROMIUM = '/usr/bin/chromium';

/** As root, off the network (shared env notes for this machine), plus a resolver that knows only localhost. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  '--window-size=1280,900',
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rejects after ms with `what` in the message. */
async function bounded<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Throws a message saying what to install when Debian's Chromium is missing. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} not found: the Converse.js test needs Debian's chromium (puppeteer-core downloads no browser). ` +
        'Install it with `apt-get install chromium` or `bash scripts/deps.sh test` (npm test runs that).',
    );
  }
}

/** node_modules/converse.js/dist */
function converseDist(): string {
  return dirname(fileURLToPath(import.meta.resolve('converse.js/dist/converse.js')));
}

export function converseVersion(): string {
  const pkg = JSON.parse(readFileSync(join(converseDist(), '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** True for a URL that stays on this machine; data:/blob:/about: are not network requests at all. */
export function isLoopbackUrl(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (['data:', 'blob:', 'about:', 'chrome:', 'devtools:'].includes(u.protocol)) return true;
  const h = u.hostname;
  return h === 'localhost' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.eot': 'application/vnd.ms-fontobject',
  '.mp3': 'audio/mpeg',
  '.ogg': 'audio/ogg',
};

/** The page: Converse as an ES module, with a plugin that hands the test its API and connection state. */
function indexHtml(settings: Record<string, unknown>): string {
  const json = JSON.stringify(settings).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>xmpp-reports: Converse.js test</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dist/converse.min.css">
<!-- A chat box as big as a user could drag it, so that the screenshot shows the whole conversation. -->
<style>#conversejs.conversejs { --overlayed-chat-height: 860px; --overlayed-chat-width: 520px; }</style>
</head>
<body>
<script type="application/json" id="xr-settings">${json}</script>
<script type="module">
import converse from '/dist/converse.js';
const xr = (window.xrTest = { connected: false, events: [] });
converse.plugins.add('xr-test', {
  initialize() {
    const api = this._converse.api;
    xr.api = api;
    api.listen.on('connected', () => { xr.connected = true; xr.events.push('connected'); });
    api.listen.on('reconnected', () => xr.events.push('reconnected'));
    api.listen.on('disconnected', () => { xr.connected = false; xr.events.push('disconnected'); });
  },
});
const settings = JSON.parse(document.getElementById('xr-settings').textContent);
converse.initialize({ ...settings, whitelisted_plugins: ['xr-test'] }).catch((e) => xr.events.push('error: ' + e));
</script>
</body>
</html>
`;
}

/** Serves `/` (the page) and `/dist/*` (converse.js's dist folder) on 127.0.0.1, nothing else. */
async function startStaticServer(page: string): Promise<{ server: Server; port: number; served: string[] }> {
  const dist = converseDist();
  const served: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    served.push(`${req.method} ${path}`);
    const send = (status: number, type: string, body: Buffer | string) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    if (path === '/' || path === '/index.html') return send(200, MIME['.html'], page);
    if (!path.startsWith('/dist/')) return send(404, 'text/plain', 'not found\n');
    const file = normalize(join(dist, path.slice('/dist/'.length)));
    if (!file.startsWith(dist + sep)) return send(404, 'text/plain', 'not found\n');
    readFile(file).then(
      (body) => send(200, MIME[extname(file)] ?? 'application/octet-stream', body),
      () => send(404, 'text/plain', 'not found\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port, served };
}

export interface ConverseOptions {
  /** screenshots, downloads, the browser profile and the browser's console log */
  workDir: string;
  /** e.g. ws://127.0.0.1:25224/ws */
  websocketUrl: string;
  jid: string;
  password: string;
  /** for the page to load and Converse to log in; default 60 s */
  loginTimeoutMs?: number;
  /** more Converse settings, over the defaults here (e.g. `{ loglevel: 'debug' }` logs every stanza to the console) */
  settings?: Record<string, unknown>;
}

export interface Download {
  /** the file as Chromium saved it */
  path: string;
  /** the name Chromium would have given it (from Content-Disposition) */
  suggestedFilename: string;
  url: string;
  bytes: Buffer;
}

interface DownloadState {
  guid: string;
  url: string;
  suggestedFilename: string;
  state: 'inProgress' | 'completed' | 'canceled';
}

/*
 * Browser-side code runs in the page, where the DOM exists; this project's tsconfig has no DOM lib.
 * The few browser objects used are typed here, just enough for the callbacks below.
 */
interface PageElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
}
interface PageGlobals {
  document: { querySelectorAll(selector: string): ArrayLike<PageElement> };
  xrTest?: {
    connected: boolean;
    events: string[];
    api?: { chats: { open(jid: string, attrs: object, force: boolean): Promise<unknown> } };
  };
}
// In the callbacks, `globalThis as unknown as PageGlobals` is the page's global object: a cast, because the
// DOM types are not part of this build (and a helper function could not be used: the callbacks run in the page).

/** One Converse.js user in one headless Chromium. */
export class ConverseClient {
  /** every URL the browser requested: page loads, subresources, WebSockets, downloads */
  readonly requests: string[] = [];
  /** the page's console, page errors and failed requests, one line each */
  readonly console: string[] = [];
  private readonly downloads = new Map<string, DownloadState>();

  private constructor(
    readonly opts: ConverseOptions,
    private readonly browser: Browser,
    private readonly page: Page,
    private readonly browserSession: CDPSession,
    private readonly server: Server,
    readonly served: string[],
    readonly downloadDir: string,
  ) {}

  static async start(opts: ConverseOptions): Promise<ConverseClient> {
    requireChromium();
    const loginTimeoutMs = opts.loginTimeoutMs ?? 60_000;
    const profileDir = join(opts.workDir, 'chromium-profile');
    const downloadDir = join(opts.workDir, 'downloads');
    for (const dir of [profileDir, downloadDir]) {
      await rm(dir, { recursive: true, force: true }); // a fresh profile every time
      await mkdir(dir, { recursive: true });
    }

    const settings = {
      view_mode: 'overlayed',
      websocket_url: opts.websocketUrl,
      discover_connection_methods: false, // no XEP-0156 look-up of the domain (no DNS, no https)
      jid: opts.jid,
      password: opts.password,
      auto_login: true,
      auto_reconnect: false,
      i18n: 'en',
      loglevel: 'info',
      assets_path: '/dist/',
      play_sounds: false,
      show_desktop_notifications: false,
      show_send_button: true,
      persistent_store: 'localStorage',
      clear_cache_on_logout: true,
      ...opts.settings,
    };
    const { server, port, served } = await startStaticServer(indexHtml(settings));

    let browser: Browser | undefined;
    try {
      browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_FLAGS,
        userDataDir: profileDir,
        pipe: true, // DevTools over a pipe: no debugging port
        timeout: 30_000,
        protocolTimeout: 60_000,
        defaultViewport: { width: 1280, height: 900 },
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
      });
      const page = (await browser.pages())[0] ?? (await browser.newPage());
      const browserSession = await browser.target().createCDPSession();
      const client = new ConverseClient(opts, browser, page, browserSession, server, served, downloadDir);
      await client.watch();
      await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'load', timeout: 30_000 });
      await client.waitForLogin(loginTimeoutMs);
      return client;
    } catch (err) {
      await browser?.close().catch(() => {});
      server.closeAllConnections();
      server.close();
      throw err;
    }
  }

  /** Records requests, console lines and downloads. */
  private async watch(): Promise<void> {
    const { page, browserSession } = this;
    page.on('console', (m) => this.console.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => this.console.push(`pageerror: ${e instanceof Error ? e.message : String(e)}`));
    page.on('requestfailed', (r) => this.console.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    const pageSession = await page.createCDPSession();
    pageSession.on('Network.requestWillBeSent', (e) => this.requests.push(e.request.url));
    pageSession.on('Network.webSocketCreated', (e) => this.requests.push(e.url));
    await pageSession.send('Network.enable');
    // Pages opened later (a link with target=_blank opens a tab before the download starts).
    this.browser.on('targetcreated', (t) => {
      const url = t.url();
      if (url && url !== 'about:blank') this.requests.push(url);
    });
    browserSession.on('Browser.downloadWillBegin', (e) => {
      this.requests.push(e.url);
      this.downloads.set(e.guid, {
        guid: e.guid,
        url: e.url,
        suggestedFilename: e.suggestedFilename,
        state: 'inProgress',
      });
    });
    browserSession.on('Browser.downloadProgress', (e) => {
      const d = this.downloads.get(e.guid);
      if (d && e.state !== 'inProgress') d.state = e.state;
    });
    await browserSession.send('Browser.setDownloadBehavior', {
      behavior: 'allowAndName', // saved as <downloadDir>/<guid>
      downloadPath: this.downloadDir,
      eventsEnabled: true,
    });
  }

  private async waitForLogin(ms: number): Promise<void> {
    try {
      await this.page.waitForFunction(() => (globalThis as unknown as PageGlobals).xrTest?.connected === true, {
        timeout: ms,
        polling: 100,
      });
    } catch {
      const events = await this.page
        .evaluate(() => (globalThis as unknown as PageGlobals).xrTest?.events ?? [])
        .catch(() => []);
      throw new Error(
        `Converse.js did not log in as ${this.opts.jid} over ${this.opts.websocketUrl} within ${ms} ms ` +
          `(page events: ${events.join(', ') || 'none'}). Browser console, last lines:\n${this.consoleTail()}`,
      );
    }
  }

  consoleTail(lines = 30): string {
    return this.console.slice(-lines).join('\n');
  }

  /** URLs the browser asked for that leave this machine (should be none). */
  nonLoopbackRequests(): string[] {
    return this.requests.filter((u) => !isLoopbackUrl(u));
  }

  private chatSelector(jid: string): string {
    return `converse-chat[jid="${jid}"]`;
  }

  /** Opens (and shows) the chat with jid, through Converse's own API, and waits for its text area. */
  async openChat(jid: string, timeoutMs = 30_000): Promise<void> {
    await bounded(
      `opening the chat with ${jid}`,
      timeoutMs,
      this.page.evaluate(async (j) => {
        const api = (globalThis as unknown as PageGlobals).xrTest?.api;
        if (!api) throw new Error('the xr-test plugin did not get the Converse API');
        await api.chats.open(j, {}, true);
      }, jid),
    ).catch((err: Error) => {
      throw new Error(
        `${err.message} (Converse opens no chat with a JID outside the roster before it has the XEP-0191 ` +
          `blocklist: does the server have mod_blocking?). Browser console, last lines:\n${this.consoleTail()}`,
      );
    });
    await this.page.waitForSelector(`${this.chatSelector(jid)} textarea.chat-textarea`, {
      visible: true,
      timeout: timeoutMs,
    });
  }

  /** Types text into the chat's text area and presses Enter, as a user would. */
  async send(jid: string, text: string): Promise<void> {
    const area = `${this.chatSelector(jid)} textarea.chat-textarea`;
    await this.page.click(area);
    await this.page.type(area, text);
    await this.page.keyboard.press('Enter');
  }

  /** The text of every message rendered in the chat with jid, oldest first. */
  async messages(jid: string): Promise<string[]> {
    return this.page.evaluate((sel) => {
      const nodes = (globalThis as unknown as PageGlobals).document.querySelectorAll(`${sel} .chat-msg__text`);
      return Array.from(nodes, (n) => (n.textContent ?? '').replace(/\s+/g, ' ').trim());
    }, this.chatSelector(jid));
  }

  /** Waits until a rendered message of the chat with jid contains text. */
  async waitForMessage(jid: string, text: string, timeoutMs: number): Promise<void> {
    try {
      await this.page.waitForFunction(
        (sel, t) =>
          Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll(`${sel} .chat-msg__text`)).some(
            (n) => (n.textContent ?? '').replace(/\s+/g, ' ').includes(t),
          ),
        { timeout: timeoutMs, polling: 100 },
        this.chatSelector(jid),
        text,
      );
    } catch {
      throw new Error(
        `no message containing "${text}" rendered in the chat with ${jid} within ${timeoutMs} ms; rendered: ` +
          `${JSON.stringify(await this.messages(jid).catch(() => []))}\nBrowser console, last lines:\n${this.consoleTail()}`,
      );
    }
  }

  /** Waits for a link (an <a href>) in a message of the chat with jid whose href contains part; returns the href. */
  async waitForLink(jid: string, part: string, timeoutMs: number): Promise<string> {
    try {
      const handle = await this.page.waitForFunction(
        (sel, p) =>
          Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll(`${sel} .chat-msg a[href]`))
            .map((a) => a.getAttribute('href') ?? '')
            .find((h) => h.includes(p)),
        { timeout: timeoutMs, polling: 100 },
        this.chatSelector(jid),
        part,
      );
      return String(await handle.jsonValue());
    } catch {
      throw new Error(
        `no link containing "${part}" rendered in the chat with ${jid} within ${timeoutMs} ms; messages: ` +
          `${JSON.stringify(await this.messages(jid).catch(() => []))}\nBrowser console, last lines:\n${this.consoleTail()}`,
      );
    }
  }

  /** A PNG of the page; returns its path. */
  async screenshot(path: string): Promise<string> {
    await mkdir(dirname(path), { recursive: true });
    const png = await bounded('screenshot', 30_000, this.page.screenshot({ type: 'png' }));
    await writeFile(path, png);
    return path;
  }

  /** The page's HTML (for a failure's record). */
  async html(): Promise<string> {
    return this.page.content();
  }

  /** Clicks the link with this href in the chat with jid, and waits until Chromium has saved the download. */
  async clickLinkAndDownload(jid: string, href: string, timeoutMs: number): Promise<Download> {
    const links = await this.page.$$(`${this.chatSelector(jid)} .chat-msg a[href]`);
    let target: (typeof links)[number] | undefined;
    for (const a of links) {
      if ((await a.evaluate((el) => (el as unknown as PageElement).getAttribute('href'))) === href) target = a;
    }
    if (!target) throw new Error(`no link ${href} in the chat with ${jid}`);
    const before = new Set(this.downloads.keys());
    await target.scrollIntoView();
    await target.click();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const d = [...this.downloads.values()].find((x) => !before.has(x.guid) && x.url === href);
      if (d?.state === 'completed') {
        const path = join(this.downloadDir, d.guid);
        return { path, suggestedFilename: d.suggestedFilename, url: d.url, bytes: await readFile(path) };
      }
      if (d?.state === 'canceled') throw new Error(`Chromium cancelled the download of ${href}`);
      if (Date.now() > deadline) {
        throw new Error(
          `clicking ${href} gave no completed download within ${timeoutMs} ms ` +
            `(${d ? 'download started, still in progress' : 'no download started'}; downloads seen: ` +
            `${JSON.stringify([...this.downloads.values()])})\nBrowser console, last lines:\n${this.consoleTail()}`,
        );
      }
      await sleep(50);
    }
  }

  /** Closes the browser (killing its process by pid if it does not exit) and the static server. */
  async stop(): Promise<void> {
    const proc = this.browser.process();
    await bounded('closing Chromium', 10_000, this.browser.close()).catch(() => {});
    if (proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await bounded('Chromium exiting', 5_000, new Promise((r) => proc.once('exit', r))).catch(() => {});
    }
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}
