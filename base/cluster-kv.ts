// The cluster's shared key space, as berth needs it: the Store contract
// (sorted JSON values, guarded atomic batches) plus what a fleet adds — a
// snapshot with the revision it was read at, a watch that resumes from a
// revision, liveness leases and the engine's own status. etcd is behind it
// today (agent/store/etcd-kv.ts); nothing above this interface names etcd.
import type { BatchOp, BatchOptions, Entry, Store } from './store.js';

export interface KvEvent {
  type: 'put' | 'del';
  /** Relative to the cluster prefix, like every key berth sees. */
  key: string;
  /** The new value for a put. */
  value?: unknown;
  revision: number;
}

export interface KvSnapshot<T> {
  entries: Entry<T>[];
  /** The cluster revision the entries were read at; watch from revision + 1. */
  revision: number;
}

export interface KvWatchHandlers {
  /** Events in revision order; one call per batch the engine delivered. */
  onEvents(events: KvEvent[]): void;
  /** The stream fell behind a compaction: reload with snapshot() and watch again. */
  onReset?(reason: string): void;
  onState?(state: 'connected' | 'disconnected', cause?: string): void;
}

export interface KvWatch {
  close(): Promise<void>;
}

export interface LivenessLease {
  readonly id: string;
  /** Writes key bound to the lease: it vanishes when the lease expires or is revoked. */
  put(key: string, value: unknown): Promise<void>;
  /** Told once when keep-alives stopped reaching the cluster and the lease may be gone. */
  onLost(fn: (cause: string) => void): void;
  revoke(): Promise<void>;
}

export interface ClusterMember {
  id: string;
  name: string;
  clientUrls: string[];
  isLeader: boolean;
}

export interface ClusterStatus {
  endpoints: string[];
  members: ClusterMember[];
  leader: string | undefined;
  revision: number;
  version: string;
  dbSizeBytes: number;
}

export interface ClusterKV extends Store {
  /** The endpoints this client tries, for errors and status. */
  readonly endpoints: readonly string[];
  /** batch(), returning the revision the change landed at (for read-your-writes). */
  batchAt(ops: BatchOp[], options?: BatchOptions): Promise<number>;
  snapshot<T>(prefix: string): Promise<KvSnapshot<T>>;
  watch(prefix: string, fromRevision: number, handlers: KvWatchHandlers): Promise<KvWatch>;
  lease(ttlSeconds: number): Promise<LivenessLease>;
  status(): Promise<ClusterStatus>;
}
