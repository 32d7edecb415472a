// The real SecGroupDriver: nftables for enforcement, the conntrack CLI for
// cutting flows. apply() reads both `<prefix>_sg` tables, diffs (plan.ts)
// and writes one `nft -f` transaction, or none when nothing differs. It never
// touches a table without berth's prefix.
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { BerthError, couldNot } from '../../base/errors.js';
import { CommandNftApplier, isNotFound, type NftApplier } from '../guard/nft.js';
import type { Names } from '../names.js';
import type { ObserveLogger } from '../observe/monitor.js';
import { cutFlowsWith } from './conntrack.js';
import { detectSgMode, osSgKernel, type SgKernel } from './detect.js';
import type { SecGroupDriver, SgApplyOptions, SgApplyReport, SgCounter } from './driver.js';
import { emptyObserved, modelOf, type ObservedSg, observeSg } from './observe.js';
import { planSecGroups } from './plan.js';
import { sgTable, zoneOf } from './render.js';
import type { SecGroupState, SgFlowCut, SgMode } from './state.js';
import { validateSecGroups } from './validate.js';
import { watchDriver } from './watch.js';

export interface NftSecGroupOptions {
  nft?: NftApplier;
  runner?: CommandRunner;
  kernel?: SgKernel;
  /** Told what detection changed on the host (the sysctl), once. */
  log?: (note: string) => void;
  /** A mode already known (tests of one path; berthd detects). */
  mode?: SgMode;
}

export class NftSecGroupDriver implements SecGroupDriver {
  readonly table: string;
  private readonly nft: NftApplier;
  private readonly runner: CommandRunner;
  private readonly kernel: SgKernel;
  private detected: Promise<SgMode> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The last state apply() was asked for: heals re-apply it, cutFlows finds zones in it. */
  private last: SecGroupState | undefined;
  /** What this process's last successful write left in the tables; undefined when unknown. */
  private known: ObservedSg | undefined;

  constructor(
    private readonly names: Names,
    private readonly o: NftSecGroupOptions = {},
  ) {
    this.table = sgTable(names);
    this.runner = o.runner ?? osCommandRunner;
    this.nft = o.nft ?? new CommandNftApplier(this.runner);
    this.kernel = o.kernel ?? osSgKernel(this.runner);
    if (o.mode) this.detected = Promise.resolve(o.mode);
  }

  mode(): Promise<SgMode> {
    this.detected ??= detectSgMode(this.kernel, this.names.prefix).then((d) => {
      for (const note of d.notes) this.o.log?.(note);
      return d.mode;
    });
    // A failed detection is tried again next time (a module may be loaded meanwhile).
    return this.detected.catch((err: unknown) => {
      this.detected = undefined;
      throw err;
    });
  }

  /** The state the last apply() was given (the watch heals towards it). */
  get desired(): SecGroupState | undefined {
    return this.last;
  }

