// Builds berthd's services over one store and one network driver, and keeps
// the host reconciled with them.

import { join } from 'node:path';
import type { Logger } from 'pino';
import { META_KEYS, type Store } from '../../base/store.js';
import { MacPool } from '../../hostnet/alloc/mac-pool.js';
import type { DesiredHostState, NetworkDriver } from '../../hostnet/driver.js';
import { HostDriver } from '../../hostnet/host-driver.js';
import { Names } from '../../hostnet/names.js';
import { IdentityObserver } from '../../hostnet/observe/observer.js';
import type { PortDirectory } from '../../hostnet/observe/resolve.js';
import type { SecGroupDriver } from '../../hostnet/secgroups/driver.js';
import { NftSecGroupDriver } from '../../hostnet/secgroups/nft-driver.js';
import { ImageStore } from '../../images/store.js';
import type { Config } from '../config/schema.js';
import type { SecGroupEnforcer } from '../secgroups/enforcer.js';
import { HostLock } from '../services/host-lock.js';
import {
  DIRECTORY_PREFIX,
  type DirectoryEntry,
  type InstanceRecord,
  InstanceService,
} from '../services/instances.js';
import { LibvirtRuntime } from '../services/libvirt-runtime.js';
import { type NetworkRecord, NetworkService } from '../services/networks.js';
import { SECGROUP_PREFIX, SecGroupService } from '../services/secgroups.js';
import type { ClusterRuntime } from './cluster.js';
import { followCluster } from './follow-cluster.js';
import { buildSecGroupEnforcer, enforceNow } from './secgroups.js';

export interface Services {
  names: Names;
  /** Where cluster-scoped state lives: the cluster in cluster mode, else the local store. */
  shared: Store;
  cluster: ClusterRuntime | undefined;
  driver: NetworkDriver;
  macs: MacPool;
  networks: NetworkService;
  instances: InstanceService;
  /** Security groups (cluster-scoped in cluster mode); the enforcement compiler reads all() and onChange. */
  secgroups: SecGroupService;
  /** Keeps the bridge's security-group tables in step (poked by every change). */
  secgroupEnforcer: SecGroupEnforcer;
  images: ImageStore;
  /** Connects to libvirt on first need; berthd runs netns guests without it. */
  libvirt: LibvirtRuntime;
  observer: Observer;
  /** Host changes and reconcile passes take turns here. */
  lock: HostLock;
  /** Reconcile passes so far, those with failures, and the failures (metrics). */
  reconciles: { runs: number; failed: number; errors: number };
  /** Further listeners for networks appearing and going (endpoints, DHCP). */
  /** Told after an instance was created or deleted (metadata caches). */
  instanceHooks: ((rec: InstanceRecord) => void)[];
  networkHooks: {
    realised: ((rec: NetworkRecord) => Promise<void> | void)[];
    removed: ((rec: NetworkRecord) => void)[];
  };
}

export type SgDriverFactory = (names: Names, log: Logger) => SecGroupDriver;

export const defaultSgDriver: SgDriverFactory = (names, log) =>
  new NftSecGroupDriver(names, { log: (note) => log.warn(note) });

export type DriverFactory = (names: Names, config: Config, log?: Logger) => NetworkDriver;

/** What berthd uses of the identity observer; tests of the services substitute it. */
export type Observer = Pick<
  IdentityObserver,
  | 'start'
  | 'stop'
  | 'addNetwork'
  | 'removeNetwork'
  | 'onChange'
  | 'resolve'
  | 'resolveNow'
  | 'resolveMac'
  | 'resolveMacNow'
  | 'macSeen'
>;
export type ObserverFactory = (names: Names, directory: PortDirectory, log: Logger) => Observer;

export const defaultObserver: ObserverFactory = (names, directory, log) =>
  new IdentityObserver({ names, directory, logger: log.child({ component: 'observe' }) });

export const defaultDriver: DriverFactory = (names, config, log) =>
  new HostDriver(names, {
    vlanMode: config.vlan_mode,
    ...(log ? { warn: (fields, msg) => log.warn(fields, msg) } : {}),
  });

