// The audit log: every refusal berth makes (and a few operator events) as an
// append-only sequence in the store. A record and the sequence counter land in
// one batch, so after a crash the log is contiguous up to the counter.
import { EventEmitter } from 'node:events';
import type { Store } from '../store/store.js';

export type AuditOutcome = 'refused' | 'allowed' | 'info';

export interface AuditInput {
  /** What happened, dotted: "admin.request", "dhcp.discover", "metadata.get". */
  event: string;
  outcome: AuditOutcome;
  reason: string;
  /** Who and where, as far as the host observed it. */
  mac?: string;
  port?: string;
  ip?: string;
  network?: string;
  instance?: string;
  identity?: string;
  path?: string;
  detail?: Record<string, unknown>;
}

export interface AuditRecord extends AuditInput {
  seq: number;
  time: string;
}

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

export class AuditLog {
  private readonly events = new EventEmitter();

  private constructor(
    private readonly store: Store,
    private seq: number,
    private readonly retain: number,
  ) {}

  static async open(store: Store, retain = 100_000): Promise<AuditLog> {
    return new AuditLog(store, (await store.get<number>(SEQ_KEY)) ?? 0, retain);
  }

  get lastSeq(): number {
    return this.seq;
  }

  async append(input: AuditInput): Promise<AuditRecord> {
    this.seq += 1;
    const record: AuditRecord = { seq: this.seq, time: new Date().toISOString(), ...input };
    const ops: Parameters<Store['batch']>[0] = [
      { type: 'put', key: auditKey(record.seq), value: record },
      { type: 'put', key: SEQ_KEY, value: record.seq },
    ];
    // Oldest records fall off one per append once the log is full.
    if (record.seq > this.retain) ops.push({ type: 'del', key: auditKey(record.seq - this.retain) });
    // Not fsynced: an audit burst (a DHCP flood) must not queue behind disk
    // flushes. The record is in the kernel when this returns, so kill -9 keeps it.
    await this.store.batch(ops, { durable: false });
    this.events.emit('record', record);
    return record;
  }

  async query(query: AuditQuery = {}): Promise<AuditRecord[]> {
    const limit = Math.min(query.limit ?? 100, 10_000);
    const wanted = (r: AuditRecord) =>
      (query.outcome === undefined || r.outcome === query.outcome) &&
      (query.event === undefined || r.event === query.event);
    if (query.after !== undefined) {
      const rows = await this.store.list<AuditRecord>(PREFIX, { after: auditKey(query.after) });
      return rows
        .map((r) => r.value)
        .filter(wanted)
        .slice(0, limit);
    }
    // Without a cursor, the newest `limit` matching records, oldest first.
    const rows = await this.store.list<AuditRecord>(PREFIX, { reverse: true });
    return rows
      .map((r) => r.value)
      .filter(wanted)
      .slice(0, limit)
      .reverse();
  }

  /** Calls fn for each record appended from now on; returns the unsubscribe. */
  follow(fn: (record: AuditRecord) => void): () => void {
    this.events.on('record', fn);
    return () => this.events.off('record', fn);
  }
}
