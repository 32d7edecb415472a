// This host's copy of the cluster's key space: one snapshot, then one watch
// from the snapshot's revision, applied in order. Every read berth makes of
// cluster state comes from here, so DHCP and metadata never wait on etcd; a
// write goes to etcd and returns once the watch has brought it back, so the
// writer reads its own write. The data-path prefixes (networks, policies) are
// also kept in the local store, so a berthd restarted while etcd is away
// still serves its guests.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { ClusterKV, KvEvent, KvWatch } from '../../base/cluster-kv.js';
import { clusterUnavailable } from '../../base/errors.js';
import type { BatchOp, BatchOptions, Entry, ListOptions, Store } from '../../base/store.js';

/** Where the local copy of the data-path prefixes lives in the host's own store. */
export const CACHE_PREFIX = 'cluster-cache/';

export interface MirrorOptions {
  kv: ClusterKV;
  local: Store;
  /** Prefixes copied to the local store as well (the data path's). */
  persist: string[];
  log: Logger;
  /** How long a writer waits for its own write to come back through the watch. */
  echoTimeoutMs?: number;
}

export type MirrorState = 'connected' | 'disconnected' | 'cached';

export class ClusterMirror extends EventEmitter {
  private readonly data = new Map<string, unknown>();
  private sorted: string[] | undefined;
  private revision = 0;
  private watch: KvWatch | undefined;
  private waiters: { revision: number; resolve: () => void }[] = [];
  state: MirrorState = 'disconnected';
  /** When the watch last went away; a short gap (a leader election) does not refuse changes. */
  private disconnectedAt = 0;
  lastEventAt = 0;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: MirrorOptions) {
    super();
    this.setMaxListeners(0);
  }

  get appliedRevision(): number {
    return this.revision;
  }

  /**
   * Loads the snapshot and starts the watch. With etcd away it loads the local
   * copy instead, says so, and keeps trying in the background.
   */
  async start(): Promise<void> {
    try {
      await this.connect();
    } catch (err) {
      const cached = await this.o.local.list<unknown>(CACHE_PREFIX);
      for (const { key, value } of cached) this.data.set(key.slice(CACHE_PREFIX.length), value);
      this.sorted = undefined;
      this.state = 'cached';
      this.o.log.error(
        { err: (err as Error).message, cached: cached.length },
        'cluster store unreachable at start: serving from the local copy; changes are refused until it answers',
      );
      this.scheduleReconnect();
    }
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect().catch(() => this.scheduleReconnect());
    }, 2000);
    this.retry.unref();
  }

  private async connect(): Promise<void> {
    const snap = await this.o.kv.snapshot<unknown>('');
    const before = new Map(this.data);
    this.data.clear();
    for (const { key, value } of snap.entries) this.data.set(key, value);
    this.sorted = undefined;
    this.revision = snap.revision;
    await this.watch?.close().catch(() => undefined);
    this.watch = await this.o.kv.watch('', snap.revision + 1, {
      onEvents: (events) => this.apply(events),
      onReset: (reason) => {
        this.o.log.warn({ reason }, 'cluster watch was reset; reloading the snapshot');
        this.state = 'disconnected';
        this.connect().catch(() => this.scheduleReconnect());
      },
      onState: (state, cause) => {
        if (state === 'disconnected' && this.state === 'connected') {
          this.disconnectedAt = Date.now();
          this.o.log.warn({ cause }, 'cluster watch disconnected; serving from this host’s copy');
        }
        if (state === 'connected' && this.state !== 'connected') this.o.log.info('cluster watch connected');
        this.state = state;
      },
    });
    this.state = 'connected';
    await this.persistAll();
    // Whatever changed while this host was away reaches the listeners as events.
    const diff: KvEvent[] = [];
    for (const [key, value] of this.data)
      if (!before.has(key) || JSON.stringify(before.get(key)) !== JSON.stringify(value))
        diff.push({ type: 'put', key, value, revision: snap.revision });
    for (const key of before.keys())
      if (!this.data.has(key)) diff.push({ type: 'del', key, revision: snap.revision });
    if (before.size > 0 && diff.length > 0) this.emit('events', diff);
    this.releaseWaiters();
    this.emit('connected');
  }

  private persisted(key: string): boolean {
    return this.o.persist.some((p) => key.startsWith(p));
  }

  private async persistAll(): Promise<void> {
    const ops: BatchOp[] = (await this.o.local.list<unknown>(CACHE_PREFIX)).map((e) => ({
      type: 'del' as const,
      key: e.key,
    }));
    for (const [key, value] of this.data)
      if (this.persisted(key)) ops.push({ type: 'put', key: `${CACHE_PREFIX}${key}`, value });
    if (ops.length > 0) await this.o.local.batch(ops, { durable: false });
  }

  private apply(events: KvEvent[]): void {
    const local: BatchOp[] = [];
    for (const e of events) {
      if (e.type === 'put') this.data.set(e.key, e.value);
      else this.data.delete(e.key);
      if (e.revision > this.revision) this.revision = e.revision;
      if (this.persisted(e.key))
        local.push(
          e.type === 'put'
            ? { type: 'put', key: `${CACHE_PREFIX}${e.key}`, value: e.value }
            : { type: 'del', key: `${CACHE_PREFIX}${e.key}` },
        );
    }
    this.sorted = undefined;
    this.lastEventAt = Date.now();
    if (local.length > 0)
      this.o.local
        .batch(local, { durable: false })
        .catch((err) =>
          this.o.log.warn({ err: (err as Error).message }, 'could not update the local cluster copy'),
        );
    this.emit('events', events);
    this.releaseWaiters();
  }

  private releaseWaiters(): void {
    const still: typeof this.waiters = [];
    for (const w of this.waiters) (w.revision <= this.revision ? w.resolve : () => still.push(w))();
    this.waiters = still;
  }

  /** Resolves once the watch has applied `revision` (or the timeout passed; the caller re-reads). */
  caughtUp(revision: number, timeoutMs = this.o.echoTimeoutMs ?? 3000): Promise<void> {
    if (revision <= this.revision) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref();
      this.waiters.push({
        revision,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** Listens for applied changes under prefix; returns the unsubscribe. */
  onChange(prefix: string, fn: (events: KvEvent[]) => void): () => void {
    const handler = (events: KvEvent[]) => {
      const mine = events.filter((e) => e.key.startsWith(prefix));
      if (mine.length > 0) fn(mine);
    };
    this.on('events', handler);
    return () => this.off('events', handler);
  }

  get<T>(key: string): T | undefined {
    return this.data.get(key) as T | undefined;
  }

  list<T>(prefix: string, options: ListOptions = {}): Entry<T>[] {
    this.sorted ??= [...this.data.keys()].sort();
    let keys = this.sorted.filter(
      (k) => k.startsWith(prefix) && (options.after === undefined || k > options.after),
    );
    if (options.reverse) keys = keys.reverse();
    if (options.limit !== undefined) keys = keys.slice(0, options.limit);
    return keys.map((key) => ({ key, value: this.data.get(key) as T }));
  }

  /**
   * Refuses at once, before a change starts, when the cluster has been away
   * for longer than an election takes. Within that grace the change goes
   * ahead and etcd's own answer decides (its client retries for ~4 s).
   */
  requireConnected(verb: string, object: string, graceMs = 5000): void {
    if (this.state === 'connected') return;
    if (this.state === 'disconnected' && Date.now() - this.disconnectedAt < graceMs) return;
    throw clusterUnavailable(verb, object, this.o.kv.endpoints, `this host's watch is ${this.state}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    await this.watch?.close().catch(() => undefined);
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }
}

/**
 * The cluster as a Store: reads from the mirror, writes to etcd. A write
 * returns after the mirror applied it, so services that update their own
 * maps after a batch see the same state every other host will.
 */
export class MirroredStore implements Store {
  constructor(
    private readonly kv: ClusterKV,
    private readonly mirror: ClusterMirror,
  ) {}

  async get<T>(key: string): Promise<T | undefined> {
    return this.mirror.get<T>(key);
  }

  async list<T>(prefix: string, options?: ListOptions): Promise<Entry<T>[]> {
    return this.mirror.list<T>(prefix, options);
  }

  async batch(ops: BatchOp[], options?: BatchOptions): Promise<void> {
    const revision = await this.kv.batchAt(ops, options);
    await this.mirror.caughtUp(revision);
  }

  async close(): Promise<void> {}
}
