// The two in-memory tables resolve() reads: where each MAC sits on the owned
// bridges (root namespace), and which MAC each IP has in one endpoint namespace.
// Both report real changes only, so caches above them can be invalidated.
import type { FdbEvent, FdbRecord, NeighEvent, NeighRecord } from './parse.js';

export interface FdbChange {
  kind: 'fdb';
  bridge: string;
  vlan?: number;
  mac: string;
  /** Undefined when the MAC left the bridge (aged out, port removed). */
  port: string | undefined;
  previousPort: string | undefined;
}

export interface NeighChange {
  kind: 'neigh';
  netns: string;
  ip: string;
  mac: string | undefined;
  previousMac: string | undefined;
}

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
      if (old?.port !== r.port) this.changed(r, r.port, old?.port);
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
    for (const [key, r] of next)
      if (old.get(key)?.port !== r.port) this.changed(r, r.port, old.get(key)?.port);
    for (const [key, r] of old) if (!next.has(key)) this.changed(r, undefined, r.port);
  }

  private changed(r: FdbRecord, port: string | undefined, previousPort: string | undefined): void {
    const change: FdbChange = { kind: 'fdb', bridge: r.bridge, mac: r.mac, port, previousPort };
    if (r.vlan !== undefined) change.vlan = r.vlan;
    this.emit(change);
  }
}

export class NeighView {
  private readonly macs = new Map<string, string>();

  constructor(
    readonly netns: string,
    private readonly emit: (change: NeighChange) => void,
  ) {}

  get size(): number {
    return this.macs.size;
  }

  lookup(ip: string): string | undefined {
    return this.macs.get(ip);
  }

  apply(event: NeighEvent): void {
    if (event.kind === 'add') this.set(event.record.ip, event.record.mac);
    else this.set(event.ip, undefined);
  }

  replace(records: NeighRecord[]): void {
    const next = new Map(records.map((r) => [r.ip, r.mac] as const));
    for (const ip of [...this.macs.keys()]) if (!next.has(ip)) this.set(ip, undefined);
    for (const [ip, mac] of next) this.set(ip, mac);
  }

  private set(ip: string, mac: string | undefined): void {
    const previousMac = this.macs.get(ip);
    if (previousMac === mac) return;
    if (mac === undefined) this.macs.delete(ip);
    else this.macs.set(ip, mac);
    this.emit({ kind: 'neigh', netns: this.netns, ip, mac, previousMac });
  }
}
