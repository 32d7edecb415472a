// Cluster mode's feed into this host's services: what other hosts allocate
// and define arrives through the mirror's watch.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { AllocRecord } from '../../hostnet/alloc/allocator.js';
import { IP_KEY_PREFIX } from '../../hostnet/alloc/ipam.js';
import { MAC_KEY_PREFIX, type MacPool } from '../../hostnet/alloc/mac-pool.js';
import { NETWORK_PREFIX, type NetworkService } from '../services/networks.js';
import type { ClusterRuntime } from './cluster.js';

/**
 * Cluster mode: other hosts' allocations reach this host's allocators, and
 * their network definitions its bridges, as the watch brings them. Each host
 * starts its allocation cursors at its own offset, so concurrent creates on
 * several hosts rarely want the same address.
 */
export function followCluster(
  cluster: ClusterRuntime,
  macs: MacPool,
  networks: NetworkService,
  log: Logger,
): void {
  const offset = createHash('sha256').update(cluster.hostId).digest().readUInt32BE(0);
  macs.spreadFrom(offset);
  const spread = new Set<string>();
  const spreadNew = () => {
    for (const n of networks.all()) {
      if (spread.has(n.name)) continue;
      spread.add(n.name);
      networks.ipam(n.name).spreadFrom(offset);
    }
  };
  spreadNew();
  cluster.mirror.onChange(MAC_KEY_PREFIX, (events) => {
    for (const e of events) macs.observe(e.key, e.value as AllocRecord | undefined);
  });
  cluster.mirror.onChange(IP_KEY_PREFIX, (events) => {
    for (const e of events) networks.observeIp(e.key, e.value as AllocRecord | undefined);
  });
  let syncing: Promise<void> | undefined;
  let again = false;
  const sync = () => {
    if (syncing) {
      again = true;
      return;
    }
    syncing = networks
      .syncFromStore()
      .then(spreadNew)
      .catch((err) => log.error({ err: String(err) }, 'could not follow the cluster networks'))
      .finally(() => {
        syncing = undefined;
        if (again) {
          again = false;
          sync();
        }
      });
  };
  cluster.mirror.onChange(NETWORK_PREFIX, sync);
  // Back from an outage (or first reached): config networks not yet declared are declared now.
  cluster.mirror.on('connected', sync);
}
