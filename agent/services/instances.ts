// Instances: one atomic batch allocates the MAC, the IP and the record; the
// guard goes in before the port exists; any failure rolls the host back and
// releases what was taken. A crash mid-way is finished or undone by recover().
import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { BerthError, causeText, couldNot, invalidField } from '../../base/errors.js';
import type { BatchOp, Store } from '../../base/store.js';
import type { MacPool } from '../../hostnet/alloc/mac-pool.js';
import type { NetworkDriver } from '../../hostnet/driver.js';
import type { Names } from '../../hostnet/names.js';
import { Reverter } from '../../hostnet/reverter.js';
import type { Instance, InstanceCreate } from '../api/types.js';
import { inputKeys, prepareInputs } from '../metadata/inputs.js';
import { HostLock } from './host-lock.js';
import {
  type ClusterSide,
  commitSplit,
  createCommitError,
  DIRECTORY_PREFIX,
  type DirectoryEntry,
  directoryEntry,
  isAllocationRace,
} from './instance-cluster.js';
import { InstanceIndex, type PortEntry } from './instance-index.js';
import { applyMetadataPatch, type UpdateSummary } from './instance-meta-update.js';
import { netnsGuestOf, plugInstance, unplugInstance } from './instance-plug.js';
import {
  authorizeChange,
  commitUpdate,
  type InstanceUpdate,
  resolveSecgroups,
  type SecGroupLookup,
  sameList,
  withSecgroups,
} from './instance-update.js';
import type { LibvirtRuntime } from './libvirt-runtime.js';
import type { NetworkService } from './networks.js';
import type { Caller } from './secgroup-join.js';

export type InstanceRecord = Instance;
export {
  type ClusterSide,
  DIRECTORY_PREFIX,
  type DirectoryEntry,
  directoryEntry,
} from './instance-cluster.js';

export const INSTANCE_PREFIX = 'instance/';
export const NAME_PREFIX = 'instance-name/';

export type { PortEntry } from './instance-index.js';

export interface InstanceServiceOptions {
  store: Store;
  driver: NetworkDriver;
  networks: NetworkService;
  macs: MacPool;
  names: Names;
  log: Logger;
  /** Serialises host changes with the reconcile loop; a private lock when not shared. */
  lock?: HostLock;
  /** Told after an instance was created or deleted (metadata caches forget what they knew). */
  onChanged?: (rec: InstanceRecord) => void;
  /** The libvirt runtime (libvirt-runtime.ts); without it libvirt creates are not implemented. */
  libvirt?: LibvirtRuntime;
  /** The 8 hex digits of a new instance id (random); tests force collisions with it. */
  newIdHex?: () => string;
  /**
   * Cluster mode: names, MACs, IPs and the directory live in the shared
   * (etcd-backed) store, the full record in the local one. Unset: one store.
   */
  cluster?: ClusterSide;
  /** Security groups an instance may join; without it any `secgroups` is refused as unknown. */
  secgroups?: SecGroupLookup;
  /** Puts the instance's security groups on the host now; throws when it could not. */
  enforceSecgroups?: (rec: InstanceRecord) => Promise<void>;
}

/** berth's instance ids: "i-" and hex. A name of that shape would shadow an id in every lookup. */
export const INSTANCE_ID = /^i-[0-9a-f]+$/;
const ID_TRIES = 4;
/** Creates retried after a peer host won the same MAC or IP. */
const ALLOC_TRIES = 8;

export class InstanceService {
  private readonly index = new InstanceIndex();

  private readonly lock: HostLock;

  constructor(private readonly opts: InstanceServiceOptions) {
    this.lock = opts.lock ?? new HostLock();
  }

  async load(): Promise<void> {
    for (const { value } of await this.opts.store.list<InstanceRecord>(INSTANCE_PREFIX))
      this.index.track(value);
  }

  // Reads go straight to the index: DHCP and metadata resolve a guest through them per request.
  readonly all = (): InstanceRecord[] => this.index.all();
  readonly get = (nameOrId: string): InstanceRecord => this.index.get(nameOrId);
  readonly countOn = (network: string): number => this.index.countOn(network);
  readonly portsOn = (network: string): string[] => this.index.portsOn(network);
  readonly nameOf = (id: string): string | undefined => this.index.nameOf(id);
  readonly portByMac = (mac: string): PortEntry | undefined => this.index.portByMac(mac);
  readonly portByIfname = (ifname: string): PortEntry | undefined => this.index.portByIfname(ifname);
  readonly portByIp = (network: string, ip: string): PortEntry | undefined =>
    this.index.portByIp(network, ip);

