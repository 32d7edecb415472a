// The contract between berth's services and the host network: everything
// the network and instance services ask of the kernel goes through here.
// The real implementation composes links, guard and observation; unit tests
// of the services use a fake that records calls.

export interface NetworkSpec {
  name: string;
  subnet: string;
  gateway?: string | undefined;
  vlan?: number | undefined;
  uplink?: string | undefined;
  mtu: number;
  /** The endpoint's in-subnet address (IPAM reserves it). */
  serviceIp: string;
}

export interface NetworkPlacement {
  bridge: string;
  endpointNetns: string;
  endpointVeth: string;
  /**
   * The VLAN the bridge's FDB files this network's entries under: only on a
   * VLAN-filtering trunk bridge. A subinterface-mode bridge carries one VLAN
   * untagged, so its FDB entries have none.
   */
  fdbVlan?: number;
  /**
   * The uplink's port on `bridge` (the uplink itself, or its VLAN
   * subinterface), where other hosts' guests arrive; undefined for a network
   * without an uplink or not yet realised.
   */
  uplinkPort?: string;
}

export interface PortSpec {
  /** Root-side interface name: a tap for libvirt, a veth end for netns guests. */
  ifname: string;
  instance: string;
  network: string;
  mac: string;
  ip: string;
}

export interface NetnsGuestSpec {
  netns: string;
  port: PortSpec;
}

export interface GuardDrop {
  port: string;
  reason: string;
  packets: number;
  bytes: number;
}

export interface KernelFeatures {
  dot1q: boolean;
  vlanFiltering: boolean;
}

export interface DesiredHostState {
  networks: NetworkSpec[];
  ports: PortSpec[];
  netnsGuests: NetnsGuestSpec[];
}

/** pino's logger fits. */
/** What the guard watch restored after someone else changed berth's table (for the audit log). */
export interface GuardRestore {
  /** The table was deleted (a flushed ruleset deletes it too). */
  tableGone: boolean;
  /** Ports whose chain or elements alone were changed and repaired. */
  ports: string[];
  /** The process that made the change, as nft monitor names it. */
  by: { pid?: number; comm?: string };
  /** From the first event seen to the restored table. */
  ms: number;
  events: number;
}

export interface DriverLogger {
  info?(obj: object, msg?: string): void;
  warn?(obj: object, msg?: string): void;
  error?(obj: object, msg?: string): void;
}

export interface NetworkDriver {
  features(): Promise<KernelFeatures>;
  /** Throws BERTH_ERR_KERNEL_FEATURE naming what is missing for this VLAN network. */
  checkVlanSupport(net: Pick<NetworkSpec, 'name'>): Promise<void>;
  /**
   * Refuses an uplink that is one of berth's own interfaces, or that another
   * of `others` needs as a port of a different bridge (two flat networks, or
   * a flat network and a VLAN trunk in filtering mode): BERTH_ERR_CONFLICT
   * naming that network. The uplink's state on the host is checked when the
   * network is realised.
   */
  checkUplink(net: NetworkSpec, others: readonly NetworkSpec[]): Promise<void>;
  placement(net: Pick<NetworkSpec, 'name' | 'vlan' | 'uplink'>): NetworkPlacement;
  /** Bridge, VLAN plumbing and endpoint namespace; safe to call again, never flaps what exists. */
  ensureNetwork(net: NetworkSpec): Promise<NetworkPlacement>;
  removeNetwork(net: NetworkSpec): Promise<void>;
  /**
   * Installs the port's guard and the endpoint's PERMANENT neighbour entry for
   * its IP; the port itself may not exist yet.
   */
  guardPort(port: PortSpec): Promise<void>;
  /** Removes the guard, the neighbour entry and the FDB pin. */
  unguardPort(ifname: string): Promise<void>;
  /** The port now exists: pins its MAC to it in the bridge FDB (static sticky). */
  bindPort(port: PortSpec): Promise<void>;
  ensureNetnsGuest(guest: NetnsGuestSpec, net: NetworkSpec): Promise<void>;
  removeNetnsGuest(guest: NetnsGuestSpec): Promise<void>;
  execInNetns(netns: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  guardDrops(): Promise<GuardDrop[]>;
  /**
   * Restores the guard at once whenever something else changes it (a flushed
   * ruleset, a deleted table or chain); the periodic reconcile stays the net.
   */
  watchGuard(logger: DriverLogger, onRestored?: (restore: GuardRestore) => void): void;
  stopWatching(): void;
  /** Brings the host to the desired state and removes owned orphans; gathers failures. */
  reconcile(desired: DesiredHostState): Promise<void>;
}
