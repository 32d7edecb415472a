// The two in-memory tables resolve() reads: where each MAC sits on the owned
// bridges (root namespace), and which MAC each IP has in one endpoint namespace.
// Both report real changes only, so caches above them can be invalidated.
import type { FdbEvent, FdbRecord, NeighEvent, NeighRecord } from './parse.js';
import type { NeighbourSeen } from './resolve.js';

export interface FdbChange {
  kind: 'fdb';
  bridge: string;
  vlan?: number;
  mac: string;
  /** Undefined when the MAC left the bridge (aged out, port removed). */
  port: string | undefined;
  previousPort: string | undefined;
  /** A static sticky entry: berth's pin, which no frame can move. */
  pinned: boolean;
}

export interface NeighChange {
  kind: 'neigh';
  netns: string;
  ip: string;
  mac: string | undefined;
  previousMac: string | undefined;
  /** The entry is PERMANENT (berth's), not learned. */
  permanent: boolean;
}

const pinned = (r: FdbRecord | undefined) => r?.static === true && r.sticky;

function fdbKey(bridge: string, mac: string, vlan: number | undefined): string {
  return vlan === undefined ? `${bridge}|${mac}` : `${bridge}|${mac}|${vlan}`;
}

export class FdbView {
  private readonly entries = new Map<string, FdbRecord>();

  constructor(
    /** Only bridges berth owns are kept; others' bridges change without telling us anything. */
    private readonly ownsBridge: (bridge: string) => boolean,
    private readonly emit: (change: FdbChange) => void,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Whether mac is live on any owned bridge; linear, for the rare MAC allocation. */
  hasMac(mac: string): boolean {
    for (const r of this.entries.values()) if (r.mac === mac) return true;
    return false;
  }

  lookup(bridge: string, mac: string, vlan?: number): FdbRecord | undefined {
    return this.entries.get(fdbKey(bridge, mac, vlan));
  }

  apply(event: FdbEvent): void {
    const r = event.record;
    if (!this.ownsBridge(r.bridge)) return;
    const key = fdbKey(r.bridge, r.mac, r.vlan);
    const old = this.entries.get(key);
    if (event.kind === 'add') {
      this.entries.set(key, r);
      if (old?.port !== r.port || pinned(old) !== pinned(r)) this.changed(r, r.port, old?.port);
    } else if (old && old.port === r.port) {
      // A delete for another port is stale news about a MAC that has since moved.
      this.entries.delete(key);
      this.changed(r, undefined, old.port);
    }
  }

  replace(records: FdbRecord[]): void {
    const next = new Map<string, FdbRecord>();
    for (const r of records) if (this.ownsBridge(r.bridge)) next.set(fdbKey(r.bridge, r.mac, r.vlan), r);
    const old = new Map(this.entries);
    this.entries.clear();
    for (const [key, r] of next) this.entries.set(key, r);
    for (const [key, r] of next) {
      const was = old.get(key);
      if (was?.port !== r.port || pinned(was) !== pinned(r)) this.changed(r, r.port, was?.port);
    }
    for (const [key, r] of old) if (!next.has(key)) this.changed(r, undefined, r.port);
  }

  private changed(r: FdbRecord, port: string | undefined, previousPort: string | undefined): void {
    const change: FdbChange = {
      kind: 'fdb',
      bridge: r.bridge,
      mac: r.mac,
      port,
      previousPort,
      pinned: port !== undefined && pinned(r),
    };
    if (r.vlan !== undefined) change.vlan = r.vlan;
    this.emit(change);
  }
}

export class NeighView {
  private readonly entries = new Map<string, NeighbourSeen>();

  constructor(
    readonly netns: string,
    private readonly emit: (change: NeighChange) => void,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  lookup(ip: string): NeighbourSeen | undefined {
    return this.entries.get(ip);
  }

  apply(event: NeighEvent): void {
    if (event.kind === 'add') this.set(event.record.ip, event.record);
    else this.set(event.ip, undefined);
  }

  replace(records: NeighRecord[]): void {
    const next = new Map(records.map((r) => [r.ip, r] as const));
    for (const ip of [...this.entries.keys()]) if (!next.has(ip)) this.set(ip, undefined);
    for (const [ip, r] of next) this.set(ip, r);
  }

  /** A learned entry turning PERMANENT with the same MAC is a change too: it decides identity now. */
  private set(ip: string, seen: NeighbourSeen | undefined): void {
    const previous = this.entries.get(ip);
    if (previous?.mac === seen?.mac && previous?.permanent === seen?.permanent) return;
    if (seen === undefined) this.entries.delete(ip);
    else this.entries.set(ip, { mac: seen.mac, permanent: seen.permanent });
    this.emit({
      kind: 'neigh',
      netns: this.netns,
      ip,
      mac: seen?.mac,
      previousMac: previous?.mac,
      permanent: seen?.permanent ?? false,
    });
  }
}
