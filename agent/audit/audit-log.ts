// The audit log: every refusal berth makes (and a few operator events) as an
// append-only sequence in the store. A record and the sequence counter land in
// one batch, so after a crash the log is contiguous up to the counter.
import { EventEmitter } from 'node:events';
import type { Store } from '../../base/store.js';
import type { AuditInput, AuditOutcome, AuditRecord } from './audit-record.js';
import { AuditSpill } from './audit-spill.js';

export type { AuditInput, AuditOutcome, AuditRecord } from './audit-record.js';

export interface AuditQuery {
  /** Only records with seq greater than this. */
  after?: number;
  limit?: number;
  outcome?: AuditOutcome;
  event?: string;
}

const SEQ_KEY = 'meta/audit_seq';
const PREFIX = 'audit/';

export function auditKey(seq: number): string {
  return `${PREFIX}${String(seq).padStart(12, '0')}`;
}

/** How often records waiting in the spill try to move into the store. */
const DRAIN_EVERY_MS = 1000;

type Pending = { input: AuditInput; resolve: (r: AuditRecord) => void; reject: (err: unknown) => void };

/** A store write that failed for want of space (or a failing disk): the spill's case. */
function storeCannotWrite(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'BERTH_ERR_STORE_FULL' || code === 'BERTH_ERR_STORE_IO';
}

export class AuditLog {
  private readonly events = new EventEmitter();
  private readonly queue: Pending[] = [];
  private writing = false;
  private pumping: Promise<void> | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Records neither the store nor the spill could take, by event, until that count is written. */
  private lost: { count: number; events: Record<string, number>; since: string } | undefined;

  private constructor(
    private readonly store: Store,
    private seq: number,
    private readonly retain: number,
    private readonly spill: AuditSpill | undefined,
  ) {}

