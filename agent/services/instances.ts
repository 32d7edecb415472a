// Instances: one atomic batch allocates the MAC, the IP and the record; the
// guard goes in before the port exists; any failure rolls the host back and
// releases what was taken. A crash mid-way is finished or undone by recover().
import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { MacPool } from '../../hostnet/alloc/mac-pool.js';
import type { NetnsGuestSpec, NetworkDriver, PortSpec } from '../../hostnet/driver.js';
import type { Names } from '../../hostnet/names.js';
import { Reverter } from '../../hostnet/reverter.js';
import type { Instance, InstanceCreate, Nic } from '../api/types.js';
import { BerthError, causeText, couldNot } from '../errors.js';
import type { BatchOp, Store } from '../store/store.js';
import { type NetworkService, toSpec } from './networks.js';

export type InstanceRecord = Instance;

export const INSTANCE_PREFIX = 'instance/';
export const NAME_PREFIX = 'instance-name/';

export interface PortEntry extends PortSpec {}

export interface InstanceServiceOptions {
  store: Store;
  driver: NetworkDriver;
  networks: NetworkService;
  macs: MacPool;
  names: Names;
  log: Logger;
}

export class InstanceService {
  private readonly byId = new Map<string, InstanceRecord>();
  private readonly idByName = new Map<string, string>();
  private readonly portsByIfname = new Map<string, PortEntry>();
  private readonly portsByMac = new Map<string, PortEntry>();

  constructor(private readonly opts: InstanceServiceOptions) {}

  async load(): Promise<void> {
    for (const { value } of await this.opts.store.list<InstanceRecord>(INSTANCE_PREFIX)) this.track(value);
  }

  private track(rec: InstanceRecord): void {
    this.byId.set(rec.id, rec);
    this.idByName.set(rec.name, rec.id);
    for (const nic of rec.nics) {
      const entry: PortEntry = {
        ifname: nic.port,
        instance: rec.id,
        network: nic.network,
        mac: nic.mac,
        ip: nic.ip,
      };
      this.portsByIfname.set(nic.port, entry);
      this.portsByMac.set(nic.mac, entry);
    }
  }

  private untrack(rec: InstanceRecord): void {
    this.byId.delete(rec.id);
    this.idByName.delete(rec.name);
    for (const nic of rec.nics) {
      this.portsByIfname.delete(nic.port);
      this.portsByMac.delete(nic.mac);
    }
  }

