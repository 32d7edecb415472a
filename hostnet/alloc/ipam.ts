// Fixed IPv4 addresses per network. The network, broadcast, gateway and the
// endpoint's service address are never handed to a guest.
import type { Store } from '../../base/store.js';
import { broadcastOf, cidrContains, intToIp, ipToInt, isIPv4, parseCidr } from '../ipv4.js';
import { Allocator, type AllocRecord, type Owner, type Reservation, type Usage } from './allocator.js';

export interface IpamNetwork {
  name: string;
  subnet: string;
  gateway?: string | undefined;
}

export const IP_KEY_PREFIX = 'ip/';

/** The endpoint's in-subnet address: the highest usable one that is not the gateway. */
export function serviceAddress(net: IpamNetwork): string {
  const cidr = parseCidr(net.subnet);
  if (!cidr) throw new Error(`"${net.subnet}" is not a CIDR`);
  let candidate = broadcastOf(cidr) - 1;
  if (net.gateway !== undefined && ipToInt(net.gateway) === candidate) candidate -= 1;
  return intToIp(candidate);
}

/**
 * The keys of a network's IP records that may go: everything but a quarantine
 * still running, and (for the subnet a network is created with) addresses
 * outside it. A network's delete keeps its running quarantines, so deleting
 * and re-creating a network (same name and subnet) never hands a freshly
 * released IP to the next guest before its time.
 */
export function staleIpKeys(
  rows: { key: string; value: AllocRecord }[],
  keep: { now: number; subnet?: string },
): string[] {
  const cidr = keep.subnet === undefined ? undefined : parseCidr(keep.subnet);
  return rows
    .filter(({ key, value }) => {
      if (value.state !== 'quarantined' || (value.until ?? 0) <= keep.now) return true;
      if (!cidr) return false;
      const ip = key.slice(key.lastIndexOf('/') + 1);
      return !isIPv4(ip) || !cidrContains(cidr, ipToInt(ip));
    })
    .map((r) => r.key);
}

export class Ipam {
  private constructor(
    readonly network: IpamNetwork,
    readonly serviceIp: string,
    private readonly alloc: Allocator,
  ) {}

  static async load(
    store: Store,
    network: IpamNetwork,
    options: { quarantineSeconds: number; now?: () => number },
  ): Promise<Ipam> {
    const cidr = parseCidr(network.subnet);
    if (!cidr) throw new Error(`"${network.subnet}" is not a CIDR`);
    const service = serviceAddress(network);
    const excluded = new Set([ipToInt(service)]);
    if (network.gateway !== undefined) excluded.add(ipToInt(network.gateway));
    const alloc = await Allocator.load(store, {
      what: 'IP address',
      where: `in network "${network.name}"`,
      keyPrefix: `${IP_KEY_PREFIX}${network.name}/`,
      first: cidr.network + 1,
      last: broadcastOf(cidr) - 1,
      format: intToIp,
      parse: ipToInt,
      excluded,
      quarantineMs: options.quarantineSeconds * 1000,
      ...(options.now ? { now: options.now } : {}),
    });
    return new Ipam(network, service, alloc);
  }

  reserve(owner: Owner, wanted?: string): Reservation & { ip: string } {
    const r = this.alloc.reserve(owner, wanted === undefined ? undefined : ipToInt(wanted));
    return { ...r, ip: intToIp(r.value) };
  }

  releaseOp(ip: string) {
    const value = ipToInt(ip);
    const rel = this.alloc.releaseOp(value);
    return rel && { ...rel, apply: () => this.alloc.markReleased(value, rel.record) };
  }

  /** A peer's change to one of this network's IP records (cluster watch). */
  observe(key: string, record: AllocRecord | undefined): boolean {
    return this.alloc.observe(key, record);
  }

  spreadFrom(offset: number): void {
    this.alloc.spreadFrom(offset);
  }

  owner(ip: string) {
    return this.alloc.get(ipToInt(ip));
  }

  usage(): Usage {
    return this.alloc.usage();
  }

  /** Every record of this network, for deleting the network once it is empty. */
  keyOf(ip: string): string {
    return this.alloc.key(ipToInt(ip));
  }
}
