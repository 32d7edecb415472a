// Heals the `<prefix>_sg` tables the way the guard watch heals the guard:
// a long-lived `nft monitor` child streams every transaction; one that
// touched either table and was not berth's own write (recognised by the
// writer's pid) makes the driver re-apply the last desired state, whose diff
// puts back exactly what went missing. A table deleted, or a base-chain rule
// gone, heals at once from that line, before the transaction's last line
// (a `flush ruleset` prints thousands). A monitor that dies is restarted with
// backoff, and every (re)start is followed by one re-apply, since events
// were missed meanwhile.
import { causeText } from '../../base/errors.js';
import { TransactionReader } from '../guard/watch-events.js';
import { type MonitorSpawner, type ObserveLogger, osMonitorSpawner } from '../observe/monitor.js';
import {
  type Backoff,
  type ChildEvents,
  type ChildHandle,
  RestartingChild,
} from '../observe/restarting-child.js';
import { CHAIN_PREFIX } from './render.js';
import type { SecGroupState } from './state.js';

export interface SecGroupWatchOptions {
  /** The tables' name (both families): sgTable(names). */
  table: string;
  ownTransaction(pid: number): boolean;
  writing(): boolean;
  /** Re-applies the last desired state (NftSecGroupDriver.apply(driver.desired)). */
  heal(): Promise<void>;
  logger?: ObserveLogger;
  spawner?: MonitorSpawner;
  backoff?: Backoff;
  settleMs?: number;
}

const EVENT = /^(\w+) (\w+) (bridge|inet) (\S+)(?: (\S+))?/;

/** True when a monitor line is a change to one of the tables (not an anonymous set of a rule). */
export function touches(line: string, table: string): boolean {
  const m = EVENT.exec(line);
  if (!m || m[4] !== table) return false;
  return !(m[5] ?? '').startsWith('__');
}

/** True when the line alone says the skeleton changed: the table, or a base chain's rule. */
export function skeletonLine(line: string, table: string): boolean {
  const m = EVENT.exec(line);
  if (!m || m[4] !== table) return false;
  return (
    m[2] === 'table' || ((m[2] === 'rule' || m[2] === 'chain') && !(m[5] ?? '').startsWith(CHAIN_PREFIX))
  );
}

export class SecGroupWatch {
  private readonly monitor: RestartingChild;
  private running = false;
  private reader = new TransactionReader();
  private reacted = false;
  private healing: Promise<void> | undefined;
  private again = false;

  constructor(private readonly o: SecGroupWatchOptions) {
    this.monitor = new RestartingChild({
      start: (events) => this.spawn(events),
      label: 'security-group watch: nft monitor',
      fields: { table: o.table },
      logger: o.logger,
      backoff: o.backoff,
    });
  }

  start(): void {
    this.running = true;
    this.monitor.start();
  }

  stop(): void {
    this.running = false;
    this.monitor.stop();
  }

  /** Resolves when no heal runs or waits. */
  async idle(): Promise<void> {
    while (this.healing) await this.healing;
  }

  private spawn(events: ChildEvents): ChildHandle {
    this.reader = new TransactionReader();
    this.reacted = false;
    return (this.o.spawner ?? osMonitorSpawner).spawn(['nft', 'monitor'], {
      spawned: () => {
        events.spawned();
        // Whatever changed before the subscription was missed: one heal.
        setTimeout(() => this.request(), this.o.settleMs ?? 100).unref();
      },
      line: (text) => this.onLine(text),
      exit: events.exit,
    });
  }

  private onLine(text: string): void {
    const tx = this.reader.line(text);
    if (!tx) {
      if (!this.reacted && skeletonLine(text.trim(), this.o.table) && !this.o.writing()) {
        this.reacted = true;
        this.request();
      }
      return;
    }
    const reacted = this.reacted;
    this.reacted = false;
    if (tx.pid !== undefined && this.o.ownTransaction(tx.pid)) return;
    const seen = tx.lines.filter((l) => touches(l, this.o.table));
    if (seen.length === 0) return;
    this.o.logger?.info?.(
      {
        table: this.o.table,
        by: { pid: tx.pid, comm: tx.comm },
        events: seen.length,
        seen: seen.slice(0, 5),
      },
      'security-group watch: restoring a change made by',
    );
    if (!reacted) this.request();
  }

  /** One heal at a time; whatever arrives meanwhile makes one more. */
  private request(): void {
    if (!this.running) return;
    if (this.healing) {
      this.again = true;
      return;
    }
    this.healing = this.o
      .heal()
      .catch((err: unknown) =>
        this.o.logger?.error?.(
          { table: this.o.table, err: causeText(err) },
          'security-group watch: could not restore the tables',
        ),
      )
      .finally(() => {
        this.healing = undefined;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
  }
}

/** The watch wired to a driver: heals re-apply the last desired state (nothing before the first apply). */
export function watchDriver(
  driver: {
    table: string;
    desired: SecGroupState | undefined;
    apply(d: SecGroupState, options: { read: boolean }): Promise<{ errors: string[] }>;
    ownTransaction(pid: number): boolean;
    writing(): boolean;
  },
  logger?: ObserveLogger,
): SecGroupWatch {
  return new SecGroupWatch({
    table: driver.table,
    ownTransaction: (pid) => driver.ownTransaction(pid),
    writing: () => driver.writing(),
    heal: async () => {
      const desired = driver.desired;
      if (!desired) return;
      const report = await driver.apply(desired, { read: true });
      if (report.errors.length > 0) throw new Error(report.errors.join('; '));
    },
    ...(logger ? { logger } : {}),
  });
}
