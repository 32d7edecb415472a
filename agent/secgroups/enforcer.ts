// Keeps the bridge's security-group tables in step with groups, membership
// and ports. Every change pokes it; pokes within a few ms coalesce into one
// compile and one nft transaction, so a rule or member change lands well
// within the 1 s the operator is promised, and a burst of creates costs one
// apply, not one each. Flows that lost their admission are cut after the new
// rules are in, so nothing slips through between the two.
import type { Logger } from 'pino';
import type { SecGroupDriver, SgCounter } from '../../hostnet/secgroups/driver.js';
import type { SecGroupState, SgMode } from '../../hostnet/secgroups/state.js';
import type { SecGroup, SecGroupPortCounters } from '../api/types.js';
import { compileSecGroups, flowCuts, type SgLocalPort, type SgMember } from './compile.js';
import { groupUsage } from './usage.js';

export interface SecGroupEnforcerOptions {
  driver: SecGroupDriver;
  groups: () => readonly SecGroup[];
  /** Every instance sources may name: this host's and, in cluster mode, the directory's. */
  members: () => readonly SgMember[];
  localPorts: () => readonly SgLocalPort[];
  /** Network -> its uplink's port on this host's bridge, where other hosts' guests arrive. */
  uplinks?: () => ReadonlyMap<string, string>;
  log: Logger;
  /** How long pokes gather before one apply. */
  coalesceMs?: number;
}

const EMPTY: SecGroupState = { ports: [], sets: [] };

export class SecGroupEnforcer {
  private applied: SecGroupState = EMPTY;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private reasons = new Set<string>();
  private detected: SgMode | undefined;
  private stopped = false;
  private readBack = false;
  private stopWatch: (() => void) | undefined;
  /** The last apply's failures; empty when the host matches. */
  lastErrors: string[] = [];

  constructor(private readonly o: SecGroupEnforcerOptions) {}

  /** Something changed (`why` goes to the log); an apply follows shortly. */
  poke(why: string): void {
    if (this.stopped) return;
    this.reasons.add(why);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, this.o.coalesceMs ?? 20);
    this.timer.unref();
  }

  /** Applies now and waits for it (and for one already under way). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.run();
  }

  /**
   * The periodic reconcile's pass: diffs against the tables as read back, not
   * as last written, so a change nobody announced is found and undone.
   */
  async reconcile(): Promise<void> {
    this.readBack = true;
    await this.flush();
  }

  /** Per port and rule; nothing (and no nft call) while no guest on this host is in a group. */
  counters(): Promise<SgCounter[]> {
    return this.applied.ports.length === 0 ? Promise.resolve([]) : this.o.driver.counters();
  }

  /** `group`'s members' ports on this host, with their counters (one counter read). */
  async usage(group: string): Promise<SecGroupPortCounters[]> {
    const applied = this.applied;
    if (applied.ports.length === 0) return [];
    return groupUsage(group, applied, this.o.members(), await this.o.driver.counters());
  }

  get mode(): SgMode | undefined {
    return this.detected;
  }

  state(): SecGroupState {
    return this.applied;
  }

  private async run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.once();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async once(): Promise<void> {
    const why = [...this.reasons];
    this.reasons.clear();
    const read = this.readBack;
    this.readBack = false;
    const desired = compileSecGroups(
      this.o.groups(),
      this.o.members(),
      this.o.localPorts(),
      this.o.uplinks?.(),
    );
    // No group anywhere on this host: the kernel is left as it was (no table, no sysctl).
    if (desired.ports.length === 0 && this.applied.ports.length === 0 && this.detected === undefined) return;
    const started = Date.now();
    try {
      this.detected ??= await this.o.driver.mode();
      const report = await this.o.driver.apply(desired, { read });
      // Healing needs an `nft monitor`: started once this host enforces anything.
      if (desired.ports.length > 0 && !this.stopWatch) this.stopWatch = this.o.driver.watchTables(this.o.log);
      const cuts = flowCuts(this.applied, desired);
      this.applied = desired;
      this.lastErrors = report.errors;
      if (cuts.length > 0) await this.o.driver.cutFlows(cuts);
      if (report.errors.length > 0)
        this.o.log.error({ errors: report.errors, why }, 'security groups applied with failures');
      else if (report.changed || cuts.length > 0)
        this.o.log.info(
          {
            mode: this.detected,
            ports: desired.ports.length,
            sets: desired.sets.length,
            cut: cuts.length,
            ms: Date.now() - started,
            why,
          },
          'security groups applied',
        );
    } catch (err) {
      this.lastErrors = [err instanceof Error ? err.message : String(err)];
      this.o.log.error({ err: this.lastErrors[0], why }, 'could not apply security groups; retrying in 2 s');
      // Nothing else may come along to poke: a guest must not stay open because one apply failed.
      setTimeout(() => this.poke('retry after a failed apply'), 2_000).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    this.stopWatch?.();
  }
}
