// The metadata listener inside the endpoint namespace. Until the metadata
// service lands, it proves the identity path end to end: each request is
// resolved by berthd from the observed source IP -> MAC -> port, never from
// headers, and answered with that identity or refused.
import { createServer } from 'node:http';
import type { EndpointConfig } from './protocol.js';
import type { RpcClient } from './rpc-client.js';

export async function startMetadataServer(
  config: EndpointConfig,
  rpc: RpcClient,
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void,
): Promise<number> {
  const server = createServer((req, res) => {
    const ip = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    rpc
      .call<{ status: number; body: string; contentType: string }>('metadata.request', {
        ip,
        method: req.method,
        path: req.url,
        host: req.headers.host ?? '',
      })
      .then(
        (r) => {
          res.writeHead(r.status, { 'content-type': r.contentType });
          res.end(r.body);
        },
        (err: Error) => {
          res.writeHead(503, { 'content-type': 'text/plain' });
          res.end(`metadata unavailable: ${err.message}\n`);
        },
      );
  });
  server.on('error', (err) => log('error', 'metadata listener failed', { err: err.message }));
  return new Promise((resolve) => {
    server.once('error', () => resolve(0));
    server.listen(config.metadataPort, config.metadataIp, () => {
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : 0);
    });
  });
}
