// The anti-spoofing guard: keeps berth's bridge-family nft table equal to
// the desired ports and endpoints. Every change is one nft transaction; a
// reconcile that finds nothing to change runs none, so handles stay put.
import { BerthError, couldNot } from '../../base/errors.js';
import type { Names } from '../names.js';
import { CommandNftApplier, isNotFound, type NftApplier } from './nft.js';
import { type ObservedGuard, observeGuard } from './observe.js';
import { planGuard } from './plan.js';
import {
  freshPortScript,
  type PortPresence,
  readPortPresence,
  removalScript,
  repairScript,
} from './port-presence.js';
import {
  addPortCommands,
  DROP_REASONS,
  EDGE_REASONS,
  endpointFor,
  type GuardEndpoint,
  type GuardPort,
  type GuardReason,
  type GuardState,
  renderGuard,
  TABLE_COUNTERS,
  validateState,
} from './render.js';

export interface GuardDrop {
  /**
   * The guest port, the endpoint port for a network's edge counters, or "*"
   * for table-wide counters (unguarded ports, steered DHCP copies, fallbacks).
   */
  port: string;
  reason: GuardReason;
  packets: number;
  bytes: number;
}

export class Guard {
  readonly table: string;
  /** Endpoints from the last apply(); addPort needs them to steer the port's DHCP. */
  private endpoints: readonly GuardEndpoint[] | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * True once a whole-table reconcile in this process left the skeleton as
   * this version writes it; only then may one port change without reading
   * the whole table (port-presence.ts).
   */
  private skeletonKnown = false;
  /** performance.now() when a whole-table write last held every guest port closed (the benchmark reads it). */
  failClosedAt = 0;

  constructor(
    private readonly names: Names,
    private readonly nft: NftApplier = new CommandNftApplier(),
  ) {
    this.table = names.guardTable();
  }

  /**
   * Reconciles the whole table; resolves true when a transaction ran, false
   * when nothing differed. `absent`: the caller saw the table deleted, so the
   * table is written whole without reading it first (the guard watch's fast
   * path); the script deletes whatever is there in the same transaction, so
   * it is right even if the table came back meanwhile.
   */
  apply(desired: GuardState, options: { absent?: boolean } = {}): Promise<boolean> {
    return this.serial(async () => {
      this.skeletonKnown = false;
      const changed = options.absent ? await this.write(desired) : await this.reconcile(desired, undefined);
      this.endpoints = [...desired.endpoints];
      this.skeletonKnown = true;
      return changed;
    });
  }

  /** True once apply() ran: only then does the guard know the endpoints a heal needs. */
  get applied(): boolean {
    return this.endpoints !== undefined;
  }

  /** True when pid is one of this guard's recent nft writers (the watch ignores their events). */
  ownTransaction(pid: number): boolean {
    return this.nft.ownTransaction?.(pid) ?? false;
  }

  /** True while one of this guard's writes may still show up in nft monitor. */
  writing(): boolean {
    return this.nft.writing?.() ?? false;
  }

  /**
   * Puts the named ports' chains, rules, elements and counters back without
   * reading the table: the watch's path for a port chain flushed or an
   * element deleted by hand. Every command is idempotent except an element
   * that now holds another value; then nft refuses the whole transaction and
   * this falls back to the whole-table reconcile.
   */
  repairPorts(desired: GuardState, ifnames: readonly string[]): Promise<boolean> {
    return this.serial(async () => {
      const want = validateState(this.names, desired);
      const ports = want.ports.filter((p) => ifnames.includes(p.ifname));
      if (ports.length === ifnames.length && this.skeletonKnown) {
        try {
          await this.nft.run(repairScript(this.names, ports, want.endpoints));
          return true;
        } catch {
          // Something else differs too: the full reconcile finds it.
        }
      }
      this.skeletonKnown = false;
      const changed = await this.reconcile(desired, undefined);
      this.endpoints = [...desired.endpoints];
      this.skeletonKnown = true;
      return changed;
    });
  }

  /** Adds or updates one port without touching any other port's rules. */
  addPort(port: GuardPort): Promise<boolean> {
    return this.serial(async () => {
      if (!this.endpoints) {
        throw new BerthError(
          'BERTH_ERR_CONFLICT',
          `could not add port "${port.ifname}" to guard table "${this.table}": the guard does not know the network endpoints yet; call apply() first`,
        );
      }
      const desired = { ports: [port], endpoints: this.endpoints };
      const [valid] = validateState(this.names, desired).ports as [GuardPort];
      const endpoint = endpointFor(valid, desired.endpoints);
      const fast = await this.quickly(valid.ifname, (p) => freshPortScript(this.names, p, valid, endpoint));
      return fast ?? this.reconcile(desired, port.ifname);
    });
  }

