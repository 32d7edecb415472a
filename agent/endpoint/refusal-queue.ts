// Refusals the endpoint decides alone (the rate limit's 429, and for a cached
// caller a bad Host header, a method, a token or a policy deny) must reach the
// audit log even when berthd is away: restarting, upgrading, or just slow.
// Without this they were an RPC that waited 5 s for the next berthd and was
// then dropped, so a guest probing the metadata service during a restart left
// no trace.
//
// So a refusal that cannot be handed over is kept here, with the time it was
// made, and the whole queue goes to the next berthd that connects, oldest
// first; berthd writes each record with its original time. The queue is
// bounded (memory in a process that serves guests): past `limit` records a
// refusal is only counted, and the count, with the time of the first one
// lost, is delivered with the queue as one record. The queue is memory only:
// if the endpoint itself dies (it exits after 10 minutes without berthd) what
// it held is gone; berthd being away is the case this covers. Delivery is at
// least once: a berthd that dies after writing a batch but before answering
// leaves the batch to be written again by the next one.
/** The default bound: ~300 bytes each, so about 300 kB at most. */
export const REFUSAL_QUEUE_LIMIT = 1000;

/** What metadata.refused takes, plus when the refusal happened. */
export type QueuedRefusal = Record<string, unknown> & { time: string };

/** One delivery: the refusals in order, and how many did not fit. */
export interface RefusalDelivery {
  refusals: QueuedRefusal[];
  dropped?: { count: number; since: string; until: string };
}

export const DELIVER_METHOD = 'metadata.refused-queued';

export interface RefusalQueueOptions {
  /** An RPC to berthd; rejects when berthd does not answer. */
  call(method: string, params: unknown): Promise<unknown>;
  /** Whether a berthd is connected right now. */
  connected(): boolean;
  limit?: number;
  now?: () => Date;
  /** After a failed delivery to a berthd still connected, try again this much later. */
  retryMs?: number;
}

export class RefusalQueue {
  private readonly queue: QueuedRefusal[] = [];
  private dropped: { count: number; since: string; until: string } | undefined;
  private delivering = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly limit: number;
  private readonly now: () => Date;
  private readonly retryMs: number;

  constructor(private readonly o: RefusalQueueOptions) {
    this.limit = o.limit ?? REFUSAL_QUEUE_LIMIT;
    this.now = o.now ?? (() => new Date());
    this.retryMs = o.retryMs ?? 1000;
  }

  get size(): number {
    return this.queue.length;
  }

  get droppedCount(): number {
    return this.dropped?.count ?? 0;
  }

  /**
   * Hands one refusal to berthd, or queues it. Resolves once it is written or
   * queued: a guest is never held up waiting for a berthd that is away.
   */
  async report(params: Record<string, unknown>): Promise<void> {
    const item: QueuedRefusal = { ...params, time: this.now().toISOString() };
    // Behind a queue that is still waiting, a new refusal waits too: order is kept.
    if (!this.o.connected() || this.queue.length > 0 || this.delivering) {
      this.push(item);
      if (this.o.connected()) void this.deliver();
      return;
    }
    try {
      await this.o.call('metadata.refused', item);
    } catch {
      this.push(item);
    }
  }

  /** A berthd connected: everything queued goes to it in one call, oldest first. */
  async deliver(): Promise<void> {
    if (this.delivering || (this.queue.length === 0 && !this.dropped)) return;
    this.delivering = true;
    const batch: RefusalDelivery = { refusals: this.queue.splice(0) };
    if (this.dropped) batch.dropped = this.dropped;
    this.dropped = undefined;
    let delivered = false;
    try {
      await this.o.call(DELIVER_METHOD, batch);
      delivered = true;
    } catch {
      // Not written: back in front of anything queued meanwhile, within the bound.
      const later = this.queue.splice(0);
      this.dropped = merge(batch.dropped, this.dropped);
      for (const r of [...batch.refusals, ...later]) this.push(r);
    } finally {
      this.delivering = false;
    }
    if (!this.o.connected() || (this.queue.length === 0 && !this.dropped)) return;
    // Refusals queued while this delivery was under way go to the same berthd;
    // after a failure (berthd slow, or gone and back) it is tried again shortly.
    if (delivered) await this.deliver();
    else this.retryLater();
  }

  private retryLater(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.deliver();
    }, this.retryMs);
    this.retry.unref();
  }

  private push(item: QueuedRefusal): void {
    if (this.queue.length < this.limit) {
      this.queue.push(item);
      return;
    }
    this.dropped = merge(this.dropped, { count: 1, since: item.time, until: item.time });
  }
}

function merge(
  a: RefusalDelivery['dropped'],
  b: RefusalDelivery['dropped'],
): RefusalDelivery['dropped'] | undefined {
  if (!a) return b;
  if (!b) return a;
  // ISO times in one zone sort as strings.
  const times = [a.since, a.until, b.since, b.until].sort();
  return { count: a.count + b.count, since: times[0] as string, until: times[3] as string };
}