export async function buildServices(
  store: Store,
  config: Config,
  log: Logger,
  makeDriver: DriverFactory = defaultDriver,
  makeObserver: ObserverFactory = defaultObserver,
  cluster?: ClusterRuntime,
  makeSgDriver: SgDriverFactory = defaultSgDriver,
): Promise<Services> {
  const shared = cluster?.shared ?? store;
  const names = new Names(config.name_prefix);
  const driver = makeDriver(names, config, log.child({ component: 'hostnet' }));
  let observer: Observer | undefined;
  let instances: InstanceService | undefined;
  const images = new ImageStore({
    store,
    dir: join(config.state_dir, 'images'),
    usedBy: (sha) => (instances?.all() ?? []).filter((i) => i.image_sha256 === sha).map((i) => i.name),
  });
  const hostId = (await store.get<string>(META_KEYS.hostId)) ?? 'unknown';
  const libvirt = new LibvirtRuntime({
    stateDir: config.state_dir,
    names,
    hostId: () => hostId,
    images,
    log: log.child({ component: 'libvirt' }),
  });
  const macs = await MacPool.load(shared, {
    prefixes: config.mac_pools.map((p) => p.prefix),
    quarantineSeconds: config.quarantine.mac_seconds,
    // A MAC already live on a bridge (a guest berth does not know of) is never handed out.
    // So is a MAC of any domain libvirt knows, berth's or not.
    conflicts: (mac) => observer?.macSeen(mac) === true || libvirt.macs.has(mac),
  });
  // Instances exist before any lookup can arrive; the directory is late-bound.
  observer = makeObserver(
    names,
    {
      portByMac: (m) => instances?.portByMac(m),
      portByIfname: (i) => instances?.portByIfname(i),
      portByIp: (n, ip) => instances?.portByIp(n, ip),
    },
    log,
  );
  const observe = async (rec: { name: string; vlan?: number; uplink?: string }) => {
    const place = driver.placement(rec);
    await observer.addNetwork({
      name: rec.name,
      bridge: place.bridge,
      netns: place.endpointNetns,
      // The FDB's VLAN, not the network's: a subinterface-mode bridge's entries carry none.
      ...(place.fdbVlan !== undefined ? { vlan: place.fdbVlan } : {}),
    });
  };
  const networkHooks: Services['networkHooks'] = { realised: [], removed: [] };
  const lock = new HostLock();
  const instanceHooks: Services['instanceHooks'] = [];
  const networks = new NetworkService({
    store: shared,
    driver,
    log: log.child({ component: 'networks' }),
    ipQuarantineSeconds: config.quarantine.ip_seconds,
    physicalNetworks: config.physical_networks,
    // In a cluster a network is in use while any host has a guest on it.
    instancesOn: cluster
      ? (n) =>
          cluster.mirror
            .list<DirectoryEntry>(DIRECTORY_PREFIX)
            .filter((e) => e.value.nics.some((nic) => nic.network === n)).length
      : (n) => instances?.countOn(n) ?? 0,
    ...(cluster ? { requireConnected: cluster.requireConnected } : {}),
    portsOn: (n) => instances?.portsOn(n) ?? [],
    lock,
    onRealised: async (rec) => {
      await observe(rec);
      for (const hook of networkHooks.realised) await hook(rec);
    },
    onRemoved: (rec) => {
      for (const hook of networkHooks.removed) hook(rec);
      observer.removeNetwork(rec.name);
    },
  });
  await networks.load(config.networks);
  const secgroups = new SecGroupService({
    store: shared,
    // In a cluster a group is in use while any host has a guest in it.
    membersOf: cluster
      ? (g) =>
          cluster.mirror
            .list<DirectoryEntry>(DIRECTORY_PREFIX)
            .filter((e) => e.value.secgroups?.includes(g))
            .map((e) => `${e.value.name}@${e.value.host}`)
      : (g) => (instances?.all() ?? []).filter((i) => i.secgroups?.includes(g)).map((i) => i.name),
    ...(cluster ? { requireConnected: cluster.requireConnected } : {}),
  });
  await secgroups.load();
  cluster?.mirror.onChange(SECGROUP_PREFIX, () => {
    secgroups
      .reload()
      .catch((err) => log.error({ err: String(err) }, 'could not follow the cluster secgroups'));
  });
  const secgroupEnforcer = buildSecGroupEnforcer({
    secgroups,
    instances: () => instances?.all() ?? [],
    networks: () => networks.all(),
    driver,
    cluster,
    sgDriver: makeSgDriver(names, log.child({ component: 'secgroups' })),
    log: log.child({ component: 'secgroups' }),
  });
  instanceHooks.push((rec) => secgroupEnforcer.poke(`instance ${rec.name} ${rec.state}`));
  networkHooks.realised.push((rec) => secgroupEnforcer.poke(`network ${rec.name}`));
  secgroupEnforcer.poke('berthd start');
  instances = new InstanceService({
    secgroups,
    enforceSecgroups: (rec) => enforceNow(secgroupEnforcer, `instance "${rec.name}"`),
    store,
    driver,
    networks,
    macs,
    names,
    log: log.child({ component: 'instances' }),
    lock,
    libvirt,
    onChanged: (rec) => {
      for (const hook of instanceHooks) hook(rec);
    },
    ...(cluster
      ? {
          cluster: {
            hostId: cluster.hostId,
            shared,
            requireConnected: cluster.requireConnected,
            probe: cluster.probe,
            connected: () => cluster.mirror.state === 'connected',
          },
        }
      : {}),
  });
  await instances.load();
  if (cluster) followCluster(cluster, macs, networks, log);
  libvirt.attach(instances);
  return {
    names,
    shared,
    cluster,
    driver,
    macs,
    networks,
    instances,
    secgroups,
    secgroupEnforcer,
    images,
    libvirt,
    observer,
    networkHooks,
    instanceHooks,
    lock,
    reconciles: { runs: 0, failed: 0, errors: 0 },
  };
}

