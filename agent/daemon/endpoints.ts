// Wires the per-network endpoint processes to berthd's services: DHCP
// datagrams go to the DHCP handler, metadata calls to the metadata handler,
// and identity changes invalidate the endpoints' caches.
import type { Logger } from 'pino';
import { BerthError } from '../../base/errors.js';
import { serviceAddress } from '../../hostnet/alloc/ipam.js';
import { type EndpointConfig, METADATA_IP } from '../endpoint/protocol.js';
import { EndpointSupervisor, type SupervisorOptions } from '../endpoint/supervisor.js';
import type { NetworkRecord } from '../services/networks.js';
import type { Services } from './services.js';

export interface EndpointRoutes {
  dhcpPacket?: (
    network: string,
    data: Buffer,
    address: string,
    port: number,
    reply: (data: Buffer, address: string, port: number) => void,
  ) => void;
  calls: Record<string, (network: string, params: unknown) => Promise<unknown>>;
}

export function createEndpoints(
  s: Services,
  log: Logger,
  routes: EndpointRoutes,
  options: SupervisorOptions,
): EndpointSupervisor {
  const elog = log.child({ component: 'endpoint' });
  const supervisor: EndpointSupervisor = new EndpointSupervisor(
    elog,
    {
      dhcpPacket(network, data, address, port) {
        if (!routes.dhcpPacket) return;
        routes.dhcpPacket(network, data, address, port, (reply, to, toPort) =>
          supervisor.send(network, { t: 'dhcp-send', data: reply, address: to, port: toPort }),
        );
      },
      async call(network, method, params) {
        const handler = routes.calls[method];
        if (!handler)
          throw new BerthError(
            'BERTH_ERR_NOT_FOUND',
            `could not call "${method}": berthd has no such endpoint method`,
          );
        return handler(network, params);
      },
    },
    options,
  );
  // A MAC that moved or a neighbour that changed makes the callers resolved
  // through it stale, and only those: the rest keep their cached answers.
  s.observer.onChange((change) => {
    if (change.kind === 'neigh') supervisor.broadcast({ t: 'invalidate', ips: [change.ip] });
    else supervisor.broadcast({ t: 'invalidate', macs: [change.mac] });
  });
  return supervisor;
}

/** How long a network create waits for its endpoint before answering anyway. */
const ENDPOINT_READY_MS = 15_000;

/**
 * Starts (or adopts) the network's endpoint; the promise settles when it
 * serves, so a network is answered as created only once its DHCP and
 * metadata answer. A slow endpoint is logged, not an error: it keeps starting.
 */
export async function ensureEndpoint(
  s: Services,
  supervisor: EndpointSupervisor,
  net: NetworkRecord,
  opts: { logLevel: string; metadataRate: EndpointConfig['metadataRate'] },
  log?: Logger,
): Promise<void> {
  const place = s.driver.placement(net);
  supervisor.ensure(place.endpointNetns, {
    network: net.name,
    serviceIp: serviceAddress(net),
    metadataIp: METADATA_IP,
    metadataPort: 80,
    dhcpPort: 67,
    logLevel: opts.logLevel,
    metadataRate: opts.metadataRate,
  });
  if (!(await supervisor.ready(net.name, ENDPOINT_READY_MS)))
    log?.warn(
      { network: net.name },
      `endpoint not ready after ${ENDPOINT_READY_MS / 1000} s; still starting`,
    );
}