  /**
   * `read`: diff against the tables as read back now (the watch's heal, a
   * periodic reconcile). Otherwise, after a write of this process, the diff
   * is against what that write left (modelOf): at 1000 ports reading the
   * tables back costs ~0.9 s, planning against the model ~nothing. Changes
   * made by others meanwhile are the watch's to see; a script the model
   * got wrong is refused by nft as a whole, and then the tables are read.
   */
  apply(desired: SecGroupState, options: SgApplyOptions = {}): Promise<SgApplyReport> {
    return this.serial(async () => {
      const mode = await this.mode();
      this.last = desired;
      const { ports, sets, errors } = validateSecGroups(desired, mode);
      const known = options.read ? undefined : this.known;
      this.known = undefined;
      const plan = known ? planSecGroups(this.names, mode, known, ports, sets) : undefined;
      if (known && !plan) {
        this.known = known;
        return { changed: false, errors };
      }
      if (plan) {
        try {
          await this.nft.run(plan.script);
          this.known = modelOf(this.names, mode, ports, sets);
          return { changed: true, errors };
        } catch {
          // The model was stale: read the tables and plan again.
        }
      }
      let observed: ObservedSg | undefined;
      try {
        observed = await this.observe();
      } catch (err) {
        errors.push(couldNot('BERTH_ERR_HOST_OP', 'read', 'security-group table', this.table, err).message);
        return { changed: false, errors };
      }
      const fresh = planSecGroups(this.names, mode, observed, ports, sets);
      if (!fresh) {
        this.known = modelOf(this.names, mode, ports, sets);
        return { changed: false, errors };
      }
      try {
        await this.nft.run(fresh.script);
      } catch (err) {
        // One transaction: nothing of it applied. A diff against a table
        // changed meanwhile can be refused; the whole write cannot be stale.
        const whole = fresh.whole ? undefined : planSecGroups(this.names, mode, undefined, ports, sets);
        try {
          if (!whole) throw err;
          await this.nft.run(whole.script);
        } catch (again) {
          errors.push(
            couldNot('BERTH_ERR_HOST_OP', 'apply', 'security-group table', this.table, again).message,
          );
          return { changed: false, errors };
        }
      }
      this.known = modelOf(this.names, mode, ports, sets);
      return { changed: true, errors };
    });
  }

  async cutFlows(cuts: SgFlowCut[]): Promise<void> {
    // Overlapping tenant subnets: one address can be a guarded port on several
    // bridges, or in several VLANs of one trunk bridge (each its own zone).
    const byIp = new Map<string, Set<number>>();
    for (const p of this.last?.ports ?? [])
      byIp.set(p.ip, (byIp.get(p.ip) ?? new Set()).add(zoneOf(p.bridge, p.vlan)));
    const errors = await cutFlowsWith(this.runner, cuts, (dst) =>
      [...(byIp.get(dst) ?? [])].sort((a, b) => a - b),
    );
    if (errors.length > 0)
      throw new BerthError(
        'BERTH_ERR_HOST_OP',
        `could not cut flows "${cuts.map((c) => `${c.src}->${c.dst}`).join(',')}": ${errors.join('; ')}`,
      );
  }

  async counters(): Promise<SgCounter[]> {
    const observed = await this.observe();
    const out: SgCounter[] = [];
    for (const [name, { packets, bytes }] of observed?.counters ?? []) {
      const dot = name.indexOf('.');
      if (dot > 0) out.push({ ifname: name.slice(0, dot), rule: name.slice(dot + 1), packets, bytes });
    }
    return out.sort((a, b) => (a.ifname + a.rule < b.ifname + b.rule ? -1 : 1));
  }

  remove(): Promise<void> {
    return this.serial(async () => {
      for (const family of ['bridge', 'inet']) {
        try {
          if ((await this.nft.listTable(family, this.table)) === undefined) continue;
          await this.nft.run(`delete table ${family} ${this.table}\n`);
        } catch (err) {
          if (!isNotFound(err))
            throw couldNot(
              'BERTH_ERR_HOST_OP',
              'delete',
              'security-group table',
              `${family} ${this.table}`,
              err,
            );
        }
      }
      this.last = undefined;
      this.known = undefined;
    });
  }

  /** True when pid is one of this driver's recent nft writers (the watch ignores their events). */
  watchTables(logger?: ObserveLogger): () => void {
    const watch = watchDriver(this, logger);
    watch.start();
    return () => watch.stop();
  }

  ownTransaction(pid: number): boolean {
    return this.nft.ownTransaction?.(pid) ?? false;
  }

  writing(): boolean {
    return this.nft.writing?.() ?? false;
  }

  /** Both tables folded into one view; undefined when neither exists. */
  private async observe(): Promise<ObservedSg | undefined> {
    const seen = emptyObserved();
    let any = false;
    for (const family of ['bridge', 'inet']) {
      const listing = await this.nft.listTable(family, this.table);
      if (listing === undefined) continue;
      any = true;
      observeSg(listing, seen);
    }
    return any ? seen : undefined;
  }

  // Each call reads, plans and writes; two interleaved would plan against a stale read.
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
