// Networks: validated, stored, and realised on the host through the network
// driver (bridge, VLAN plumbing, endpoint namespace). Each network owns its IPAM.
import type { Logger } from 'pino';
import { BerthError, causeText, couldNot, invalidField } from '../../base/errors.js';
import type { Store } from '../../base/store.js';
import type { AllocRecord } from '../../hostnet/alloc/allocator.js';
import { IP_KEY_PREFIX, Ipam, serviceAddress, staleIpKeys } from '../../hostnet/alloc/ipam.js';
import type { NetworkDriver, NetworkSpec } from '../../hostnet/driver.js';
import type { Network, NetworkCreate } from '../api/types.js';
import type { NetworkConfig } from '../config/schema.js';
import { validateNetwork } from '../config/validate.js';
import { HostLock } from './host-lock.js';

export interface NetworkRecord {
  name: string;
  subnet: string;
  gateway?: string;
  vlan?: number;
  uplink?: string;
  mtu: number;
  dns: string[];
  domain?: string;
  source: 'config' | 'api';
  created_at: string;
}

export const NETWORK_PREFIX = 'network/';

export interface NetworkServiceOptions {
  store: Store;
  driver: NetworkDriver;
  log: Logger;
  ipQuarantineSeconds: number;
  /** Tells whether instances still use a network (delete refuses then). */
  instancesOn: (network: string) => number;
  /** The port ifnames on a network, to pick its guard drop counters. */
  portsOn: (network: string) => string[];
  /** Told after a network was realised on the host, or removed from it. */
  onRealised?: (rec: NetworkRecord) => Promise<void>;
  onRemoved?: (rec: NetworkRecord) => void;
  /** Serialises host changes with the reconcile loop; a private lock when not shared. */
  lock?: HostLock;
  /** Physical network label -> this host's interface (berthd.yaml physical_networks). */
  physicalNetworks?: Record<string, string>;
  /** Cluster mode: refuses a change before it starts while etcd is away. */
  requireConnected?: (verb: string, object: string) => void;
}

export function toSpec(rec: NetworkRecord): NetworkSpec {
  return {
    name: rec.name,
    subnet: rec.subnet,
    gateway: rec.gateway,
    vlan: rec.vlan,
    uplink: rec.uplink,
    mtu: rec.mtu,
    serviceIp: serviceAddress(rec),
  };
}

function recordFrom(input: NetworkCreate | NetworkConfig, source: NetworkRecord['source']): NetworkRecord {
  const rec: NetworkRecord = {
    name: input.name,
    subnet: input.subnet,
    mtu: input.mtu ?? 1500,
    dns: input.dns ?? [],
    source,
    created_at: new Date().toISOString(),
  };
  if (input.gateway !== undefined) rec.gateway = input.gateway;
  if (input.vlan !== undefined) rec.vlan = input.vlan;
  if (input.uplink !== undefined) rec.uplink = input.uplink;
  if (input.domain !== undefined) rec.domain = input.domain;
  return rec;
}

export class NetworkService {
  private readonly records = new Map<string, NetworkRecord>();
  /** Config networks not declared yet: the cluster was unreachable when berthd started. */
  private pending: NetworkConfig[] = [];
  /** As written in the store: the uplink is the physical network label, if it is one. */
  private readonly stored = new Map<string, NetworkRecord>();
  private readonly ipams = new Map<string, Ipam>();

  private readonly lock: HostLock;

  constructor(private readonly opts: NetworkServiceOptions) {
    this.lock = opts.lock ?? new HostLock();
  }

  /** Loads stored networks and adds the config's networks that are not stored yet. */
  async load(fromConfig: NetworkConfig[]): Promise<void> {
    for (const { value } of await this.opts.store.list<NetworkRecord>(NETWORK_PREFIX))
      await this.track(value);
    for (const net of fromConfig) {
      if (this.records.has(net.name)) continue;
      const rec = await this.declare(net);
      if (rec) await this.track(rec);
    }
  }

