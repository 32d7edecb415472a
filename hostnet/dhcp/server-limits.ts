// What keeps a DHCP flood cheap: a token bucket per observed bridge port, and
// an audit throttle that writes at most a few refusal records per port per
// second and one summary with the count of the rest. Both are keyed by port
// name (bounded by the bridge's ports), never by the MAC a packet claims, so
// random chaddrs cannot grow them. Pure: time comes in as a number.

export interface BucketOptions {
  /** Tokens added per second. */
  rate: number;
  /** Most tokens a bucket holds: the burst a quiet port may send at once. */
  burst: number;
  /** Buckets idle this long are forgotten (they would be full anyway). */
  idleMs?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class PortRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly idleMs: number;
  private lastSweep = 0;

  constructor(private readonly opts: BucketOptions) {
    this.idleMs = opts.idleMs ?? 60_000;
  }

  /** Takes one token for key; false when the port is over its rate. */
  take(key: string, now: number): boolean {
    this.sweep(now);
    const b = this.buckets.get(key);
    if (!b) {
      this.buckets.set(key, { tokens: this.opts.burst - 1, at: now });
      return true;
    }
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.rate);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < this.idleMs) return;
    this.lastSweep = now;
    for (const [k, b] of this.buckets) if (now - b.at > this.idleMs) this.buckets.delete(k);
  }
}

export interface ThrottleOptions {
  /** Records written one by one per key per window. */
  perKey: number;
  /** Records written one by one per window over all keys together. */
  total: number;
  windowMs?: number;
}

export interface Suppressed {
  key: string;
  count: number;
  /** How many of each reason were folded into the count. */
  reasons: Record<string, number>;
  windowStart: number;
}

/**
 * Decides which audit records are written in full. Within each window every
 * key gets `perKey` records and all keys together `total`; the rest are only
 * counted, and flush() hands back one summary per key that had any.
 */
export class AuditThrottle {
  private windowStart = 0;
  private written = 0;
  private readonly perKeyWritten = new Map<string, number>();
  private readonly suppressed = new Map<string, Suppressed>();
  private readonly windowMs: number;

  constructor(private readonly opts: ThrottleOptions) {
    this.windowMs = opts.windowMs ?? 1000;
  }

  /** True: write this record. False: it was counted into the key's summary. */
  admit(key: string, reason: string, now: number): boolean {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.written = 0;
      this.perKeyWritten.clear();
    }
    const n = this.perKeyWritten.get(key) ?? 0;
    if (n < this.opts.perKey && this.written < this.opts.total) {
      this.perKeyWritten.set(key, n + 1);
      this.written += 1;
      return true;
    }
    let s = this.suppressed.get(key);
    if (!s) {
      s = { key, count: 0, reasons: {}, windowStart: now };
      this.suppressed.set(key, s);
    }
    s.count += 1;
    s.reasons[reason] = (s.reasons[reason] ?? 0) + 1;
    return false;
  }

  /** The summaries gathered since the last flush; at most one per key. */
  flush(): Suppressed[] {
    const out = [...this.suppressed.values()];
    this.suppressed.clear();
    return out;
  }

  get pending(): number {
    return this.suppressed.size;
  }
}
