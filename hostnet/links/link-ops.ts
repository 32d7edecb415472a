// LinkOps: the one interface between berth's link logic and the kernel.
// The real adapter (ip-link-ops.ts) drives iproute2 through the CommandRunner
// seam; reads use `ip -j`, so the logic above can compare observed state
// before it writes.
import type { CommandResult } from '../../base/command.js';

export interface Ipv4Address {
  address: string;
  prefixLen: number;
}

export interface BridgeState {
  stpState: number;
  /** Centiseconds, as the kernel reports it. */
  forwardDelay: number;
  vlanFiltering: boolean;
}

export interface LinkInfo {
  ifindex: number;
  name: string;
  /** linkinfo.info_kind: bridge, veth, vlan, tun...; undefined for plain devices. */
  kind: string | undefined;
  up: boolean;
  mtu: number;
  mac: string;
  master: string | undefined;
  ipv4: Ipv4Address[];
  bridge: BridgeState | undefined;
}

export interface BridgeOptions {
  stpState?: 0 | 1;
  forwardDelay?: number;
  vlanFiltering?: boolean;
  /** 0 keeps new ports out of every VLAN until they get their own pvid. */
  vlanDefaultPvid?: number;
}

export interface VethOptions {
  peerNetns?: string;
  peerMac?: string;
  mtu?: number;
}

export interface VlanFlags {
  pvid?: boolean;
  untagged?: boolean;
  /** Applies to the bridge device itself rather than a port. */
  self?: boolean;
}

export interface PortVlan {
  vid: number;
  pvid: boolean;
  untagged: boolean;
}

export interface RouteInfo {
  dst: string;
  dev: string | undefined;
}

/** One IPv4 neighbour entry in a namespace. */
export interface NeighbourInfo {
  ip: string;
  mac: string;
  dev: string;
  /** Written by an administrator; ARP never replaces it. */
  permanent: boolean;
}

/** One bridge FDB entry behind a port (the ports' own addresses left out). */
export interface FdbInfo {
  mac: string;
  port: string;
  bridge: string;
  vlan?: number;
  static: boolean;
  sticky: boolean;
}

export interface LinkOps {
  listLinks(netns?: string): Promise<LinkInfo[]>;
  /** undefined when the link does not exist. */
  getLink(name: string, netns?: string): Promise<LinkInfo | undefined>;
  createBridge(name: string, opts?: { mac?: string; mtu?: number; options?: BridgeOptions }): Promise<void>;
  setBridgeOptions(name: string, options: BridgeOptions): Promise<void>;
  setLinkUp(name: string, netns?: string): Promise<void>;
  setMaster(name: string, master: string): Promise<void>;
  /** `ip link set X nomaster`: out of its bridge, otherwise untouched. */
  setNoMaster(name: string): Promise<void>;
  setMac(name: string, mac: string, netns?: string): Promise<void>;
  setMtu(name: string, mtu: number, netns?: string): Promise<void>;
  createVeth(name: string, peer: string, opts?: VethOptions): Promise<void>;
  moveToNetns(name: string, netns: string, newName?: string): Promise<void>;
  /** Succeeds when the link is already gone. */
  deleteLink(name: string, netns?: string): Promise<void>;
  /** Succeeds when the address is already there. */
  addAddress(name: string, cidr: string, netns?: string): Promise<void>;
  deleteAddress(name: string, cidr: string, netns?: string): Promise<void>;
  listRoutes(netns?: string): Promise<RouteInfo[]>;
  /** `ip route replace <dst> dev <dev> scope link`. */
  replaceDeviceRoute(dst: string, dev: string, netns?: string): Promise<void>;
  listNetns(): Promise<string[]>;
  /** Succeeds when the namespace already exists. Gives it its own resolver file (netns-etc.ts). */
  addNetns(name: string): Promise<void>;
  /** The namespace's own resolver file, for a namespace made before berth gave it one. */
  ensureNetnsEtc(name: string): Promise<void>;
  /** Names with an /etc/netns folder, whether or not the namespace still exists. */
  listNetnsEtc(): Promise<string[]>;
  /** Removes a folder left by a namespace deleted behind berth's back. */
  removeNetnsEtc(name: string): Promise<void>;
  /** Succeeds when the namespace is already gone; its /etc/netns folder goes too. */
  deleteNetns(name: string): Promise<void>;
  execInNetns(
    netns: string,
    argv: string[],
    options?: { input?: string; timeoutMs?: number },
  ): Promise<CommandResult>;
  /** Keys in slash form (net/ipv4/conf/all/arp_ignore), so dotted ifnames stay unambiguous. */
  readSysctl(keys: string[], netns?: string): Promise<string[]>;
  writeSysctl(values: Record<string, string>, netns?: string): Promise<void>;
  /** `bridge -j vlan show dev X`; empty when the port has none or filtering is off. */
  listPortVlans(dev: string): Promise<PortVlan[]>;
  bridgeVlanAdd(dev: string, vid: number, flags?: VlanFlags): Promise<void>;
  bridgeVlanDel(dev: string, vid: number, flags?: VlanFlags): Promise<void>;
  createVlanSubinterface(uplink: string, name: string, vid: number): Promise<void>;
  /** `ip -4 -j neigh show` in netns: entries with a MAC in a usable state. */
  listNeighbours(netns: string): Promise<NeighbourInfo[]>;
  /** `ip neigh replace IP lladdr MAC dev DEV nud permanent`. */
  pinNeighbour(ip: string, mac: string, dev: string, netns: string): Promise<void>;
  /** Succeeds when the entry (or its device) is already gone. */
  deleteNeighbour(ip: string, dev: string, netns: string): Promise<void>;
  /** `bridge -j fdb show br BRIDGE`, without the ports' own (permanent) addresses. */
  listFdb(bridge: string): Promise<FdbInfo[]>;
  /**
   * `bridge fdb replace MAC dev PORT master static [sticky] [vlan N]`. Throws
   * BERTH_ERR_KERNEL_FEATURE when the kernel or iproute2 refuses `sticky`.
   */
  pinFdb(mac: string, port: string, opts: { sticky: boolean; vlan?: number }): Promise<void>;
  /** Succeeds when the entry or its port is already gone. */
  deleteFdb(mac: string, port: string, vlan?: number): Promise<void>;
}