  /**
   * Writes a config network into the store unless it is there; returns the
   * record that stands. In a cluster another host may have declared it first
   * (its definition stands), or etcd may be away (declared when it answers).
   */
  private async declare(net: NetworkConfig): Promise<NetworkRecord | undefined> {
    const rec = recordFrom(net, 'config');
    await this.checkVlan(this.local(rec));
    const key = `${NETWORK_PREFIX}${rec.name}`;
    try {
      await this.opts.store.batch([{ type: 'put', key, value: rec }], { guards: [{ key, absent: true }] });
      return rec;
    } catch (err) {
      if (err instanceof BerthError && err.code === 'BERTH_ERR_CLUSTER_UNAVAILABLE') {
        this.opts.log.error(
          { network: rec.name, err: err.message },
          'config network not declared yet: the cluster is unreachable; declared when it answers',
        );
        this.pending.push(net);
        return undefined;
      }
      const theirs = await this.opts.store.get<NetworkRecord>(key);
      if (!theirs) throw err;
      if (theirs.subnet !== rec.subnet || theirs.vlan !== rec.vlan)
        this.opts.log.warn(
          { network: rec.name, ours: rec.subnet, theirs: theirs.subnet },
          'config declares a network the cluster already defines differently; the cluster definition is used',
        );
      return theirs;
    }
  }

  /** The record as this host carries it: an uplink label becomes this host's interface. */
  private local(rec: NetworkRecord): NetworkRecord {
    const iface =
      rec.uplink === undefined ? undefined : (this.opts.physicalNetworks?.[rec.uplink] ?? rec.uplink);
    return iface === rec.uplink ? rec : { ...rec, uplink: iface };
  }

  private async track(stored: NetworkRecord): Promise<void> {
    const rec = this.local(stored);
    this.stored.set(rec.name, stored);
    this.records.set(rec.name, rec);
    this.ipams.set(
      rec.name,
      await Ipam.load(this.opts.store, rec, { quarantineSeconds: this.opts.ipQuarantineSeconds }),
    );
  }

  all(): NetworkRecord[] {
    return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): NetworkRecord {
    const rec = this.records.get(name);
    if (!rec)
      throw new BerthError('BERTH_ERR_NOT_FOUND', `could not find network "${name}": no such network`);
    return rec;
  }

  ipam(name: string): Ipam {
    this.get(name);
    return this.ipams.get(name) as Ipam;
  }

  private async checkVlan(rec: NetworkRecord): Promise<void> {
    // One uplink, one bridge: refused before the record is stored (hostnet/links/flat.ts).
    await this.opts.driver.checkUplink(toSpec(rec), this.all().map(toSpec));
    if (rec.vlan === undefined) return;
    const clash = [...this.records.values()].find(
      (n) => n.name !== rec.name && n.vlan === rec.vlan && n.uplink === rec.uplink,
    );
    if (clash) {
      throw couldNot(
        'BERTH_ERR_CONFLICT',
        'create',
        'network',
        rec.name,
        `VLAN ${rec.vlan} on uplink "${rec.uplink}" is already used by network "${clash.name}"`,
        {
          field: 'vlan',
        },
      );
    }
    await this.opts.driver.checkVlanSupport(rec);
  }

  create(input: NetworkCreate): Promise<NetworkRecord> {
    return this.lock.run(() => this.createNow(input));
  }

  private async createNow(input: NetworkCreate): Promise<NetworkRecord> {
    this.opts.requireConnected?.('create', `network "${input.name}"`);
    validateNetwork({ ...input }, '', (field, reason) => invalidField(field.replace(/^\./, ''), reason));
    if (this.records.has(input.name)) {
      throw couldNot(
        'BERTH_ERR_ALREADY_EXISTS',
        'create',
        'network',
        input.name,
        'a network with that name exists',
        { field: 'name' },
      );
    }
    const stored = recordFrom(input, 'api');
    const rec = this.local(stored);
    await this.checkVlan(rec);
    const key = `${NETWORK_PREFIX}${rec.name}`;
    // Quarantines kept from a deleted network of this name carry over; the rest of its records go.
    const old = await this.opts.store.list<AllocRecord>(`${IP_KEY_PREFIX}${rec.name}/`);
    const stale = staleIpKeys(old, { now: Date.now(), subnet: rec.subnet });
    await this.opts.store.batch(
      [{ type: 'put', key, value: stored }, ...stale.map((k) => ({ type: 'del' as const, key: k }))],
      { guards: [{ key, absent: true }] },
    );
    try {
      await this.opts.driver.ensureNetwork(toSpec(rec));
    } catch (err) {
      // Nothing half-applied: the host side rolled itself back; drop the record too.
      await this.opts.driver.removeNetwork(toSpec(rec)).catch(() => undefined);
      await this.opts.store.batch([{ type: 'del', key }]);
      throw err;
    }
    await this.track(stored);
    await this.opts.onRealised?.(rec);
    this.opts.log.info({ network: rec.name, subnet: rec.subnet, vlan: rec.vlan }, 'network created');
    return rec;
  }