  readonly guestOf = netnsGuestOf;

  private async put(rec: InstanceRecord): Promise<void> {
    await this.opts.store.batch([{ type: 'put', key: `${INSTANCE_PREFIX}${rec.id}`, value: rec }]);
    this.index.track(rec);
  }

  /** caller: who asked (the admin API passes the peer); undefined is berthd itself. */
  create(input: InstanceCreate, caller?: Caller): Promise<InstanceRecord> {
    return this.lock.run(() => this.createNow(input, caller));
  }

  /**
   * Changes a live instance: its security groups and what its metadata is made
   * of (instance-meta-update.ts). Everything is checked before anything is
   * written; what changes lands in one commit, the endpoints forget the
   * guest's cached answers (onChanged), and a change of role or groups is
   * answered once the bridge enforces it. The same values again write nothing.
   */
  async update(nameOrId: string, patch: InstanceUpdate, caller?: Caller): Promise<InstanceRecord> {
    return (await this.updateDescribed(nameOrId, patch, caller)).instance;
  }

  /** update(), with what changed for the audit record. */
  updateDescribed(
    nameOrId: string,
    patch: InstanceUpdate,
    caller?: Caller,
  ): Promise<{ instance: InstanceRecord; summary: UpdateSummary }> {
    return this.lock.run(async () => {
      const rec = this.get(nameOrId);
      const change = applyMetadataPatch(rec, patch);
      const summary = change.summary;
      let next = change.next;
      if (patch.secgroups !== undefined) {
        const list = resolveSecgroups(patch.secgroups, this.opts.secgroups);
        if (!sameList(rec.secgroups, list)) {
          authorizeChange(rec.name, rec.secgroups ?? [], list, this.opts.secgroups, caller);
          next = withSecgroups(next, list);
          summary.changed.push('secgroups');
          summary.secgroups = { from: rec.secgroups ?? [], to: list };
        }
      }
      if (summary.changed.length === 0) return { instance: rec, summary };
      if (rec.state === 'creating' || rec.state === 'deleting')
        throw couldNot('BERTH_ERR_CONFLICT', 'update', 'instance', rec.name, `it is ${rec.state}`);
      await commitUpdate(
        this.opts.store,
        this.opts.cluster,
        `${INSTANCE_PREFIX}${rec.id}`,
        rec,
        next,
        change.ops,
      ).catch((err) => {
        throw err instanceof BerthError ? couldNot(err.code, 'update', 'instance', rec.name, err) : err;
      });
      this.index.track(next);
      // The endpoints drop this guest's cached answers before the caller hears back.
      this.opts.onChanged?.(next);
      this.opts.log.info(
        { instance: rec.id, name: rec.name, changed: summary.changed, version: next.metadata_version },
        'instance updated',
      );
      // A role is a security-group source as much as a membership is. Answered
      // once the bridge enforces it; a failure is retried by the enforcer and named here.
      if (summary.secgroups || summary.role) await this.opts.enforceSecgroups?.(next);
      return { instance: next, summary };
    });
  }