  /**
   * Removes one port's chain, elements and counters; a port that is not there
   * is already removed. `known`, the port as it was added, saves reading its
   * network's edge elements back (nft still checks them).
   */
  removePort(ifname: string, known?: GuardPort): Promise<boolean> {
    return this.serial(async () => {
      const endpoint = known && this.endpoints ? endpointFor(known, this.endpoints) : undefined;
      const edge = endpoint && known ? { endpoint: endpoint.ifname, mac: known.mac, ipv4: known.ipv4 } : null;
      const fast = await this.quickly(
        ifname,
        (p) => removalScript(this.names, p, ifname, known ? edge : undefined),
        { edges: known === undefined },
      );
      return fast ?? this.reconcile({ ports: [], endpoints: this.endpoints ?? [] }, ifname);
    });
  }

  /**
   * The one-port fast path: true when its script ran, undefined when the
   * port is in a state only the full reconcile handles, or nft refused the
   * script (one transaction: nothing of it applied).
   */
  private async quickly(
    ifname: string,
    plan: (presence: PortPresence) => string | undefined,
    read: { edges?: boolean } = {},
  ): Promise<true | undefined> {
    if (!this.skeletonKnown) return undefined;
    try {
      const script = plan(await readPortPresence(this.nft, this.table, ifname, read));
      if (script === undefined) return undefined;
      await this.nft.run(script);
      return true;
    } catch {
      return undefined;
    }
  }

  async drops(): Promise<GuardDrop[]> {
    const observed = await this.observe();
    if (!observed) return [];
    const out: GuardDrop[] = [];
    for (const [name, { packets, bytes }] of observed.counters) {
      const dot = name.indexOf('.');
      const port = dot < 0 ? '*' : name.slice(0, dot);
      const reason = name.slice(dot + 1) as GuardDrop['reason'];
      const known: readonly string[] = dot < 0 ? TABLE_COUNTERS : [...DROP_REASONS, ...EDGE_REASONS];
      if (known.includes(reason)) {
        out.push({ port, reason, packets, bytes });
      }
    }
    return out.sort((a, b) => (a.port + a.reason < b.port + b.reason ? -1 : 1));
  }

  /** Removes the whole table; an absent table counts as removed. */
  destroy(): Promise<void> {
    return this.serial(async () => {
      try {
        if ((await this.nft.listTable('bridge', this.table)) === undefined) return;
        this.skeletonKnown = false;
        await this.nft.run(`delete table bridge ${this.table}\n`);
      } catch (err) {
        if (!isNotFound(err)) throw couldNot('BERTH_ERR_HOST_OP', 'delete', 'guard table', this.table, err);
      }
      this.endpoints = undefined;
    });
  }

  private async reconcile(desired: GuardState, only: string | undefined): Promise<boolean> {
    const observed = await this.observe();
    if (observed === undefined && only === undefined) return this.write(desired);
    const script = planGuard(this.names, observed, desired, only === undefined ? {} : { only });
    if (script === undefined) return false;
    return this.commit(script);
  }

  /**
   * The whole table, in two transactions. The skeleton alone drops every
   * owned guest port (no element in the port map: "unguarded"), so guests are
   * held fail-closed after the first, small one (tens of ms), while the ports'
   * thousands of rules (most of a 200-port write) follow in the second. The
   * first replaces whatever table is there, so it is right even if a table
   * came back meanwhile.
   */
  private async write(desired: GuardState): Promise<boolean> {
    const valid = validateState(this.names, desired);
    const t = `bridge ${this.table}`;
    const skeleton = renderGuard(this.names, { ports: [], endpoints: valid.endpoints });
    await this.commit(`add table ${t}\ndelete table ${t}\n${skeleton}`);
    this.failClosedAt = performance.now();
    if (valid.ports.length === 0) return true;
    const ports = valid.ports.flatMap((p) => addPortCommands(this.names, p, endpointFor(p, valid.endpoints)));
    return this.commit(`${ports.join('\n')}\n`);
  }

  private async commit(script: string): Promise<boolean> {
    try {
      await this.nft.run(script);
    } catch (err) {
      throw couldNot('BERTH_ERR_HOST_OP', 'apply', 'guard table', this.table, err);
    }
    return true;
  }

  private async observe(): Promise<ObservedGuard | undefined> {
    let listing: unknown;
    try {
      listing = await this.nft.listTable('bridge', this.table);
    } catch (err) {
      throw couldNot('BERTH_ERR_HOST_OP', 'read', 'guard table', this.table, err);
    }
    return listing === undefined ? undefined : observeGuard(listing);
  }

  // Each call reads, plans and writes; two interleaved would plan against a stale read.
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
