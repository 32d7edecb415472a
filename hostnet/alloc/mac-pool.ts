// Guest MACs from the configured prefixes: unicast, locally administered.

import type { Store } from '../../base/store.js';
import { macToInt } from '../ipv4.js';
import { Allocator, type AllocRecord, type Owner, type Reservation, type Usage } from './allocator.js';

export interface MacPoolOptions {
  prefixes: string[];
  quarantineSeconds: number;
  /** True when a MAC is already live somewhere (the bridge FDB, a libvirt domain). */
  conflicts?: (mac: string) => boolean;
  now?: () => number;
}

export const MAC_KEY_PREFIX = 'mac/';

/** The last three bytes of a MAC ("0c:0f:ff"), from the value below its prefix; on every reserve. */
function suffixOf(n: number): string {
  const hex = (n & 0xffffff).toString(16).padStart(6, '0');
  return `${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4)}`;
}

export class MacPool {
  private constructor(private readonly pools: { prefix: string; alloc: Allocator }[]) {}

  static async load(store: Store, options: MacPoolOptions): Promise<MacPool> {
    const pools = await Promise.all(
      options.prefixes.map(async (prefix) => {
        const base = macToInt(`${prefix}:00:00:00`);
        const alloc = await Allocator.load(store, {
          what: 'MAC address',
          where: `in pool ${prefix}`,
          keyPrefix: `${MAC_KEY_PREFIX}${prefix}:`,
          // :00:00:00 is skipped so no guest MAC looks like a prefix placeholder.
          first: 1,
          last: 0xffffff,
          format: suffixOf,
          parse: (text) => macToInt(`${prefix}:${text}`) - base,
          quarantineMs: options.quarantineSeconds * 1000,
          ...(options.conflicts
            ? { conflicts: (suffix: string) => options.conflicts?.(`${prefix}:${suffix}`) === true }
            : {}),
          ...(options.now ? { now: options.now } : {}),
        });
        return { prefix, alloc };
      }),
    );
    return new MacPool(pools);
  }

  /** Reserves a MAC from the first pool with room; exhaustion of every pool is the error of the last. */
  reserve(owner: Owner): Reservation & { mac: string } {
    let lastError: unknown;
    for (const { prefix, alloc } of this.pools) {
      try {
        const r = alloc.reserve(owner);
        return { ...r, mac: `${prefix}:${suffixOf(r.value)}` };
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  private locate(mac: string): { alloc: Allocator; value: number } | undefined {
    const pool = this.pools.find((p) => mac.startsWith(`${p.prefix}:`));
    return pool
      ? { alloc: pool.alloc, value: macToInt(mac) - macToInt(`${pool.prefix}:00:00:00`) }
      : undefined;
  }

  /** A peer's change to a MAC record (cluster watch); false when the key is not this pool's. */
  observe(key: string, record: AllocRecord | undefined): boolean {
    return this.pools.some((p) => p.alloc.observe(key, record));
  }

  spreadFrom(offset: number): void {
    for (const p of this.pools) p.alloc.spreadFrom(offset);
  }

  releaseOp(mac: string) {
    const at = this.locate(mac);
    const rel = at?.alloc.releaseOp(at.value);
    return rel && { ...rel, apply: () => at?.alloc.markReleased(at.value, rel.record) };
  }

  owner(mac: string) {
    const at = this.locate(mac);
    return at?.alloc.get(at.value);
  }

  usage(): ({ prefix: string } & Usage)[] {
    return this.pools.map(({ prefix, alloc }) => ({ prefix, ...alloc.usage() }));
  }
}
