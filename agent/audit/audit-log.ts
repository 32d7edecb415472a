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
  /** The admin socket's peer process (admin.* records), as the kernel reports it. */
  peer?: { pid: number; uid: number; gid: number };
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
  private readonly queue: {
    input: AuditInput;
    resolve: (r: AuditRecord) => void;
    reject: (err: unknown) => void;
  }[] = [];
  private writing = false;

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

  /**
   * Appends queue up and are written in groups, one batch per group, so a
   * burst costs one store write and the sequence has no holes: a group that
   * fails to land takes none of the numbers it was given, and the next one
   * reuses them.
   */
  append(input: AuditInput): Promise<AuditRecord> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      for (let group = this.queue.splice(0); group.length > 0; group = this.queue.splice(0)) {
        const time = new Date().toISOString();
        const records: AuditRecord[] = group.map((g, i) => ({ seq: this.seq + 1 + i, time, ...g.input }));
        const last = this.seq + records.length;
        const ops: Parameters<Store['batch']>[0] = records.map((r) => ({
          type: 'put' as const,
          key: auditKey(r.seq),
          value: r,
        }));
        ops.push({ type: 'put', key: SEQ_KEY, value: last });
        // Oldest records fall off one per append once the log is full.
        for (const r of records)
          if (r.seq > this.retain) ops.push({ type: 'del', key: auditKey(r.seq - this.retain) });
        try {
          // Not fsynced: an audit burst (a DHCP flood) must not queue behind disk
          // flushes. The records are in the kernel when this returns, so kill -9 keeps them.
          await this.store.batch(ops, { durable: false });
        } catch (err) {
          for (const g of group) g.reject(err);
          continue;
        }
        this.seq = last;
        records.forEach((r, i) => {
          this.events.emit('record', r);
          group[i]?.resolve(r);
        });
      }
    } finally {
      this.writing = false;
    }
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
