// The state store seen by the rest of berth: a sorted key space of JSON
// values with atomic multi-key batches. A LevelDB implementation serves one
// host; the interface leaves room for a cluster backend (etcd transactions
// map onto batch + guards one to one).

export type BatchOp = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

/**
 * A condition the batch depends on; if any guard fails, nothing is written.
 * `absent` makes a put a reservation: two writers can never both win a key.
 */
export type Guard = { key: string; absent: true } | { key: string; equals: unknown };

export interface ListOptions {
  /** Only keys strictly greater than this (for paging). */
  after?: string;
  limit?: number;
  reverse?: boolean;
}

export interface Entry<T> {
  key: string;
  value: T;
}

export interface BatchOptions {
  guards?: Guard[];
  /**
   * fsync before returning. Defaults to true: a batch that returned has
   * survived a power cut. Bulk, re-creatable data may pass false.
   */
  durable?: boolean;
}

export interface Store {
  get<T>(key: string): Promise<T | undefined>;
  list<T>(prefix: string, options?: ListOptions): Promise<Entry<T>[]>;
  /** All ops land, or none does. Throws BERTH_ERR_CONFLICT naming the first failed guard. */
  batch(ops: BatchOp[], options?: BatchOptions): Promise<void>;
  close(): Promise<void>;
}

export const SCHEMA_VERSION = 1;

export const META_KEYS = {
  schema: 'meta/schema',
  createdAt: 'meta/created_at',
  hostId: 'meta/host_id',
} as const;

/** Upper bound for a prefix scan: every key that starts with prefix sorts below it. */
export function prefixEnd(prefix: string): string {
  return `${prefix}\uffff`;
}

export function guardFailure(guard: Guard): string {
  return 'absent' in guard ? `key "${guard.key}" already exists` : `key "${guard.key}" changed`;
}