  private async createNow(input: InstanceCreate, caller?: Caller): Promise<InstanceRecord> {
    const runtime = input.runtime ?? 'netns';
    if (runtime === 'libvirt' && !this.opts.libvirt) {
      throw couldNot(
        'BERTH_ERR_NOT_IMPLEMENTED',
        'create',
        'instance',
        input.name,
        'the libvirt runtime lands with compute; use --runtime netns',
      );
    }
    if (INSTANCE_ID.test(input.name))
      throw invalidField(
        'name',
        `"${input.name}" looks like an instance id ("i-" and hex); instance ids are berth's to give, choose another name`,
      );
    const nameTaken =
      this.index.hasName(input.name) ||
      (this.opts.cluster !== undefined &&
        (await this.shared.get(`${NAME_PREFIX}${input.name}`)) !== undefined);
    if (nameTaken) {
      throw couldNot(
        'BERTH_ERR_ALREADY_EXISTS',
        'create',
        'instance',
        input.name,
        'an instance with that name exists',
        { field: 'name' },
      );
    }
    const network = this.opts.networks.get(input.network);
    const inputs = prepareInputs(input);
    const secgroups = resolveSecgroups(input.secgroups, this.opts.secgroups);
    authorizeChange(input.name, [], secgroups, this.opts.secgroups, caller);
    // Image hash and libvirt are checked before anything is allocated.
    const boot = runtime === 'libvirt' ? await this.opts.libvirt?.prepare(input) : undefined;
    this.opts.cluster?.requireConnected('create', `instance "${input.name}"`);
    let reserved: Awaited<ReturnType<InstanceService['reserveAndCommit']>>;
    for (let attempt = 1; ; attempt++) {
      try {
        reserved = await this.reserveAndCommit(input, network, inputs, boot, runtime, secgroups);
        break;
      } catch (err) {
        // Another host took the MAC or IP between our read and our write: its
        // record is on its way through the watch; pick again.
        if (this.opts.cluster && attempt < ALLOC_TRIES && isAllocationRace(err)) {
          this.opts.log.debug(
            { name: input.name, attempt, err: causeText(err) },
            'allocation raced a peer; retrying',
          );
          continue;
        }
        throw err;
      }
    }
    const { rec, mac, ip, id } = reserved;
    mac.commit();
    ip.commit();
    this.index.track(rec);

    const reverter = new Reverter();
    try {
      await plugInstance(this.opts, rec, network, boot, reverter);
      const running: InstanceRecord = { ...rec, state: 'running' };
      await this.put(running);
      reverter.success();
      this.opts.onChanged?.(running);
      this.opts.log.info(
        {
          instance: id,
          name: rec.name,
          mac: mac.mac,
          ip: ip.ip,
          port: rec.nics[0]?.port,
          network: network.name,
        },
        'instance created',
      );
      return running;
    } catch (err) {
      const undoErrors = await reverter.fail();
      for (const e of undoErrors)
        this.opts.log.error({ instance: id, err: e.message }, 'rollback step failed');
      await this.forget(rec).catch((e) =>
        this.opts.log.error({ instance: id, err: causeText(e) }, 'could not release after failed create'),
      );
      // A full or failing store keeps its code: the host part worked, the record could not be kept.
      const code =
        err instanceof BerthError && err.code.startsWith('BERTH_ERR_STORE') ? err.code : 'BERTH_ERR_HOST_OP';
      throw couldNot(code, 'create', 'instance', rec.name, err, {});
    }
  }

  /** One attempt: picks an id, a MAC and an IP, and lands them with the record. */
  private async reserveAndCommit(
    input: InstanceCreate,
    network: ReturnType<NetworkService['get']>,
    inputs: ReturnType<typeof prepareInputs>,
    boot: Awaited<ReturnType<LibvirtRuntime['prepare']>> | undefined,
    runtime: InstanceRecord['runtime'],
    secgroups: string[],
  ) {
    const hex = this.freshIdHex();
    const id = `i-${hex}`;
    const mac = this.opts.macs.reserve({ instance: id, nic: 0 });
    let ip: ReturnType<ReturnType<NetworkService['ipam']>['reserve']>;
    try {
      ip = this.opts.networks.ipam(network.name).reserve({ instance: id, nic: 0 });
    } catch (err) {
      mac.abort();
      throw err;
    }
    const rec: InstanceRecord = {
      id,
      uuid: randomUUID(),
      name: input.name,
      runtime,
      state: 'creating',
      created_at: new Date().toISOString(),
      ...(runtime === 'netns' ? { netns: this.opts.names.guestNetns(input.name) } : {}),
      nics: [{ network: network.name, mac: mac.mac, ip: ip.ip, port: this.opts.names.port(hex, 0) }],
      ...inputs.fields,
      metadata_version: 1,
      ...(secgroups.length > 0 ? { secgroups } : {}),
      ...(boot && this.opts.libvirt
        ? {
            image: boot.name,
            image_sha256: boot.image.sha256,
            domain: this.opts.libvirt.domainName(input),
            console_log: this.opts.libvirt.consoleLog(id),
            vcpus: input.vcpus ?? 1,
            memory_mib: input.memory_mib ?? 256,
          }
        : {}),
    };
    const cluster = this.opts.cluster;
    const nameKey = `${NAME_PREFIX}${rec.name}`;
    const dirKey = `${DIRECTORY_PREFIX}${id}`;
    try {
      await commitSplit(
        this.opts.store,
        this.shared,
        {
          local: [{ type: 'put', key: `${INSTANCE_PREFIX}${id}`, value: rec }, ...inputs.ops(id)],
          // The id is random: the guard, not luck, keeps a collision from overwriting an instance.
          localGuards: [{ key: `${INSTANCE_PREFIX}${id}`, absent: true }],
          shared: [
            { type: 'put', key: nameKey, value: id },
            mac.op,
            ip.op,
            ...(cluster
              ? [{ type: 'put' as const, key: dirKey, value: directoryEntry(rec, cluster.hostId) }]
              : []),
          ],
          sharedGuards: [
            { key: nameKey, absent: true },
            mac.guard,
            ip.guard,
            ...(cluster ? [{ key: dirKey, absent: true as const }] : []),
          ],
        },
        () =>
          this.shared.batch(
            [nameKey, mac.op.key, ip.op.key, dirKey].map((key) => ({ type: 'del' as const, key })),
          ),
      );
    } catch (err) {
      mac.abort();
      ip.abort();
      // The transaction may have landed before etcd went quiet: sweep once it answers.
      if (err instanceof BerthError && err.code === 'BERTH_ERR_CLUSTER_UNAVAILABLE') this.sweepWhenBack();
      // Nothing is on the host yet.
      throw createCommitError(err, rec.name, id, {
        record: `${INSTANCE_PREFIX}${id}`,
        name: nameKey,
        directory: dirKey,
      });
    }
    return { rec, mac, ip, id };
  }

