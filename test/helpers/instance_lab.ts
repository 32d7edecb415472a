// An InstanceService on memory stores with a fake host driver, single-host or
// in cluster mode (this host's store and the cluster's, an etcd that can be
// taken away), for unit tests of the service's logic. Stores count their
// batches, so a test can say "nothing was written".
import pino from 'pino';
import type { ClusterSide } from '../../agent/services/instance-cluster.js';
import { InstanceService, type InstanceServiceOptions } from '../../agent/services/instances.js';
import { NetworkService } from '../../agent/services/networks.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { BerthError } from '../../base/errors.js';
import type { BatchOp, BatchOptions } from '../../base/store.js';
import { MacPool } from '../../hostnet/alloc/mac-pool.js';
import { Names } from '../../hostnet/names.js';
import { FakeDriver } from '../fakes/fake-driver.js';

/** A MemoryStore that counts batches. */
export class CountingStore extends MemoryStore {
  batches = 0;
  override batch(ops: BatchOp[], options?: BatchOptions): Promise<void> {
    this.batches++;
    return super.batch(ops, options);
  }
}

export interface InstanceLab {
  /** This host's store; the cluster's too when not clustered. */
  local: CountingStore;
  shared: CountingStore;
  instances: InstanceService;
  /** etcd goes away: cluster changes are refused from now on. */
  down(): void;
}

/**
 * Network `n` (10.9.0.0/24) and a MAC pool, then the service. `more` adds
 * options (secgroups, hooks); it gets the shared store and the service, late
 * bound, for lookups that need the instances (a group's members).
 */
export async function instanceLab(
  clustered: boolean,
  prefix: string,
  more: (deps: {
    shared: CountingStore;
    instances: () => InstanceService | undefined;
  }) => Promise<Partial<InstanceServiceOptions>> | Partial<InstanceServiceOptions> = () => ({}),
): Promise<InstanceLab> {
  const log = pino({ level: 'silent' });
  const local = new CountingStore();
  const shared = clustered ? new CountingStore() : local;
  const driver = new FakeDriver();
  let instances: InstanceService | undefined;
  let up = true;
  const requireConnected = (verb: string, object: string) => {
    if (!up)
      throw new BerthError('BERTH_ERR_CLUSTER_UNAVAILABLE', `could not ${verb} ${object}: etcd is away`);
  };
  const cluster: ClusterSide | undefined = clustered
    ? { hostId: 'hv1', shared, requireConnected, probe: async () => {}, connected: () => up }
    : undefined;
  const networks = new NetworkService({
    store: shared,
    driver,
    log,
    ipQuarantineSeconds: 600,
    instancesOn: (n) => instances?.countOn(n) ?? 0,
    portsOn: (n) => instances?.portsOn(n) ?? [],
  });
  await networks.load([]);
  await networks.create({ name: 'n', subnet: '10.9.0.0/24' });
  const macs = await MacPool.load(shared, { prefixes: ['0a:b7:e7'], quarantineSeconds: 3600 });
  const extra = await more({ shared, instances: () => instances });
  instances = new InstanceService({
    store: local,
    driver,
    networks,
    macs,
    names: new Names(prefix),
    log,
    ...extra,
    ...(cluster ? { cluster } : {}),
  });
  await instances.load();
  return { local, shared, instances, down: () => (up = false) };
}
