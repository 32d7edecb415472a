// Cluster mode's parts, built when berthd.yaml has a `cluster:` block: the
// etcd client, this host's mirror of the cluster, the mirrored store the
// services write through, and the host registry. Without the block none of
// this exists and berthd is the single host it always was.
import { readFile } from 'node:fs/promises';
import { cpus, networkInterfaces, totalmem } from 'node:os';
import type { Logger } from 'pino';
import type { ClusterKV } from '../../base/cluster-kv.js';
import { clusterUnavailable } from '../../base/errors.js';
import type { Store } from '../../base/store.js';
import { VERSION } from '../../base/version.js';
import { CACHE_PREFIX, ClusterMirror, MirroredStore } from '../cluster/mirror.js';
import { HostRegistry } from '../cluster/registry.js';
import type { ClusterSettings } from '../config/schema.js';
import { NETWORK_PREFIX } from '../services/networks.js';
import { POLICY_PREFIX } from '../services/policies.js';
import { SECGROUP_PREFIX } from '../services/secgroups.js';
import { EtcdKv } from '../store/etcd-kv.js';

export interface ClusterRuntime {
  settings: ClusterSettings;
  kv: ClusterKV;
  mirror: ClusterMirror;
  /** The cluster as a Store: reads from the mirror, writes to etcd. */
  shared: Store;
  registry: HostRegistry;
  hostId: string;
  requireConnected(verb: string, object: string): void;
  /** A real round trip to etcd: for changes that touch the host before they write to the cluster. */
  probe(verb: string, object: string): Promise<void>;
  close(): Promise<void>;
}

/** The first global IPv4 address of this machine: what other hosts see when none is configured. */
function defaultAddress(): string {
  for (const addrs of Object.values(networkInterfaces()))
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

export async function openClusterKv(settings: ClusterSettings): Promise<ClusterKV> {
  const tls = settings.tls
    ? {
        ca: await readFile(settings.tls.ca_file),
        ...(settings.tls.cert_file ? { cert: await readFile(settings.tls.cert_file) } : {}),
        ...(settings.tls.key_file ? { key: await readFile(settings.tls.key_file) } : {}),
      }
    : undefined;
  return new EtcdKv({ endpoints: settings.etcd, prefix: settings.prefix, ...(tls ? { tls } : {}) });
}

export async function startCluster(opts: {
  settings: ClusterSettings;
  local: Store;
  hostId: string;
  publicKeyPem: string;
  log: Logger;
  /** The etcd client; EtcdKv over the settings by default. */
  kv?: ClusterKV;
}): Promise<ClusterRuntime> {
  const log = opts.log.child({ component: 'cluster' });
  const kv = opts.kv ?? (await openClusterKv(opts.settings));
  const mirror = new ClusterMirror({
    kv,
    local: opts.local,
    persist: [NETWORK_PREFIX, POLICY_PREFIX, SECGROUP_PREFIX],
    log,
  });
  await mirror.start();
  const shared = new MirroredStore(kv, mirror);
  const registry = new HostRegistry({
    kv,
    cluster: shared,
    self: {
      id: opts.hostId,
      address: opts.settings.address ?? defaultAddress(),
      public_key_pem: opts.publicKeyPem,
      version: VERSION,
      capacity: { vcpus: cpus().length, memory_mib: Math.floor(totalmem() / 2 ** 20) },
    },
    leaseSeconds: opts.settings.lease_seconds,
    log,
  });
  if (mirror.state === 'connected') await registry.register();
  else {
    // Registered once etcd answers; until then the host serves from its copy.
    const retry = setInterval(() => {
      if (mirror.state !== 'connected') return;
      clearInterval(retry);
      registry.register().catch((err) => log.error({ err: String(err) }, 'could not register this host'));
    }, 2000);
    retry.unref();
  }
  return {
    settings: opts.settings,
    kv,
    mirror,
    shared,
    registry,
    hostId: opts.hostId,
    requireConnected: (verb, object) => mirror.requireConnected(verb, object),
    async probe(verb, object) {
      mirror.requireConnected(verb, object);
      try {
        await kv.get(`host/${opts.hostId}`);
      } catch (err) {
        throw clusterUnavailable(verb, object, kv.endpoints, err);
      }
    },
    async close() {
      await registry.close();
      await mirror.close();
      await kv.close();
    },
  };
}

export { CACHE_PREFIX };
