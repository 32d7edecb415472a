// GET /metrics on a local TCP address (config `metrics.listen`). Plain
// node:http: one route, no auth, so it belongs on loopback or a management
// network only.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { couldNot } from '../../base/errors.js';
import { parseListen } from '../config/validate.js';
import type { BerthMetrics } from './metrics.js';

export interface MetricsServer {
  /** host:port actually listened on (the port is chosen by the kernel for port 0). */
  address: string;
  close(): Promise<void>;
}

export async function startMetricsServer(
  listen: string,
  metrics: BerthMetrics,
  log: Logger,
): Promise<MetricsServer> {
  const where = parseListen(listen);
  if (!where) throw couldNot('BERTH_ERR_CONFIG', 'parse', 'metrics address', listen, 'want HOST:PORT');
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body),
      (err: Error) => {
        log.error({ err: err.message }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(where.port, where.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: Error) => {
    throw couldNot('BERTH_ERR_HOST_OP', 'listen on', 'metrics address', listen, err);
  });
  const addr = server.address() as AddressInfo;
  const address = addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
  return {
    address,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
