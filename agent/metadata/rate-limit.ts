// A rate limit per caller on the metadata service, as Firecracker's MMDS and
// EC2's IMDS have one: a token bucket per source address. The guard makes the
// source address the port's own, so one bucket is one guest, and a guest that
// floods the service is answered 429 without a lookup in berthd, without
// costing its neighbours their answers. Refusals are audited at most once a
// second per caller, each record carrying how many it stands for.
import { PortRateLimiter } from '../../hostnet/dhcp/server-limits.js';

export interface RateLimitOptions {
  /** Requests a second a caller may keep up. */
  perSecond: number;
  /** Requests a quiet caller may send at once (a cloud-init crawl). */
  burst: number;
  /** What is limited, for the refusal's reason; `metadata` when absent. */
  what?: string;
}

export const DEFAULT_METADATA_RATE: RateLimitOptions = { perSecond: 200, burst: 400 };

/**
 * Identity tokens per guest, on top of the metadata limit. Every other answer
 * comes from the endpoint's cache; a token costs berthd a round trip, a
 * resolve and a signature (about 0.1 ms of its CPU), so a guest minting in a
 * loop must not be able to spend berthd for everyone. A guest needs a token
 * per service it logs in to, and each lasts five minutes: 10 a second, 20 at
 * once, is far above any honest use.
 */
export const IDENTITY_TOKEN_RATE: RateLimitOptions = { perSecond: 10, burst: 20, what: 'identity token' };

/** How often one caller's refusals are written as one audit record. */
const RECORD_EVERY_MS = 1000;

interface Pending {
  count: number;
  recordedAt: number;
}

/** One audit record for `count` refusals of one caller. */
export interface LimitRecord {
  reason: string;
  count: number;
}

export type LimitVerdict =
  | { ok: true }
  /** record: what to write now; undefined when this refusal is only counted. */
  | { ok: false; record: LimitRecord | undefined };

export class CallerRateLimit {
  private readonly buckets: PortRateLimiter;
  private readonly pending = new Map<string, Pending>();

  constructor(
    readonly options: RateLimitOptions = DEFAULT_METADATA_RATE,
    private readonly now: () => number = Date.now,
  ) {
    this.buckets = new PortRateLimiter({ rate: options.perSecond, burst: options.burst });
  }

  check(ip: string): LimitVerdict {
    const now = this.now();
    if (this.buckets.take(ip, now)) return { ok: true };
    let p = this.pending.get(ip);
    if (!p) {
      p = { count: 0, recordedAt: -Infinity };
      this.pending.set(ip, p);
    }
    p.count += 1;
    if (now - p.recordedAt < RECORD_EVERY_MS) return { ok: false, record: undefined };
    return { ok: false, record: this.record(p, now) };
  }

  /** Records for the refusals only counted so far, one per caller, for callers that went quiet. */
  drain(): (LimitRecord & { ip: string })[] {
    const out: (LimitRecord & { ip: string })[] = [];
    const now = this.now();
    for (const [ip, p] of this.pending) {
      if (p.count > 0 && now - p.recordedAt >= RECORD_EVERY_MS) {
        out.push({ ip, ...this.record(p, now) });
      } else if (p.count === 0 && now - p.recordedAt >= 60_000) {
        this.pending.delete(ip);
      }
    }
    return out;
  }

  /** The caller's counted refusals as one record; counting starts again. */
  private record(p: Pending, now: number): LimitRecord {
    const { perSecond, burst } = this.options;
    const record = {
      reason: `over the ${this.options.what ?? 'metadata'} rate limit of ${perSecond} requests/s (burst ${burst})`,
      count: p.count,
    };
    p.count = 0;
    p.recordedAt = now;
    return record;
  }
}