/**
 * Keeps every guest MAC pinned to its own port between reconcile passes. A
 * libvirt tap appears when its domain starts (create, start, a libvirtd
 * restart); the first frame through it, or anyone's frame with that MAC,
 * shows in the FDB as an entry that is not berth's pin, and is pinned at once.
 * berth's own pin comes back as an event too, and is left alone.
 */
export function pinOnFdbEvents(s: Services, log: Logger): () => void {
  const inflight = new Set<string>();
  return s.observer.onChange((change) => {
    if (change.kind !== 'fdb') return;
    const owner = s.instances.portByMac(change.mac);
    if (!owner || (change.pinned && change.port === owner.ifname)) return;
    // A MAC leaving its own port because the port went: nothing to pin.
    if (change.port === undefined && change.previousPort !== owner.ifname) return;
    if (inflight.has(owner.ifname)) return;
    inflight.add(owner.ifname);
    s.driver
      .bindPort(owner)
      .then(() => log.debug({ port: owner.ifname, mac: owner.mac, seen: change.port }, 'guest MAC pinned'))
      .catch((err) => log.debug({ port: owner.ifname, err: String(err) }, 'could not pin guest MAC yet'))
      .finally(() => inflight.delete(owner.ifname));
  });
}

/** Starts watching the FDB and every network's endpoint neighbours; after the first reconcile. */
export async function startObserving(s: Services, log: Logger): Promise<void> {
  pinOnFdbEvents(s, log);
  await s.observer.start();
  for (const net of s.networks.all()) {
    const place = s.driver.placement(net);
    await s.observer
      .addNetwork({
        name: net.name,
        bridge: place.bridge,
        netns: place.endpointNetns,
        ...(place.fdbVlan !== undefined ? { vlan: place.fdbVlan } : {}),
      })
      .catch((err) => log.error({ network: net.name, err: String(err) }, 'could not observe network'));
  }
}

export function desiredHostState(s: Services): DesiredHostState {
  const live = s.instances.all().filter((i) => i.state !== 'deleting');
  return {
    networks: s.networks.all().map((n) => s.networks.spec(n)),
    ports: live.flatMap((i) =>
      i.nics.map((n) => ({ ifname: n.port, instance: i.id, network: n.network, mac: n.mac, ip: n.ip })),
    ),
    netnsGuests: live.flatMap((i) => s.instances.guestOf(i) ?? []),
  };
}

/** One reconcile pass; failures are logged with what failed, never thrown. */
export async function reconcileHost(s: Services, log: Logger): Promise<boolean> {
  const started = Date.now();
  s.reconciles.runs += 1;
  try {
    await s.lock.run(async () => {
      // A create or delete whose last store write failed (a full disk) is finished
      // here, not only at the next start. Under the lock no create or delete is in flight.
      await s.instances
        .recover()
        .catch((err) => log.error({ err: String(err) }, 'could not finish interrupted changes; next pass'));
      await s.driver.reconcile(desiredHostState(s));
    });
    await s.secgroupEnforcer.reconcile();
    log.debug({ ms: Date.now() - started }, 'host reconciled');
    return true;
  } catch (err) {
    const failures = err instanceof AggregateError ? err.errors.map((e: Error) => e.message) : [String(err)];
    s.reconciles.failed += 1;
    s.reconciles.errors += failures.length;
    log.error({ failures, ms: Date.now() - started }, 'host reconcile had failures');
    return false;
  }
}