  private get shared(): Store {
    return this.opts.cluster?.shared ?? this.opts.store;
  }

  /** A random id hex no tracked instance has; the store guard catches the rest. */
  private freshIdHex(): string {
    const next = this.opts.newIdHex ?? (() => randomBytes(4).toString('hex'));
    let hex = next();
    for (let i = 1; i < ID_TRIES && this.index.hasId(`i-${hex}`); i++) hex = next();
    return hex;
  }

  /** Deletes the records; the MAC and IP go into quarantine (cluster-wide in cluster mode). */
  private async forget(rec: InstanceRecord): Promise<void> {
    const local: BatchOp[] = [
      { type: 'del', key: `${INSTANCE_PREFIX}${rec.id}` },
      ...inputKeys(rec.id).map((key) => ({ type: 'del' as const, key })),
      // The lease goes with the instance; the IP's quarantine keeps it from the next guest.
      ...rec.nics.map((nic) => ({ type: 'del' as const, key: `lease/${nic.network}/${nic.mac}` })),
    ];
    const shared: BatchOp[] = [{ type: 'del', key: `${NAME_PREFIX}${rec.name}` }];
    if (this.opts.cluster) shared.push({ type: 'del', key: `${DIRECTORY_PREFIX}${rec.id}` });
    const applies: (() => void)[] = [];
    for (const nic of rec.nics) {
      const m = this.opts.macs.releaseOp(nic.mac);
      const i = this.opts.networks.ipam(nic.network).releaseOp(nic.ip);
      for (const rel of [m, i]) {
        // Released already (a delete finished in the cluster, not yet here), or another's now.
        if (!rel || rel.record.instance !== rec.id) continue;
        shared.push(rel.op);
        applies.push(rel.apply);
      }
    }
    // The cluster half first: a record left behind is finished by recover(), a
    // reservation left behind would be an orphan.
    if (this.shared === this.opts.store) await this.opts.store.batch([...local, ...shared]);
    else {
      await this.shared.batch(shared);
      await this.opts.store.batch(local);
    }
    for (const apply of applies) apply();
    this.index.untrack(rec);
  }

  private sweepTimer: NodeJS.Timeout | undefined;

  /** Once etcd answers again, releases whatever a create cut short by the outage left reserved. */
  private sweepWhenBack(): void {
    const cluster = this.opts.cluster;
    if (!cluster || this.sweepTimer) return;
    this.sweepTimer = setInterval(() => {
      if (!cluster.connected()) return;
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
      void this.lock
        .run(() => this.sweepOrphans())
        .catch((err) => {
          this.opts.log.warn({ err: causeText(err) }, 'could not sweep after the outage; next reconcile');
        });
    }, 1000);
    this.sweepTimer.unref();
  }

  /**
   * Cluster reservations of this host with no record here: a create that
   * crashed between its cluster and its local write. Released like a delete.
   */
  private async sweepOrphans(): Promise<void> {
    const cluster = this.opts.cluster;
    if (!cluster) return;
    for (const { value } of await this.shared.list<DirectoryEntry>(DIRECTORY_PREFIX)) {
      if (value.host !== cluster.hostId || this.index.hasId(value.id)) continue;
      this.opts.log.warn(
        { instance: value.id, name: value.name },
        'releasing a reservation left by an unfinished create',
      );
      const ghost: InstanceRecord = {
        ...value,
        uuid: '',
        state: 'deleting',
        nics: value.nics.map((n) => ({ ...n, port: '' })),
      };
      await this.forget(ghost);
    }
  }

