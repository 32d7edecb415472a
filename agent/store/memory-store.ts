// An in-memory Store for unit tests of logic that sits on top of the store.
import { BerthError } from '../../base/errors.js';
import {
  type BatchOp,
  type BatchOptions,
  type Entry,
  guardFailure,
  type ListOptions,
  prefixEnd,
  type Store,
} from '../../base/store.js';

export class MemoryStore implements Store {
  private readonly data = new Map<string, string>();
  private closed = false;

  async get<T>(key: string): Promise<T | undefined> {
    this.checkOpen();
    const raw = this.data.get(key);
    return raw === undefined ? undefined : (JSON.parse(raw) as T);
  }

  async list<T>(prefix: string, options: ListOptions = {}): Promise<Entry<T>[]> {
    this.checkOpen();
    const end = prefixEnd(prefix);
    let keys = [...this.data.keys()]
      .filter((k) => k >= prefix && k < end && (options.after === undefined || k > options.after))
      .sort();
    if (options.reverse) keys.reverse();
    if (options.limit !== undefined) keys = keys.slice(0, options.limit);
    return keys.map((key) => ({ key, value: JSON.parse(this.data.get(key) as string) as T }));
  }

  async batch(ops: BatchOp[], options: BatchOptions = {}): Promise<void> {
    this.checkOpen();
    for (const guard of options.guards ?? []) {
      const current = this.data.get(guard.key);
      const ok = 'absent' in guard ? current === undefined : current === JSON.stringify(guard.equals);
      if (!ok) throw new BerthError('BERTH_ERR_CONFLICT', `could not write batch: ${guardFailure(guard)}`);
    }
    for (const op of ops) {
      if (op.type === 'put') this.data.set(op.key, JSON.stringify(op.value));
      else this.data.delete(op.key);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private checkOpen(): void {
    if (this.closed) throw new BerthError('BERTH_ERR_STORE_IO', 'could not use store "memory": it is closed');
  }
}
