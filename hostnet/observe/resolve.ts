// The decision at the heart of identity: given the MAC an endpoint saw behind a
// source IP and the bridge port that MAC sits on, who is calling? The port table
// answers through PortDirectory; this file only decides.

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
}

export type ResolveReason =
  /** The endpoint has no usable neighbour entry for the source IP. */
  | 'no-neighbour'
  /** The MAC behind the IP is on no port of the network's bridge. */
  | 'mac-not-on-port'
  /** The MAC sits on a port other than the one assigned to it (or is a stranger on an owned port). */
  | 'mac-wrong-port'
  /** The MAC is nobody's and its port belongs to no instance. */
  | 'port-not-owned';

export type ResolveResult =
  | { ok: true; mac: string; port: string; instance: string }
  | { ok: false; reason: ResolveReason; mac?: string; port?: string };

/** The reasons a guest that is just arriving can cause; worth a short wait for events. */
export const TRANSIENT_REASONS: ReadonlySet<ResolveReason> = new Set(['no-neighbour', 'mac-not-on-port']);

/**
 * The decision table. The MAC's owner decides first: an assigned MAC is either on
 * its own port of this network or on the wrong port, whoever owns that port. An
 * unassigned MAC is refused as `port-not-owned` on a foreign port, and as
 * `mac-wrong-port` on an owned port (that guest is sending a MAC not its own).
 */
export function decide(
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

  set(record: PortRecord): void {
    this.delete(record.ifname);
    const r = { ...record, mac: record.mac.toLowerCase() };
    const clash = this.byMac.get(r.mac);
    if (clash) this.byIfname.delete(clash.ifname);
    this.byMac.set(r.mac, r);
    this.byIfname.set(r.ifname, r);
  }

  delete(ifname: string): void {
    const r = this.byIfname.get(ifname);
    if (!r) return;
    this.byIfname.delete(ifname);
    if (this.byMac.get(r.mac) === r) this.byMac.delete(r.mac);
  }

  portByMac(mac: string): PortRecord | undefined {
    return this.byMac.get(mac);
  }

  portByIfname(ifname: string): PortRecord | undefined {
    return this.byIfname.get(ifname);
  }
}