  all(): InstanceRecord[] {
    return [...this.byId.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(nameOrId: string): InstanceRecord {
    const rec = this.byId.get(this.idByName.get(nameOrId) ?? nameOrId);
    if (!rec)
      throw new BerthError('BERTH_ERR_NOT_FOUND', `could not find instance "${nameOrId}": no such instance`);
    return rec;
  }

  countOn(network: string): number {
    return this.all().filter((i) => i.nics.some((n) => n.network === network)).length;
  }

  portsOn(network: string): string[] {
    return [...this.portsByIfname.values()].filter((p) => p.network === network).map((p) => p.ifname);
  }

  portByMac(mac: string): PortEntry | undefined {
    return this.portsByMac.get(mac);
  }

  portByIfname(ifname: string): PortEntry | undefined {
    return this.portsByIfname.get(ifname);
  }

  guestOf(rec: InstanceRecord): NetnsGuestSpec | undefined {
    const nic = rec.nics[0];
    if (rec.runtime !== 'netns' || !rec.netns || !nic) return undefined;
    return { netns: rec.netns, port: this.portSpec(rec, nic) };
  }

  private portSpec(rec: InstanceRecord, nic: Nic): PortSpec {
    return { ifname: nic.port, instance: rec.id, network: nic.network, mac: nic.mac, ip: nic.ip };
  }

  private async put(rec: InstanceRecord): Promise<void> {
    await this.opts.store.batch([{ type: 'put', key: `${INSTANCE_PREFIX}${rec.id}`, value: rec }]);
    this.track(rec);
  }

  async create(input: InstanceCreate): Promise<InstanceRecord> {
    const runtime = input.runtime ?? 'netns';
    if (runtime === 'libvirt') {
      throw couldNot(
        'BERTH_ERR_NOT_IMPLEMENTED',
        'create',
        'instance',
        input.name,
        'the libvirt runtime lands with compute; use --runtime netns',
      );
    }
    if (this.idByName.has(input.name)) {
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
    const hex = randomBytes(4).toString('hex');
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
      netns: this.opts.names.guestNetns(input.name),
      nics: [{ network: network.name, mac: mac.mac, ip: ip.ip, port: this.opts.names.port(hex, 0) }],
    };
    try {
      await this.opts.store.batch(
        [
          { type: 'put', key: `${INSTANCE_PREFIX}${id}`, value: rec },
          { type: 'put', key: `${NAME_PREFIX}${rec.name}`, value: id },
          mac.op,
          ip.op,
        ],
        { guards: [{ key: `${NAME_PREFIX}${rec.name}`, absent: true }, mac.guard, ip.guard] },
      );
    } catch (err) {
      mac.abort();
      ip.abort();
      throw err;
    }
    mac.commit();
    ip.commit();
    this.track(rec);

    const reverter = new Reverter();
    try {
      const guest = this.guestOf(rec) as NetnsGuestSpec;
      await this.opts.driver.guardPort(guest.port);
      reverter.add(`guard of port ${guest.port.ifname}`, () =>
        this.opts.driver.unguardPort(guest.port.ifname),
      );
      await this.opts.driver.ensureNetnsGuest(guest, toSpec(network));
      reverter.add(`netns guest ${guest.netns}`, () => this.opts.driver.removeNetnsGuest(guest));
      const running: InstanceRecord = { ...rec, state: 'running' };
      await this.put(running);
      reverter.success();
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
      throw couldNot('BERTH_ERR_HOST_OP', 'create', 'instance', rec.name, err, {});
    }
  }

  /** Deletes the records in one batch; the MAC and IP go into quarantine. */
  private async forget(rec: InstanceRecord): Promise<void> {
    const ops: BatchOp[] = [
      { type: 'del', key: `${INSTANCE_PREFIX}${rec.id}` },
      { type: 'del', key: `${NAME_PREFIX}${rec.name}` },
    ];
    const applies: (() => void)[] = [];
    for (const nic of rec.nics) {
      const m = this.opts.macs.releaseOp(nic.mac);
      const i = this.opts.networks.ipam(nic.network).releaseOp(nic.ip);
      for (const rel of [m, i]) {
        if (!rel) continue;
        ops.push(rel.op);
        applies.push(rel.apply);
      }
    }
    await this.opts.store.batch(ops);
    for (const apply of applies) apply();
    this.untrack(rec);
  }

  async delete(nameOrId: string): Promise<void> {
    const rec = this.get(nameOrId);
    if (rec.state !== 'deleting') await this.put({ ...rec, state: 'deleting' });
    await this.teardown(rec);
    await this.forget(rec);
    this.opts.log.info(
      { instance: rec.id, name: rec.name, mac: rec.nics[0]?.mac, ip: rec.nics[0]?.ip },
      'instance deleted; MAC and IP quarantined',
    );
  }

  /** Port first, then its guard: the port never exists without its rules. */
  private async teardown(rec: InstanceRecord): Promise<void> {
    const guest = this.guestOf(rec);
    if (guest) await this.opts.driver.removeNetnsGuest(guest);
    for (const nic of rec.nics) await this.opts.driver.unguardPort(nic.port);
  }

  /** After a crash: creates that did not finish are undone, deletes are finished. */
  async recover(): Promise<void> {
    for (const rec of this.all()) {
      if (rec.state !== 'creating' && rec.state !== 'deleting') continue;
      this.opts.log.warn(
        { instance: rec.id, name: rec.name, state: rec.state },
        'finishing an interrupted change',
      );
      await this.teardown(rec);
      await this.forget(rec);
    }
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