  delete(nameOrId: string): Promise<void> {
    return this.lock.run(() => this.deleteNow(nameOrId));
  }

  private async deleteNow(nameOrId: string): Promise<void> {
    const rec = this.get(nameOrId);
    // The guest is destroyed before its addresses are released: make sure the
    // cluster answers first, so an outage refuses the delete with nothing done.
    await this.opts.cluster?.probe('delete', `instance "${rec.name}"`);
    if (rec.state !== 'deleting')
      await this.put({ ...rec, state: 'deleting' }).catch((err) => {
        // Refused before anything was touched (a full disk): the instance runs on as it was.
        throw err instanceof BerthError ? couldNot(err.code, 'delete', 'instance', rec.name, err) : err;
      });
    await this.teardown(rec);
    await this.forget(rec);
    this.opts.onChanged?.(rec);
    this.opts.log.info(
      { instance: rec.id, name: rec.name, mac: rec.nics[0]?.mac, ip: rec.nics[0]?.ip },
      'instance deleted; MAC and IP quarantined',
    );
  }

  /** Port first, then its guard: the port never exists without its rules. */
  private teardown(rec: InstanceRecord): Promise<void> {
    return unplugInstance(this.opts, rec);
  }

  /** After a crash: creates that did not finish are undone, deletes are finished. */
  async recover(): Promise<void> {
    await this.sweepOrphans().catch((err) =>
      this.opts.log.warn({ err: causeText(err) }, 'could not sweep unfinished creates; next pass'),
    );
    for (const rec of this.all()) {
      if (rec.state !== 'creating' && rec.state !== 'deleting') continue;
      this.opts.log.warn(
        { instance: rec.id, name: rec.name, state: rec.state },
        'finishing an interrupted change',
      );
      try {
        await this.teardown(rec);
      } catch (err) {
        // libvirt may be down: the record stays 'creating'/'deleting' for the next start.
        this.opts.log.error(
          { instance: rec.id, err: causeText(err) },
          'could not finish; will retry at next start',
        );
        continue;
      }
      await this.forget(rec);
    }
  }

  /** A state seen on the hypervisor; creates and deletes in flight keep theirs. */
  setState(id: string, state: InstanceRecord['state']): Promise<void> {
    return this.lock.run(async () => {
      const rec = this.index.byIdOrUndefined(id);
      if (!rec || rec.state === state || rec.state === 'creating' || rec.state === 'deleting') return;
      await this.put({ ...rec, state });
    });
  }

  /** start | stop | reboot of a libvirt instance. */
  power(nameOrId: string, verb: 'start' | 'stop' | 'reboot', timeoutMs = 30_000): Promise<InstanceRecord> {
    return this.lock.run(async () => {
      const rec = this.get(nameOrId);
      const libvirt = this.opts.libvirt;
      if (rec.runtime !== 'libvirt' || !libvirt)
        throw couldNot(
          'BERTH_ERR_CONFLICT',
          verb,
          'instance',
          rec.name,
          'start, stop and reboot are for libvirt instances',
        );
      if (rec.state === 'creating' || rec.state === 'deleting')
        throw couldNot('BERTH_ERR_CONFLICT', verb, 'instance', rec.name, `it is ${rec.state}`);
      try {
        if (verb === 'start') await libvirt.startInstance(rec);
        else if (verb === 'reboot') await libvirt.rebootInstance(rec);
        else await libvirt.stopInstance(rec, timeoutMs);
      } catch (err) {
        if (err instanceof BerthError) throw err;
        throw couldNot('BERTH_ERR_HOST_OP', verb, 'instance', rec.name, err);
      }
      const state = verb === 'stop' ? 'stopped' : 'running';
      const next = { ...this.get(rec.id), state } as InstanceRecord;
      await this.put(next);
      return next;
    });
  }

  async exec(nameOrId: string, argv: string[]) {
    const rec = this.get(nameOrId);
    if (rec.runtime !== 'netns' || !rec.netns) {
      throw couldNot(
        'BERTH_ERR_CONFLICT',
        'exec in',
        'instance',
        rec.name,
        'exec is for netns instances; use the console for libvirt guests',
      );
    }
    return this.opts.driver.execInNetns(rec.netns, argv);
  }
}
