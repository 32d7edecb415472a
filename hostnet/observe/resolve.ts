// The decision at the heart of identity. A caller is instance X only when three
// observations agree: its source IP is the address berth assigned X on this
// network, the endpoint's neighbour entry for that IP is the PERMANENT one berth
// wrote with X's MAC (so the endpoint's replies can only reach X's MAC), and the
// bridge FDB shows X's MAC on X's own port. The port table answers through
// PortDirectory; this file only decides.

/** One guest NIC as berth assigned it. */
export interface PortRecord {
  /** The bridge port (tap or root-side veth). */
  ifname: string;
  mac: string;
  instance: string;
  network: string;
  ip?: string;
}

/** What berth's port table must answer, in O(1), for resolve() to stay O(1). */
export interface PortDirectory {
  portByMac(mac: string): PortRecord | undefined;
  portByIfname(ifname: string): PortRecord | undefined;
  /** Whose assigned address ip is on network. */
  portByIp(network: string, ip: string): PortRecord | undefined;
}

/** What the endpoint's neighbour table holds for one IP. */
export interface NeighbourSeen {
  mac: string;
  /** Written by an administrator (berth), never learned from ARP. */
  permanent: boolean;
}

export type ResolveReason =
  /** The source IP is assigned to no instance on this network. */
  | 'ip-not-assigned'
  /** The endpoint has no usable neighbour entry for the source IP. */
  | 'no-neighbour'
  /** The entry for the IP is learned (not berth's PERMANENT one), or names another MAC. */
  | 'neighbour-not-pinned'
  /** The MAC behind the IP is on no port of the network's bridge. */
  | 'mac-not-on-port'
  /** The MAC sits on a port other than the one assigned to it (or is a stranger on an owned port). */
  | 'mac-wrong-port'
  /** The MAC is nobody's and its port belongs to no instance. */
  | 'port-not-owned';

export const RESOLVE_REASONS: readonly ResolveReason[] = [
  'ip-not-assigned',
  'no-neighbour',
  'neighbour-not-pinned',
  'mac-not-on-port',
  'mac-wrong-port',
  'port-not-owned',
];

export type ResolveResult =
  | { ok: true; mac: string; port: string; instance: string }
  | { ok: false; reason: ResolveReason; mac?: string; port?: string; instance?: string };

/**
 * The reasons a guest that is just arriving can cause; worth a short wait for
 * events. berth writes the neighbour entry before the port exists, so a
 * missing one is a write in flight; a learned one never becomes berth's.
 */
export const TRANSIENT_REASONS: ReadonlySet<ResolveReason> = new Set(['no-neighbour', 'mac-not-on-port']);

/**
 * By source IP (metadata). The IP's owner decides first; the neighbour entry
 * must be berth's PERMANENT one with the owner's MAC; then the FDB must show
 * that MAC on the owner's port. `port` is where the FDB puts the neighbour's MAC.
 */
export function decideIp(
  network: string,
  ip: string,
  neighbour: NeighbourSeen | undefined,
  port: string | undefined,
  directory: PortDirectory,
): ResolveResult {
  const owner = directory.portByIp(network, ip);
  // What was seen, for a refusal's record; built only on the refusal paths.
  const seen = () => ({
    ...(neighbour ? { mac: neighbour.mac } : {}),
    ...(port !== undefined ? { port } : {}),
  });
  if (!owner || owner.network !== network) return { ok: false, reason: 'ip-not-assigned', ...seen() };
  const instance = owner.instance;
  if (!neighbour) return { ok: false, reason: 'no-neighbour', instance };
  if (!neighbour.permanent || neighbour.mac !== owner.mac)
    return { ok: false, reason: 'neighbour-not-pinned', ...seen(), instance };
  if (port === undefined) return { ok: false, reason: 'mac-not-on-port', mac: owner.mac, instance };
  if (port !== owner.ifname) return { ok: false, reason: 'mac-wrong-port', mac: owner.mac, port, instance };
  return { ok: true, mac: owner.mac, port, instance };
}

/**
 * By MAC (DHCP, where the chaddr is the claim). An assigned MAC is either on
 * its own port of this network or on the wrong port, whoever owns that port. An
 * unassigned MAC is refused as `port-not-owned` on a foreign port, and as
 * `mac-wrong-port` on an owned port (that guest is sending a MAC not its own).
 */
export function decideMac(
  network: string,
  mac: string | undefined,
  port: string | undefined,
  directory: PortDirectory,
): ResolveResult {
  if (mac === undefined) return { ok: false, reason: 'no-neighbour' };
  if (port === undefined) return { ok: false, reason: 'mac-not-on-port', mac };
  const owner = directory.portByMac(mac);
  if (owner) {
    if (owner.ifname === port && owner.network === network) {
      return { ok: true, mac, port, instance: owner.instance };
    }
    return { ok: false, reason: 'mac-wrong-port', mac, port };
  }
  const portOwner = directory.portByIfname(port);
  return { ok: false, reason: portOwner ? 'mac-wrong-port' : 'port-not-owned', mac, port };
}

/** An in-memory PortDirectory: for tests, labs and the netns runtime. */
export class MemoryPortDirectory implements PortDirectory {
  private readonly byMac = new Map<string, PortRecord>();
  private readonly byIfname = new Map<string, PortRecord>();
  /** network -> ip -> record: no key string is built per lookup. */
  private readonly byIp = new Map<string, Map<string, PortRecord>>();

  set(record: PortRecord): void {
    this.delete(record.ifname);
    const r = { ...record, mac: record.mac.toLowerCase() };
    const clash = this.byMac.get(r.mac);
    if (clash) this.delete(clash.ifname);
    this.byMac.set(r.mac, r);
    this.byIfname.set(r.ifname, r);
    if (r.ip !== undefined) {
      let ips = this.byIp.get(r.network);
      if (!ips) {
        ips = new Map();
        this.byIp.set(r.network, ips);
      }
      ips.set(r.ip, r);
    }
  }

  delete(ifname: string): void {
    const r = this.byIfname.get(ifname);
    if (!r) return;
    this.byIfname.delete(ifname);
    if (this.byMac.get(r.mac) === r) this.byMac.delete(r.mac);
    const ips = this.byIp.get(r.network);
    if (r.ip !== undefined && ips?.get(r.ip) === r) ips.delete(r.ip);
  }

  portByMac(mac: string): PortRecord | undefined {
    return this.byMac.get(mac);
  }

  portByIfname(ifname: string): PortRecord | undefined {
    return this.byIfname.get(ifname);
  }

  portByIp(network: string, ip: string): PortRecord | undefined {
    return this.byIp.get(network)?.get(ip);
  }
}