  /**
   * With a spill (audit-spill.ts), records the store cannot take for want of
   * space go there, and records a spill still holds from before are moved
   * into the store (or stay, while the disk is still full).
   */
  static async open(store: Store, retain = 100_000, spill?: AuditSpill): Promise<AuditLog> {
    const stored = (await store.get<number>(SEQ_KEY)) ?? 0;
    const log = new AuditLog(store, stored, retain, spill);
    const last = spill?.records.at(-1)?.seq;
    if (spill && last !== undefined) {
      // The spill moves into the store in one batch, then is zeroed: a crash in
      // between leaves records the store already has, all of them.
      if (last <= stored) await spill.clear();
      else {
        log.seq = last;
        await log.pump(true);
      }
    }
    return log;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Records waiting in the spill for the store to take writes again. */
  get spilled(): number {
    return this.spill?.records.length ?? 0;
  }

  /**
   * Appends queue up and are written in groups, one batch per group, so a
   * burst costs one store write and the sequence has no holes: a group that
   * fails to land takes none of the numbers it was given, and the next one
   * reuses them. When the store is full the group goes to the spill instead
   * (refusals first), and moves into the store with the next write that lands.
   */
  append(input: AuditInput): Promise<AuditRecord> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      void this.pump();
    });
  }

  private number(inputs: AuditInput[], time: string): AuditRecord[] {
    return inputs.map((input, i) => {
      const { time: at, ...rest } = input;
      return { seq: this.seq + 1 + i, time: at ?? time, ...rest };
    });
  }

  private ops(records: AuditRecord[]): Parameters<Store['batch']>[0] {
    const ops: Parameters<Store['batch']>[0] = records.map((r) => ({
      type: 'put' as const,
      key: auditKey(r.seq),
      value: r,
    }));
    const last = records.at(-1);
    if (last) ops.push({ type: 'put', key: SEQ_KEY, value: last.seq });
    // Oldest records fall off one per append once the log is full.
    for (const r of records)
      if (r.seq > this.retain) ops.push({ type: 'del', key: auditKey(r.seq - this.retain) });
    return ops;
  }

  /** drain: run once even with nothing queued, to move spilled records into the store. */
  private pump(drain = false): Promise<void> {
    if (this.writing) return this.pumping ?? Promise.resolve();
    this.writing = true;
    this.pumping = this.run(drain);
    return this.pumping;
  }

  private async run(drain: boolean): Promise<void> {
    try {
      for (let group = this.queue.splice(0); group.length > 0 || drain; group = this.queue.splice(0)) {
        drain = false;
        const spilled = this.spill?.records ?? [];
        const time = new Date().toISOString();
        const inputs = group.map((g) => g.input);
        if (this.lost) inputs.unshift(this.lostRecord(this.lost));
        const records = this.number(inputs, time);
        if (spilled.length + records.length === 0) continue;
        try {
          // Not fsynced: an audit burst (a DHCP flood) must not queue behind disk
          // flushes. The records are in the kernel when this returns, so kill -9 keeps
          // them. Records moving out of the spill are, since the spill is zeroed next.
          await this.store.batch(this.ops([...spilled, ...records]), { durable: spilled.length > 0 });
        } catch (err) {
          if (this.spill && storeCannotWrite(err)) await this.toSpill(group, time, err);
          else for (const g of group) g.reject(err);
          continue;
        }
        this.seq = records.at(-1)?.seq ?? this.seq;
        this.lost = undefined;
        if (spilled.length > 0) await this.spill?.clear().catch(() => undefined); // moved all the same (see clear)
        const own = records.slice(records.length - group.length);
        if (records.length > group.length) this.events.emit('record', records[0]);
        own.forEach((r, i) => {
          this.events.emit('record', r);
          group[i]?.resolve(r);
        });
      }
    } finally {
      this.writing = false;
      this.armDrain();
    }
  }

  /**
   * The store is full: the group goes to the spill. A refusal may take all of
   * the spill's room, anything else only its first half, so refusals are the
   * last records a full disk stops. What does not fit is refused to its caller
   * as the store refused it, and counted; the count is written with the spill.
   */
  private async toSpill(group: Pending[], time: string, err: unknown): Promise<void> {
    const spill = this.spill as AuditSpill;
    let free = spill.free;
    const kept: { g: Pending; record: AuditRecord }[] = [];
    const refused: Pending[] = [];
    for (const g of group) {
      const [record] = this.number([g.input], time).map((r) => ({ ...r, seq: this.seq + kept.length + 1 }));
      const size = AuditSpill.frameSize(record as AuditRecord);
      const room = g.input.outcome === 'refused' ? free : free - spill.capacity / 2;
      if (size <= room) {
        kept.push({ g, record: record as AuditRecord });
        free -= size;
      } else refused.push(g);
    }
    try {
      if (kept.length > 0 && !(await spill.append(kept.map((k) => k.record))))
        throw new Error('the audit spill is full');
    } catch {
      // The spill's own disk failed as well: as without one, the callers see the store's error.
      for (const g of group) g.reject(err);
      this.count(group, time);
      return;
    }
    this.seq += kept.length;
    for (const { g, record } of kept) {
      this.events.emit('record', record);
      g.resolve(record);
    }
    for (const g of refused) g.reject(err);
    this.count(refused, time);
  }

  private count(group: Pending[], time: string): void {
    if (group.length === 0) return;
    this.lost ??= { count: 0, events: {}, since: time };
    for (const g of group) {
      this.lost.count += 1;
      this.lost.events[g.input.event] = (this.lost.events[g.input.event] ?? 0) + 1;
    }
  }

  private lostRecord(lost: NonNullable<AuditLog['lost']>): AuditInput {
    return {
      event: 'audit.lost',
      outcome: 'info',
      reason: `${lost.count} audit records were not kept while the state disk was full (the ${this.spill?.capacity} byte audit reserve had no room for them)`,
      detail: { count: lost.count, events: lost.events, since: lost.since },
    };
  }

  /** While the spill holds records, try to move them into the store every second. */
  private armDrain(): void {
    if (this.closed || this.drainTimer || (this.spilled === 0 && !this.lost)) return;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      void this.pump(true);
    }, DRAIN_EVERY_MS);
    this.drainTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    await this.pumping;
    await this.spill?.close();
  }

  async query(query: AuditQuery = {}): Promise<AuditRecord[]> {
    const limit = Math.min(query.limit ?? 100, 10_000);
    const wanted = (r: AuditRecord) =>
      (query.outcome === undefined || r.outcome === query.outcome) &&
      (query.event === undefined || r.event === query.event);
    // Records in the spill come after every record in the store.
    const spilled = [...(this.spill?.records ?? [])];
    if (query.after !== undefined) {
      const rows = await this.store.list<AuditRecord>(PREFIX, { after: auditKey(query.after) });
      return [...rows.map((r) => r.value), ...spilled.filter((r) => r.seq > (query.after as number))]
        .filter(wanted)
        .slice(0, limit);
    }
    // Without a cursor, the newest `limit` matching records, oldest first.
    const rows = await this.store.list<AuditRecord>(PREFIX, { reverse: true });
    return [...spilled.reverse(), ...rows.map((r) => r.value)].filter(wanted).slice(0, limit).reverse();
  }

  /** Calls fn for each record appended from now on; returns the unsubscribe. */
  follow(fn: (record: AuditRecord) => void): () => void {
    this.events.on('record', fn);
    return () => this.events.off('record', fn);
  }
}
