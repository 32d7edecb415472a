// A collision-free allocator over a range of integers (MACs, IPv4 addresses),
// backed by the store. A reservation is a key written with a guard, so it
// lands in the caller's atomic batch together with the instance record; the
// in-memory index makes picking the next free value O(1) amortised.
import { BerthError } from '../../base/errors.js';
import type { BatchOp, Guard, Store } from '../../base/store.js';

export interface Owner {
  instance: string;
  nic: number;
}

export interface AllocRecord {
  state: 'assigned' | 'quarantined';
  instance: string;
  nic: number;
  /** Epoch ms until which a quarantined value is held back. */
  until?: number;
}

export interface Reservation {
  value: number;
  op: BatchOp;
  guard: Guard;
  /** Call after the batch landed, or abort() after it failed. */
  commit(): void;
  abort(): void;
}

export interface AllocatorSpec {
  /** What is allocated and where, for messages: "IP address", "in network \"lab\"". */
  what: string;
  where: string;
  keyPrefix: string;
  first: number;
  last: number;
  format(value: number): string;
  parse(text: string): number;
  /** Values never handed out (network, broadcast, gateway, service address). */
  excluded?: ReadonlySet<number>;
  quarantineMs: number;
  /** Values in use outside berth's records (live FDB, libvirt domains). */
  conflicts?: (formatted: string) => boolean;
  now?: () => number;
}

export interface Usage {
  size: number;
  assigned: number;
  quarantined: number;
  free: number;
}

export class Allocator {
  private readonly records = new Map<number, AllocRecord>();
  private readonly pending = new Set<number>();
  private cursor: number;
  private readonly now: () => number;

  private constructor(private readonly spec: AllocatorSpec) {
    this.cursor = spec.first;
    this.now = spec.now ?? Date.now;
  }

  static async load(store: Store, spec: AllocatorSpec): Promise<Allocator> {
    const alloc = new Allocator(spec);
    let highest = spec.first - 1;
    for (const { key, value } of await store.list<AllocRecord>(spec.keyPrefix)) {
      const n = spec.parse(key.slice(spec.keyPrefix.length));
      alloc.records.set(n, value);
      if (n > highest) highest = n;
    }
    // Continue after the newest value: recently released ones are the last reused.
    alloc.cursor = highest >= spec.last ? spec.first : highest + 1;
    return alloc;
  }

  key(value: number): string {
    return `${this.spec.keyPrefix}${this.spec.format(value)}`;
  }

  get(value: number): AllocRecord | undefined {
    return this.records.get(value);
  }

  private available(value: number, now: number): boolean {
    if (this.pending.has(value) || this.spec.excluded?.has(value)) return false;
    const rec = this.records.get(value);
    if (rec && (rec.state === 'assigned' || (rec.until ?? 0) > now)) return false;
    return !this.spec.conflicts?.(this.spec.format(value));
  }

  /** Picks the next free value; the caller writes `op` with `guard` in its batch. */
  reserve(owner: Owner, wanted?: number): Reservation {
    const now = this.now();
    const size = this.spec.last - this.spec.first + 1;
    let value: number | undefined;
    if (wanted !== undefined) {
      if (wanted < this.spec.first || wanted > this.spec.last || !this.available(wanted, now)) {
        throw new BerthError(
          'BERTH_ERR_CONFLICT',
          `could not reserve ${this.spec.what} "${this.spec.format(wanted)}": it is taken, quarantined or reserved ${this.spec.where}`,
        );
      }
      value = wanted;
    } else {
      for (let i = 0; i < size; i++) {
        const candidate = this.cursor;
        this.cursor = this.cursor >= this.spec.last ? this.spec.first : this.cursor + 1;
        if (this.available(candidate, now)) {
          value = candidate;
          break;
        }
      }
    }
    if (value === undefined) {
      const u = this.usage();
      throw new BerthError(
        'BERTH_ERR_EXHAUSTED',
        `could not allocate ${this.spec.what} ${this.spec.where}: all ${u.size} are taken (${u.assigned} assigned, ${u.quarantined} in quarantine)`,
      );
    }
    const chosen = value;
    const previous = this.records.get(chosen);
    const record: AllocRecord = { state: 'assigned', instance: owner.instance, nic: owner.nic };
    this.pending.add(chosen);
    return {
      value: chosen,
      op: { type: 'put', key: this.key(chosen), value: record },
      // An expired quarantine record is replaced only if nobody touched it meanwhile.
      guard: previous ? { key: this.key(chosen), equals: previous } : { key: this.key(chosen), absent: true },
      commit: () => {
        this.pending.delete(chosen);
        this.records.set(chosen, record);
      },
      abort: () => {
        this.pending.delete(chosen);
      },
    };
  }

  /** The batch op that moves value into quarantine; apply with markReleased() after it landed. */
  releaseOp(value: number): { op: BatchOp; record: AllocRecord } | undefined {
    const rec = this.records.get(value);
    if (rec?.state !== 'assigned') return undefined;
    const record: AllocRecord = { ...rec, state: 'quarantined', until: this.now() + this.spec.quarantineMs };
    return { op: { type: 'put', key: this.key(value), value: record }, record };
  }

  markReleased(value: number, record: AllocRecord): void {
    this.records.set(value, record);
  }

  usage(): Usage {
    const now = this.now();
    let assigned = 0;
    let quarantined = 0;
    for (const rec of this.records.values()) {
      if (rec.state === 'assigned') assigned++;
      else if ((rec.until ?? 0) > now) quarantined++;
    }
    const size = this.spec.last - this.spec.first + 1 - (this.spec.excluded?.size ?? 0);
    return { size, assigned, quarantined, free: size - assigned - quarantined };
  }

  /** Quarantine records past their time, as delete ops (housekeeping). */
  expiredOps(): BatchOp[] {
    const now = this.now();
    const ops: BatchOp[] = [];
    for (const [value, rec] of this.records) {
      if (rec.state === 'quarantined' && (rec.until ?? 0) <= now)
        ops.push({ type: 'del', key: this.key(value) });
    }
    return ops;
  }

  /**
   * Another writer's change to one of this allocator's keys (a cluster peer,
   * seen through the watch). Values this process is reserving keep their
   * pending mark: the store's guard decides between the two.
   */
  observe(key: string, record: AllocRecord | undefined): boolean {
    if (!key.startsWith(this.spec.keyPrefix)) return false;
    const value = this.spec.parse(key.slice(this.spec.keyPrefix.length));
    if (record) this.records.set(value, record);
    else this.records.delete(value);
    return true;
  }

  /** Starts picking at this offset into the range: hosts of a cluster start apart, so their creates rarely race. */
  spreadFrom(offset: number): void {
    const size = this.spec.last - this.spec.first + 1;
    this.cursor = this.spec.first + (((offset % size) + size) % size);
  }

  forget(ops: BatchOp[]): void {
    for (const op of ops) this.records.delete(this.spec.parse(op.key.slice(this.spec.keyPrefix.length)));
  }
}