  delete(name: string): Promise<void> {
    return this.lock.run(() => this.deleteNow(name));
  }

  private async deleteNow(name: string): Promise<void> {
    const rec = this.get(name);
    this.opts.requireConnected?.('delete', `network "${name}"`);
    const users = this.opts.instancesOn(name);
    if (users > 0)
      throw couldNot('BERTH_ERR_CONFLICT', 'delete', 'network', name, `${users} instance(s) still use it`);
    this.opts.onRemoved?.(rec);
    await this.opts.driver.removeNetwork(toSpec(rec));
    // Running IP quarantines stay: a re-created network must not hand out a just-released IP.
    const ipRows = await this.opts.store.list<AllocRecord>(`${IP_KEY_PREFIX}${name}/`);
    await this.opts.store.batch([
      { type: 'del', key: `${NETWORK_PREFIX}${name}` },
      ...staleIpKeys(ipRows, { now: Date.now() }).map((key) => ({ type: 'del' as const, key })),
    ]);
    this.forgetLocal(name);
    this.opts.log.info({ network: name }, 'network deleted');
  }

  private forgetLocal(name: string): void {
    this.records.delete(name);
    this.stored.delete(name);
    this.ipams.delete(name);
  }

  /** The driver's view of a network, with this host's interface for its uplink. */
  spec(rec: NetworkRecord): NetworkSpec {
    return toSpec(this.local(this.stored.get(rec.name) ?? rec));
  }

  /**
   * Cluster mode: makes this host carry exactly the networks the cluster
   * defines. A network another host created is realised here; one another
   * host deleted (it had no instances anywhere) is removed here.
   */
  syncFromStore(): Promise<void> {
    return this.lock.run(async () => {
      const pending = this.pending;
      this.pending = [];
      for (const net of pending) await this.declare(net);
      const wanted = new Map(
        (await this.opts.store.list<NetworkRecord>(NETWORK_PREFIX)).map((e) => [e.value.name, e.value]),
      );
      for (const [name, stored] of wanted) {
        if (this.records.has(name)) continue;
        await this.track(stored);
        const rec = this.get(name);
        try {
          await this.opts.driver.ensureNetwork(toSpec(rec));
          await this.opts.onRealised?.(rec);
          this.opts.log.info(
            { network: name, subnet: rec.subnet, uplink: rec.uplink },
            'network from the cluster realised',
          );
        } catch (err) {
          // Kept: the reconcile loop tries again, and `network show` tells why.
          this.opts.log.error(
            { network: name, err: causeText(err) },
            'could not realise a cluster network here',
          );
        }
      }
      for (const rec of this.all()) {
        if (wanted.has(rec.name)) continue;
        this.opts.onRemoved?.(rec);
        await this.opts.driver
          .removeNetwork(toSpec(rec))
          .catch((err) =>
            this.opts.log.error({ network: rec.name, err: causeText(err) }, 'could not remove network'),
          );
        this.forgetLocal(rec.name);
        this.opts.log.info({ network: rec.name }, 'network deleted in the cluster; removed here');
      }
    });
  }

  /** A peer's change to an IP record (cluster watch). */
  observeIp(key: string, record: AllocRecord | undefined): void {
    for (const ipam of this.ipams.values()) if (ipam.observe(key, record)) return;
  }

  async view(rec: NetworkRecord, drops?: Awaited<ReturnType<NetworkDriver['guardDrops']>>): Promise<Network> {
    const placement = this.opts.driver.placement(rec);
    // The network's edge counters are named after its endpoint port.
    const ports = new Set([...this.opts.portsOn(rec.name), placement.endpointVeth]);
    return {
      name: rec.name,
      subnet: rec.subnet,
      gateway: rec.gateway ?? null,
      vlan: rec.vlan ?? null,
      uplink: this.stored.get(rec.name)?.uplink ?? rec.uplink ?? null,
      mtu: rec.mtu,
      dns: rec.dns,
      domain: rec.domain ?? null,
      source: rec.source,
      created_at: rec.created_at,
      bridge: placement.bridge,
      endpoint: placement.endpointNetns,
      service_ip: serviceAddress(rec),
      ips: this.ipam(rec.name).usage(),
      guard_drops: (drops ?? []).filter((d) => ports.has(d.port)),
    };
  }
}
