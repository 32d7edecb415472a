// Every host object berth creates carries an owned prefix, so reconcile can
// find its orphans and never touches anything else. Interface names stay
// within the kernel's 15 characters.
import { createHash } from 'node:crypto';

export const DEFAULT_PREFIX = 'bth';
export const IFNAMSIZ = 15;
const PREFIX = /^[a-z][a-z0-9]{1,3}$/;

export function checkPrefix(prefix: string): string {
  if (!PREFIX.test(prefix))
    throw new Error(
      `name prefix "${prefix}" must be 2-4 lower-case letters or digits, starting with a letter`,
    );
  return prefix;
}

/** Six hex digits that stand for a longer name. */
export function shortId(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 6);
}

export class Names {
  constructor(readonly prefix: string = DEFAULT_PREFIX) {
    checkPrefix(prefix);
  }

  /** The bridge of a flat network, or of one VLAN in subinterface mode. */
  bridge(network: string): string {
    return `${this.prefix}b${shortId(network)}`;
  }

  /** The VLAN-filtering bridge that serves every VLAN network on one uplink. */
  trunkBridge(uplink: string): string {
    return `${this.prefix}t${shortId(uplink)}`;
  }

  /** uplink.vid in subinterface mode, named so it stays owned and short. */
  vlanSubinterface(uplink: string, vid: number): string {
    return `${this.prefix}v${shortId(uplink).slice(0, 4)}.${vid}`;
  }

  /** The root-side end of a network endpoint's veth. */
  endpointVeth(network: string): string {
    return `${this.prefix}e${shortId(network)}`;
  }

  endpointNetns(network: string): string {
    return `${this.prefix}-ep-${network}`;
  }

  /** A guest NIC's port: tap (libvirt) or the root-side end of a veth (netns). */
  port(instanceId: string, nic: number): string {
    return `${this.prefix}p${instanceId.slice(0, 8)}${nic.toString(36)}`;
  }

  guestNetns(instanceName: string): string {
    return `${this.prefix}-g-${instanceName}`;
  }

  /** The bridge-family nft table that holds every port's guard. */
  guardTable(): string {
    return `${this.prefix}_guard`;
  }

  /**
   * The NFLOG group of this berthd's guard drops: one per prefix, since only
   * one process may bind an NFLOG group and several berthds can share a host.
   */
  logGroup(): number {
    return (
      1024 + (Number.parseInt(createHash('sha256').update(this.prefix).digest('hex').slice(0, 4), 16) % 64000)
    );
  }

  owns(ifname: string): boolean {
    return (
      ifname.startsWith(this.prefix) &&
      ifname.length > this.prefix.length &&
      'btvep'.includes(ifname[this.prefix.length] as string)
    );
  }

  ownsNetns(name: string): boolean {
    return name.startsWith(`${this.prefix}-`);
  }
}
