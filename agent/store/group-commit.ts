// Group commit for the LevelDB store. A synced write costs one fsync (about
// 0.2 ms here), and an async read one trip through libuv's thread pool (about
// 25 µs), so a batch that checked its guards with reads and then wrote alone
// managed some 3k durable reservations per second. Here batches that arrive
// while a write is on disk wait, and then land together in one write: one
// fsync for the whole group. Guards are checked synchronously, in arrival
// order, against the store plus the batches accepted before them in the same
// group, so a guard that passed still holds when its batch lands, and a
// batch refused by a guard writes nothing, exactly as one batch at a time.
import { BerthError } from '../../base/errors.js';
import { type BatchOp, type BatchOptions, type Guard, guardFailure } from '../../base/store.js';

export interface GroupWriter {
  /** The committed value of key, synchronously; undefined when absent. */
  read(key: string): unknown;
  /** Writes every op atomically; fsyncs first when sync. */
  write(ops: BatchOp[], sync: boolean): Promise<void>;
  /** The error a batch sees when the group's write failed. */
  writeError(ops: BatchOp[], err: unknown): Error;
}

interface Pending {
  ops: BatchOp[];
  options: BatchOptions;
  resolve(): void;
  reject(err: unknown): void;
}

/** What a key holds once the group's earlier batches land: a value, or deleted (null). */
type Overlay = Map<string, { value: unknown } | null>;

export class GroupCommit {
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;

  constructor(private readonly writer: GroupWriter) {}

  submit(ops: BatchOp[], options: BatchOptions = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, options, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves once every batch submitted so far has landed or failed. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    try {
      // Let batches submitted in the same tick join the first group.
      await Promise.resolve();
      while (this.queue.length > 0) {
        const group = this.queue;
        this.queue = [];
        const accepted = this.admit(group);
        if (accepted.length === 0) continue;
        if (await this.write(accepted, accepted.length === 1)) continue;
        // One bad batch (a value LevelDB refuses) must not fail the others: redo
        // the group one batch at a time, each checked against what has landed.
        for (const p of accepted) await this.write(this.admit([p]), true);
      }
    } finally {
      // Cleared in the same step as the last look at the queue: a batch
      // submitted after it starts a new drain instead of waiting for none.
      this.running = undefined;
    }
  }

  /** Writes the batches as one; false when it failed and the caller wants to retry them alone. */
  private async write(batches: Pending[], final: boolean): Promise<boolean> {
    if (batches.length === 0) return true;
    // One durable batch makes the whole write durable; the others only gain.
    const sync = batches.some((p) => p.options.durable ?? true);
    try {
      await this.writer.write(
        batches.flatMap((p) => p.ops),
        sync,
      );
    } catch (err) {
      if (!final) return false;
      for (const p of batches) p.reject(this.writer.writeError(p.ops, err));
      return true;
    }
    for (const p of batches) p.resolve();
    return true;
  }

  /** Checks each batch's guards in order; refused batches are rejected and left out. */
  private admit(group: Pending[]): Pending[] {
    const overlay: Overlay = new Map();
    const accepted: Pending[] = [];
    for (const p of group) {
      let failed: Guard | undefined;
      try {
        failed = (p.options.guards ?? []).find((g) => !this.holds(g, overlay));
      } catch (err) {
        p.reject(err);
        continue;
      }
      if (failed) {
        p.reject(new BerthError('BERTH_ERR_CONFLICT', `could not write batch: ${guardFailure(failed)}`));
        continue;
      }
      for (const op of p.ops) overlay.set(op.key, op.type === 'put' ? { value: op.value } : null);
      accepted.push(p);
    }
    return accepted;
  }

  private holds(guard: Guard, overlay: Overlay): boolean {
    const pending = overlay.get(guard.key);
    const current = pending === undefined ? this.writer.read(guard.key) : pending?.value;
    return 'absent' in guard
      ? current === undefined
      : JSON.stringify(current) === JSON.stringify(guard.equals);
  }
}
