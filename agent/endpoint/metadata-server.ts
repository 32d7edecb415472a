// The metadata listener inside the endpoint namespace. Callers are resolved
// by berthd from the observed source IP -> MAC -> port, never from headers;
// the answer is cached here per IP (see metadata/endpoint-cache.ts) so that a
// steady stream of requests never leaves this process.
import { writeFile } from 'node:fs/promises';
import { EndpointCache } from '../metadata/endpoint-cache.js';
import { buildMetadataApp } from '../metadata/http.js';
import { Waiters } from '../metadata/long-poll.js';
import { CallerRateLimit } from '../metadata/rate-limit.js';
import type { EndpointConfig, Notice } from './protocol.js';
import { RefusalQueue } from './refusal-queue.js';
import type { RpcClient } from './rpc-client.js';

type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

const DECISION_LOG_MS = 10_000;
/** Answers by status go to berthd's metrics this often (only when there were any). */
const STATUS_REPORT_MS = 2_000;

/**
 * Node cannot set IP_TTL on one TCP socket, but the endpoint namespace talks
 * only to guests on its own link (metadata and DHCP), so a namespace-wide
 * default TTL of 1 makes every answer, token PUTs included, die at the first
 * router: a token cannot be relayed off the link.
 */
async function linkLocalTtl(log: Log): Promise<void> {
  await writeFile('/proc/sys/net/ipv4/ip_default_ttl', '1\n').catch((err: Error) =>
    log('warn', 'could not set IP TTL 1 in the endpoint namespace', { err: err.message }),
  );
}

/** Resolves with the port listened on, 0 when the listener could not start. */
export async function startMetadataServer(
  config: EndpointConfig,
  rpc: RpcClient,
  link: {
    onNotice(listener: (msg: Notice) => void): void;
    onController(listener: () => void): void;
    readonly connected: boolean;
  },
  log: Log,
): Promise<number> {
  if (config.metadataPort === 80) await linkLocalTtl(log);
  // Refusals go through a queue that outlasts a berthd restart (refusal-queue.ts).
  const refusals = new RefusalQueue({ call: (m, p) => rpc.call(m, p), connected: () => link.connected });
  link.onController(() => void refusals.deliver());
  const cache = new EndpointCache(config.network, <T>(method: string, params: unknown) =>
    method === 'metadata.refused'
      ? (refusals.report(params as Record<string, unknown>) as Promise<T>)
      : rpc.call<T>(method, params),
  );
  // Long-poll waiters (metadata/long-poll.ts) live here, beside the cache, so
  // they outlast a berthd restart as the cache does.
  const waits = new Waiters();
  const { app, stats, flushLimited } = buildMetadataApp(
    cache,
    new CallerRateLimit(config.metadataRate),
    undefined,
    waits,
  );
  // Refusals over the rate limit that were only counted, for guests that went quiet.
  setInterval(() => void flushLimited(), 1000).unref();
  link.onNotice((msg) => {
    if (msg.t === 'invalidate') {
      // The cache first, so the waiters it names look again at fresh views:
      // only the guests named, so an update costs no one else a lookup.
      if (msg.all) {
        cache.invalidate();
        waits.wake();
      } else {
        cache.invalidate(msg.ips ?? [], msg.macs);
        waits.wake(msg.ips ?? [], msg.macs);
      }
    }
  });
  // Every allowed decision is counted here and logged by berthd in batches;
  // a log line per request would cost more than the request.
  setInterval(() => {
    if (stats.allowed.size === 0) return;
    const counts = Object.fromEntries(stats.allowed);
    stats.allowed.clear();
    rpc.call('metadata.decisions', { counts }).catch(() => undefined);
  }, DECISION_LOG_MS).unref();
  setInterval(() => {
    if (stats.byStatus.size === 0) return;
    const statuses = Object.fromEntries(stats.byStatus);
    stats.byStatus.clear();
    rpc.call('metadata.statuses', { statuses }).catch(() => undefined);
  }, STATUS_REPORT_MS).unref();
  try {
    await app.listen({ port: config.metadataPort, host: config.metadataIp });
    const addr = app.server.address();
    return typeof addr === 'object' && addr ? addr.port : 0;
  } catch (err) {
    log('error', 'metadata listener failed', { err: (err as Error).message });
    return 0;
  }
}
