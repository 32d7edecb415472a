// berthd's Prometheus metrics. Most values already live in the services
// (DHCP stats, the MAC pool, guard counters in nftables); they are read at
// scrape time, so the hot paths pay nothing. Only resolve latency is measured
// as it happens, by wrapping the observer.
import client from 'prom-client';
import type { GuardDrop } from '../../hostnet/driver.js';
import type { ResolveResult } from '../../hostnet/observe/resolve.js';
import type { SgCounter } from '../../hostnet/secgroups/driver.js';
import type { Instance } from '../api/types.js';
import type { DhcpStats } from '../services/dhcp.js';
import type { Observer } from './services.js';

/** What a scrape reads; each source is cheap or cached. */
export interface MetricsSources {
  version: string;
  hostId: () => string;
  instances: () => Pick<Instance, 'state'>[];
  macPools: () => { prefix: string; size: number; assigned: number; quarantined: number; free: number }[];
  dhcp?: () => DhcpStats;
  /** Metadata answers by network and HTTP status, as the endpoints reported them. */
  metadata?: () => { network: string; status: number; count: number }[];
  guardDrops: () => Promise<GuardDrop[]>;
  /** Security-group counters per port and rule (`drop` for a port's final drop); optional. */
  secgroupCounters?: () => Promise<SgCounter[]>;
  reconcile: () => { runs: number; failed: number; errors: number };
}

const INSTANCE_STATES = ['creating', 'running', 'stopped', 'deleting', 'error', 'missing'] as const;
/** Guard counters are read with one `nft list` per scrape at most this often. */
const GUARD_CACHE_MS = 5_000;

/** A counter whose value is a running total kept elsewhere. */
function mirror(c: client.Counter<string>, rows: [Record<string, string>, number][]): void {
  c.reset();
  for (const [labels, value] of rows) c.inc(labels, value);
}

export class BerthMetrics {
  readonly registry = new client.Registry();
  private readonly resolveSeconds: client.Histogram<'lookup' | 'result'>;
  private guardCache: { at: number; drops: Promise<GuardDrop[]> } | undefined;
  private sgCache: { at: number; counters: Promise<SgCounter[]> } | undefined;

