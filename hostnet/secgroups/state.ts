// What security groups must enforce on this host, after berthd has resolved
// every group, rule and source into addresses. hostnet/secgroups renders and
// applies it; agent/secgroups compiles it. Nothing here knows about groups'
// names beyond the labels carried for counters and audit.

/**
 * One member as the bridge sees its frames: source address, source MAC and
 * the bridge port they arrive on. A local guest's port is its own; another
 * host's guest arrives on the network's uplink. So an address counts only
 * from where its holder is: a hand-plugged port or a box behind the uplink
 * that takes a member's address (and even its MAC, on a foreign port) is not
 * that member.
 */
export interface SgSetMember {
  ip: string;
  mac: string;
  port: string;
}

/** The members of one non-CIDR source (role:, group:, instance:, image:) on one network. */
export interface SgSet {
  /** nft set name, `s_<hash>`: stable for one source, so a member change is an element change. */
  name: string;
  /** What it stands for, for `nft list` readers and audit: e.g. `role:database`. */
  source: string;
  /** Every member (every host's guests in cluster mode). */
  members: SgSetMember[];
}

/** The nft type of a source set's elements, in SgSetMember's order. */
export const SET_MEMBER_TYPE = 'ipv4_addr . ether_addr . ifname';

/** A member as an nft element (and as the observed key the plan diffs by). */
export function memberElement(m: SgSetMember): string {
  return `${m.ip} . ${m.mac} . "${m.port}"`;
}

export type SgProto = 'tcp' | 'udp' | 'icmp' | 'any';

/** One ACCEPT rule as it applies to one port. */
export interface SgRule {
  /** Stable rule id (`sr-xxxxxxxx`): names its counter and its audit entries. */
  id: string;
  /** The group that carries the rule. */
  group: string;
  proto: SgProto;
  /** Destination port range, inclusive; only for tcp and udp. */
  ports?: { from: number; to: number };
  /** Where the traffic may come from: an SgSet by name, or a CIDR. */
  from: { set: string } | { cidr: string };
}

/** A guest port in at least one group: it receives only what its rules accept. */
export interface SgPort {
  /** The port's interface name (tap or veth, root side). */
  ifname: string;
  /** The bridge it is on. */
  bridge: string;
  /**
   * The port's VLAN (its pvid) on a VLAN-filtering trunk bridge, undefined
   * otherwise: networks on one trunk bridge may overlap, so connection state
   * is kept per (bridge, VLAN).
   */
  vlan?: number;
  /** The guest's MAC and assigned IPv4 address on this port. */
  mac: string;
  ip: string;
  /** The instance it belongs to, for audit. */
  instance: string;
  /** The network's endpoint ports (root-side veth names): DHCP and metadata come from there. */
  endpointPorts: string[];
  rules: SgRule[];
}

/** Desired state: the whole of it, every time (apply reconciles towards it). */
export interface SecGroupState {
  ports: SgPort[];
  sets: SgSet[];
}

/** Which data path enforces connection state (detected on the running kernel). */
export type SgMode =
  /** nf_conntrack_bridge: `ct state` in the bridge family (Debian's stock kernel, as a module). */
  | 'bridge-ct'
  /** No nf_conntrack_bridge: br_netfilter hands bridged IPv4 to the inet hooks, where conntrack runs. */
  | 'br-netfilter';

/** A flow that must end: a source left a set that admitted it to a port. */
export interface SgFlowCut {
  src: string;
  dst: string;
}
