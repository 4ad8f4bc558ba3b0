// SPDX-License-Identifier: MIT
// The /metrics endpoint: bound before anything is loaded (an address in use is a usage error), serving
// 503 until the trace has started, then the exporter's exposition at every scrape.
import * as http from 'node:http';
import type { MetricsExporter } from './exporter';

export interface ListenAddress {
  host: string;
  port: number;
}

export class MetricsListenError extends Error {}

export interface MetricsServer {
  /** Where it listens, as a URL ("http://127.0.0.1:9464/metrics"). */
  readonly url: string;
  close(): Promise<void>;
}

const hostForUrl = (host: string) => (host.includes(':') ? `[${host}]` : host);

export function serveMetrics(address: ListenAddress, exporter: MetricsExporter): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(path === '/' ? 200 : 404, { 'Content-Type': 'text/plain; charset=utf-8' }).end(path === '/' ? 'proctap: metrics at /metrics\n' : 'not found\n');
      return;
    }
    if (!exporter.ready) {
      res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '1' }).end('proctap: not tracing yet\n');
      return;
    }
    exporter.scrape().then(
      (body) => res.writeHead(200, { 'Content-Type': exporter.contentType }).end(req.method === 'HEAD' ? undefined : body),
      (err: Error) => res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`proctap: ${err.message}\n`),
    );
  });
  // a scraper's keep-alive connection must not keep proctap from exiting
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'address in use' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : err.code === 'EACCES' ? 'permission denied' : err.message;
      reject(new MetricsListenError(`--metrics: cannot listen on ${hostForUrl(address.host)}:${address.port}: ${why}`));
    });
    server.listen({ host: address.host, port: address.port, ipv6Only: address.host.includes(':') }, () => {
      const bound = server.address();
      const port = typeof bound === 'object' && bound ? bound.port : address.port;
      resolve({
        url: `http://${hostForUrl(address.host)}:${port}/metrics`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