  constructor(
    private readonly s: MetricsSources,
    private readonly now: () => number = Date.now,
  ) {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: 'berth_' });
    const src = this.s;
    new client.Gauge({
      name: 'berth_info',
      help: 'berthd version and host id; always 1',
      labelNames: ['version', 'host_id'],
      registers,
      collect() {
        this.reset();
        this.set({ version: src.version, host_id: src.hostId() }, 1);
      },
    });
    new client.Gauge({
      name: 'berth_instances',
      help: 'instances by state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(INSTANCE_STATES.map((s) => [s, 0]));
        for (const i of src.instances()) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new client.Gauge({
      name: 'berth_mac_pool_free',
      help: 'MACs that can be handed out now, by pool prefix',
      labelNames: ['prefix'],
      registers,
      collect() {
        for (const p of src.macPools()) this.set({ prefix: p.prefix }, p.free);
      },
    });
    new client.Gauge({
      name: 'berth_mac_pool_size',
      help: 'MACs in the pool, by prefix and use (assigned, quarantined, free)',
      labelNames: ['prefix', 'use'],
      registers,
      collect() {
        for (const p of src.macPools())
          for (const use of ['assigned', 'quarantined', 'free'] as const)
            this.set({ prefix: p.prefix, use }, p[use]);
      },
    });
    new client.Counter({
      name: 'berth_dhcp_messages_total',
      help: 'DHCP client messages by message type and verdict (offer, ack, nak, accepted, ignored, refused)',
      labelNames: ['type', 'verdict'],
      registers,
      collect() {
        const messages = src.dhcp?.().messages ?? {};
        mirror(
          this,
          Object.entries(messages).map(([key, n]) => {
            const [type = '', verdict = ''] = key.split(' ');
            return [{ type, verdict }, n];
          }),
        );
      },
    });
    new client.Counter({
      name: 'berth_dhcp_refusals_total',
      help: 'DHCP messages refused or ignored, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        mirror(
          this,
          Object.entries(src.dhcp?.().refused ?? {}).map(([reason, n]) => [{ reason }, n]),
        );
      },
    });
    new client.Counter({
      name: 'berth_dhcp_malformed_total',
      help: 'datagrams on UDP 67 that did not decode as DHCP, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        mirror(
          this,
          Object.entries(src.dhcp?.().rejected ?? {}).map(([reason, n]) => [{ reason }, n]),
        );
      },
    });
    new client.Counter({
      name: 'berth_metadata_requests_total',
      help: 'metadata requests answered by the endpoints, by network and HTTP status (reported every 2 s)',
      labelNames: ['network', 'status'],
      registers,
      collect() {
        mirror(
          this,
          (src.metadata?.() ?? []).map((r) => [{ network: r.network, status: String(r.status) }, r.count]),
        );
      },
    });
    const guardDrops = () => this.guardDrops();
    new client.Counter({
      name: 'berth_guard_dropped_packets_total',
      help: 'frames the port guard dropped, by reason (summed over ports)',
      labelNames: ['reason'],
      registers,
      async collect() {
        const sums = new Map<string, number>();
        for (const d of await guardDrops()) sums.set(d.reason, (sums.get(d.reason) ?? 0) + d.packets);
        mirror(
          this,
          [...sums].map(([reason, n]) => [{ reason }, n]),
        );
      },
    });
    const sgCounters = () => this.secgroupCounters();
    new client.Counter({
      name: 'berth_secgroup_packets_total',
      help: 'packets toward guests in security groups, accepted by a rule or dropped (summed over ports; read at most every 5 s)',
      labelNames: ['verdict'],
      registers,
      async collect() {
        let accepted = 0;
        let dropped = 0;
        for (const c of await sgCounters()) {
          if (c.rule === 'drop') dropped += c.packets;
          else accepted += c.packets;
        }
        mirror(this, [
          [{ verdict: 'accepted' }, accepted],
          [{ verdict: 'dropped' }, dropped],
        ]);
      },
    });
    new client.Counter({
      name: 'berth_reconcile_runs_total',
      help: 'host reconcile passes',
      registers,
      collect() {
        mirror(this, [[{}, src.reconcile().runs]]);
      },
    });
    new client.Counter({
      name: 'berth_reconcile_failed_runs_total',
      help: 'host reconcile passes that had at least one failure',
      registers,
      collect() {
        mirror(this, [[{}, src.reconcile().failed]]);
      },
    });
    new client.Counter({
      name: 'berth_reconcile_errors_total',
      help: 'failures gathered by host reconcile passes (one pass can have several)',
      registers,
      collect() {
        mirror(this, [[{}, src.reconcile().errors]]);
      },
    });
    this.resolveSeconds = new client.Histogram({
      name: 'berth_resolve_duration_seconds',
      help: 'identity resolution (IP or MAC to port and instance) latency, by lookup and result',
      labelNames: ['lookup', 'result'],
      // A hit is a few map lookups (about 1 µs); a miss waits up to 100 ms for the guest's event.
      buckets: [0.00001, 0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers,
    });
  }

  private guardDrops(): Promise<GuardDrop[]> {
    const at = this.now();
    if (!this.guardCache || at - this.guardCache.at >= GUARD_CACHE_MS) {
      const drops = this.s.guardDrops().catch(() => [] as GuardDrop[]);
      this.guardCache = { at, drops };
    }
    return this.guardCache.drops;
  }

  /** Reading 1000 ports' counters takes about a second: a scrape reuses the last read for 5 s. */
  private secgroupCounters(): Promise<SgCounter[]> {
    const at = this.now();
    if (!this.sgCache || at - this.sgCache.at >= GUARD_CACHE_MS) {
      const counters = (this.s.secgroupCounters?.() ?? Promise.resolve([])).catch(() => [] as SgCounter[]);
      this.sgCache = { at, counters };
    }
    return this.sgCache.counters;
  }

  /** Times every resolve() and resolveMac() of this observer, whoever calls it. */
  instrumentObserver(observer: Observer): void {
    const timed =
      (lookup: 'ip' | 'mac', fn: Observer['resolve']): Observer['resolve'] =>
      async (network, key, options) => {
        const started = process.hrtime.bigint();
        const r: ResolveResult = await fn(network, key, options);
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        this.resolveSeconds.observe({ lookup, result: r.ok ? 'ok' : r.reason }, seconds);
        return r;
      };
    observer.resolve = timed('ip', observer.resolve.bind(observer));
    observer.resolveMac = timed('mac', observer.resolveMac.bind(observer));
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
