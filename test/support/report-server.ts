// A stand-in intranet for tests and the demo: serves /projects/<id>/status.pdf
// from what the test put there, and can answer 404/403/500, stall, or hang.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { feed } from './reports.js';

export type Behaviour =
  // coding: sent chunked without Content-Length (in 64 KiB writes), or gzip-compressed and chunked
  | { kind: 'file'; body: Buffer; type?: string; coding?: 'chunked' | 'gzip' }
  | { kind: 'status'; status: number }
  | { kind: 'hang' } // never answers
  | { kind: 'stall'; body: Buffer; after: number; chunked?: boolean } // sends `after` bytes, then nothing; chunked: no Content-Length
  | { kind: 'gate'; body: Buffer; open: Promise<void> } // answers once the test opens the gate
  // headers and `at` bytes at once, the rest once the test says (with `more`: up to more.at, then the rest at more.rest)
  | { kind: 'split'; body: Buffer; at: number; rest: Promise<void>; more?: { at: number; rest: Promise<void> } };

export class ReportServer {
  readonly projects = new Map<string, Behaviour>();
  readonly requests: Array<{ url: string; headers: IncomingMessage['headers'] }> = [];
  private server!: Server;
  private readonly open = new Set<ServerResponse>();
  port = 0;

  async start(host = '127.0.0.1', port = 0): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(port, host, () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get urlTemplate(): string {
    return `http://127.0.0.1:${this.port}/projects/{project}/status.pdf`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({ url: req.url ?? '', headers: req.headers });
    const m = /^\/projects\/([^/]+)\/status\.pdf$/.exec(req.url ?? '');
    const b = m ? this.projects.get(decodeURIComponent(m[1])) : undefined;
    if (!b) {
      res.writeHead(404).end('not found');
      return;
    }
    switch (b.kind) {
      case 'file':
        if (b.coding) {
          const out = b.coding === 'gzip' ? gzipSync(b.body) : b.body;
          res.writeHead(200, {
            'content-type': b.type ?? 'application/pdf',
            ...(b.coding === 'gzip' ? { 'content-encoding': 'gzip' } : {}),
          });
          void feed(res, out);
          return;
        }
        res
          .writeHead(200, { 'content-type': b.type ?? 'application/pdf', 'content-length': b.body.length })
          .end(b.body);
        return;
      case 'status':
        res.writeHead(b.status).end(`status ${b.status}`);
        return;
      case 'hang':
        this.open.add(res);
        return;
      case 'gate':
        this.open.add(res);
        void b.open.then(() => {
          this.open.delete(res);
          res.writeHead(200, { 'content-type': 'application/pdf', 'content-length': b.body.length }).end(b.body);
        });
        return;
      case 'split':
        this.open.add(res);
        res.writeHead(200, { 'content-type': 'application/pdf', 'content-length': b.body.length });
        res.write(b.body.subarray(0, b.at));
        void b.rest.then(async () => {
          if (b.more) {
            res.write(b.body.subarray(b.at, b.more.at));
            await b.more.rest;
          }
          this.open.delete(res);
          res.end(b.body.subarray(b.more ? b.more.at : b.at));
        });
        return;
      case 'stall':
        this.open.add(res);
        res.writeHead(
          200,
          b.chunked
            ? { 'content-type': 'application/pdf' }
            : { 'content-type': 'application/pdf', 'content-length': b.body.length },
        );
        res.write(b.body.subarray(0, b.after));
        return;
    }
  }

  async stop(): Promise<void> {
    for (const r of this.open) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
