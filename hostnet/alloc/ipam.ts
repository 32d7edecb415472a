// Fixed IPv4 addresses per network. The network, broadcast, gateway and the
// endpoint's service address are never handed to a guest.
import type { Store } from '../../agent/store/store.js';
import { broadcastOf, intToIp, ipToInt, parseCidr } from '../ipv4.js';
import { Allocator, type Owner, type Reservation, type Usage } from './allocator.js';

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
