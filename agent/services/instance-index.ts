// The in-memory index of this host's instances: by id, by name, and each
// port by interface, MAC and (network, IP). DHCP, metadata and the guard's
// audit resolve a guest from what they observe through it, once per request,
// so every lookup is one map read.
import { BerthError } from '../../base/errors.js';
import type { PortSpec } from '../../hostnet/driver.js';
import type { Instance } from '../api/types.js';

export interface PortEntry extends PortSpec {}

export class InstanceIndex {
  private readonly byId = new Map<string, Instance>();
  private readonly idByName = new Map<string, string>();
  private readonly portsByIfname = new Map<string, PortEntry>();
  private readonly portsByMac = new Map<string, PortEntry>();
  /** network -> ip: resolve() starts from the caller's source IP, and builds no key string for it. */
  private readonly portsByIp = new Map<string, Map<string, PortEntry>>();

  /** Adds or replaces the record and its ports. */
  track(rec: Instance): void {
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
      let ips = this.portsByIp.get(nic.network);
      if (!ips) {
        ips = new Map();
        this.portsByIp.set(nic.network, ips);
      }
      ips.set(nic.ip, entry);
    }
  }

  untrack(rec: Instance): void {
    this.byId.delete(rec.id);
    this.idByName.delete(rec.name);
    for (const nic of rec.nics) {
      this.portsByIfname.delete(nic.port);
      this.portsByMac.delete(nic.mac);
      const ips = this.portsByIp.get(nic.network);
      if (ips?.get(nic.ip)?.instance === rec.id) ips.delete(nic.ip);
    }
  }

  hasId(id: string): boolean {
    return this.byId.has(id);
  }

  hasName(name: string): boolean {
    return this.idByName.has(name);
  }

  byIdOrUndefined(id: string): Instance | undefined {
    return this.byId.get(id);
  }

  all(): Instance[] {
    return [...this.byId.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(nameOrId: string): Instance {
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

  nameOf(id: string): string | undefined {
    return this.byId.get(id)?.name;
  }

  portByMac(mac: string): PortEntry | undefined {
    return this.portsByMac.get(mac);
  }

  portByIfname(ifname: string): PortEntry | undefined {
    return this.portsByIfname.get(ifname);
  }

  portByIp(network: string, ip: string): PortEntry | undefined {
    return this.portsByIp.get(network)?.get(ip);
  }
}
