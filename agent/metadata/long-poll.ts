// Long-poll for changes, as GCE's metadata server offers it:
// `?wait_for_change=true&last_etag=E&timeout_sec=N` answers when the served
// value's ETag differs from E (at once if it already does), or when N seconds
// have passed, with the value as it is then (200 either way, as GCE does).
// Without last_etag the request waits for the next change of what it names.
//
// The waiters live in the endpoint process, not in berthd: they outlast a
// berthd restart the way the endpoint's cache does, and a wake costs no
// round trip unless the guest's own view was dropped. A waiter re-checks only
// when berthd's `invalidate` notice names its guest (by IP or MAC), so an
// `instance update` wakes that instance's waiters and costs no other guest a
// lookup; an `invalidate all` (policy change, a berthd adopting the
// endpoint) re-checks every waiter once. Waiters are bounded per guest and in
// total; the excess gets 429, audited one record a second per guest.
import type { Item } from './tree.js';

/** GCE documents no default; its guest agent asks for 60 s. An hour bounds a socket held. */
export const DEFAULT_TIMEOUT_SEC = 60;
export const MAX_TIMEOUT_SEC = 3600;

export interface WaitBounds {
  /** Waiting requests one guest (source address) may hold open. */
  perGuest: number;
  /** Waiting requests the endpoint holds in all. */
  total: number;
}

export const DEFAULT_WAIT_BOUNDS: WaitBounds = { perGuest: 16, total: 1024 };

export interface MetadataQuery {
  wait: boolean;
  recursive: boolean;
  /** The tag as it appears between the quotes (quotes and W/ dropped); undefined: the current one. */
  lastEtag?: string;
  timeoutSec: number;
}

const ETAG_RE = /^[A-Za-z0-9_-]{1,64}$/;

function flag(name: string, v: string | null): boolean | string {
  if (v === null || v === 'false') return false;
  if (v === 'true') return true;
  return `${name} must be true or false, not "${v.slice(0, 32)}"`;
}

/**
 * The long-poll and recursive parameters of a query string; other
 * parameters (an identity token's audience) are left to their own readers.
 * A bad value is a string naming the parameter, for a 400.
 */
export function parseMetadataQuery(query: string): MetadataQuery | string {
  const q = new URLSearchParams(query);
  const wait = flag('wait_for_change', q.get('wait_for_change'));
  if (typeof wait === 'string') return wait;
  const recursive = flag('recursive', q.get('recursive'));
  if (typeof recursive === 'string') return recursive;
  const out: MetadataQuery = { wait, recursive, timeoutSec: DEFAULT_TIMEOUT_SEC };
  const t = q.get('timeout_sec');
  if (t !== null) {
    if (!/^\d{1,7}$/.test(t) || Number(t) < 1 || Number(t) > MAX_TIMEOUT_SEC)
      return `timeout_sec must be a whole number of seconds from 1 to ${MAX_TIMEOUT_SEC}, not "${t.slice(0, 32)}"`;
    out.timeoutSec = Number(t);
  }
  const e = q.get('last_etag');
  if (e !== null) {
    const bare = e.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
    if (!ETAG_RE.test(bare)) return `last_etag must be an ETag this service gave, not "${e.slice(0, 32)}"`;
    out.lastEtag = bare;
  }
  if (!wait && (t !== null || e !== null)) return 'timeout_sec and last_etag need wait_for_change=true';
  return out;
}

/** An ETag header value without its quotes, to compare with last_etag. */
export const bareTag = (etag: string) => etag.replace(/^"(.*)"$/, '$1');

/** What a path answers for a caller now. */
export type Answer = { ok: true; item: Item; etag: string } | { ok: false; status: number; reason: string };

export interface Waiter {
  ip: string;
  mac: string;
  /** Looks again (a lookup, possibly a berthd round trip) and answers when the value moved. */
  recheck(): void;
}

/** Refusals over a bound, one audit record a second per guest with their count (as the rate limit does). */
interface Fold {
  count: number;
  recordedAt: number;
}

export class Waiters {
  /** Moves on every wake: a request whose lookup began before a wake re-checks once registered. */
  seq = 0;
  private readonly byIp = new Map<string, Set<Waiter>>();
  private readonly byMac = new Map<string, Set<Waiter>>();
  private count = 0;
  private readonly folds = new Map<string, Fold>();

  constructor(
    readonly bounds: WaitBounds = DEFAULT_WAIT_BOUNDS,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.count;
  }

  /** Registers w, or says which bound it is over. */
  add(w: Waiter): 'guest' | 'total' | undefined {
    const mine = this.byIp.get(w.ip);
    if ((mine?.size ?? 0) >= this.bounds.perGuest) return 'guest';
    if (this.count >= this.bounds.total) return 'total';
    this.index(this.byIp, w.ip, w);
    this.index(this.byMac, w.mac.toLowerCase(), w);
    this.count += 1;
    return undefined;
  }

  remove(w: Waiter): void {
    const set = this.byIp.get(w.ip);
    if (!set?.delete(w)) return;
    if (set.size === 0) this.byIp.delete(w.ip);
    const mac = w.mac.toLowerCase();
    const m = this.byMac.get(mac);
    m?.delete(w);
    if (m?.size === 0) this.byMac.delete(mac);
    this.count -= 1;
  }

  /**
   * Re-checks the waiters of the guests at ips or with macs; with neither,
   * every waiter. Returns how many were asked to re-check.
   */
  wake(ips?: readonly string[], macs?: readonly string[]): number {
    this.seq += 1;
    const hit = new Set<Waiter>();
    if (!ips && !macs) for (const set of this.byIp.values()) for (const w of set) hit.add(w);
    for (const ip of ips ?? []) for (const w of this.byIp.get(ip.replace(/^::ffff:/, '')) ?? []) hit.add(w);
    for (const mac of macs ?? []) for (const w of this.byMac.get(mac.toLowerCase()) ?? []) hit.add(w);
    for (const w of hit) w.recheck();
    return hit.size;
  }

  /** The reason for a 429, and whether to write its audit record now (with the count it stands for). */
  refused(ip: string, over: 'guest' | 'total'): { reason: string; record: number | undefined } {
    const reason =
      over === 'guest'
        ? `over the limit of ${this.bounds.perGuest} waiting requests (wait_for_change) per guest`
        : `over the limit of ${this.bounds.total} waiting requests (wait_for_change) on this network`;
    const now = this.now();
    let f = this.folds.get(ip);
    if (!f) {
      f = { count: 0, recordedAt: -Infinity };
      this.folds.set(ip, f);
    }
    f.count += 1;
    if (now - f.recordedAt < 1000) return { reason, record: undefined };
    const record = f.count;
    f.count = 0;
    f.recordedAt = now;
    return { reason, record };
  }

  /** Records for refusals only counted so far, for guests that went quiet. */
  drain(): { ip: string; reason: string; count: number }[] {
    const out: { ip: string; reason: string; count: number }[] = [];
    const now = this.now();
    for (const [ip, f] of this.folds) {
      if (f.count > 0 && now - f.recordedAt >= 1000) {
        out.push({ ip, reason: 'over the limit of waiting requests (wait_for_change)', count: f.count });
        f.count = 0;
        f.recordedAt = now;
      } else if (f.count === 0 && now - f.recordedAt >= 60_000) this.folds.delete(ip);
    }
    return out;
  }

  private index(map: Map<string, Set<Waiter>>, key: string, w: Waiter): void {
    let set = map.get(key);
    if (!set) {
      set = new Set();
      map.set(key, set);
    }
    set.add(w);
  }
}
