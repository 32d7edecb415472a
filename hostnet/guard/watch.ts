// Watches nftables for changes to berth's own guard table that berth did not
// make (`nft flush ruleset` from `systemctl reload nftables`, a table or chain
// deleted by hand, an element removed) and heals at once, instead of leaving
// guests unguarded until the next periodic reconcile, which stays as the net
// under this one. A long-lived `nft monitor` child streams every transaction;
// berth's own writes are recognised by the writer's pid and ignored. A child
// that dies is restarted with backoff, and since events were missed meanwhile
// every (re)start is followed by a full reconcile.
import { causeText } from '../../base/errors.js';
import { type MonitorSpawner, type ObserveLogger, osMonitorSpawner } from '../observe/monitor.js';
import {
  type Backoff,
  type ChildEvents,
  type ChildHandle,
  RestartingChild,
} from '../observe/restarting-child.js';
import { mergeTamper, skeletonLine, type Tamper, TransactionReader, tamperOf } from './watch-events.js';

export interface GuardWatchOptions {
  /** The table's name in family bridge (Names.guardTable()). */
  table: string;
  /** True when pid is one of berth's own nft writers (Guard.ownTransaction). */
  ownTransaction(pid: number): boolean;
  /** True while one of berth's own writes may still show up (Guard.writing). */
  writing(): boolean;
  /**
   * Brings the table back to the desired state. `tamper` undefined: a full
   * reconcile after the monitor (re)started, with no event in hand.
   */
  heal(tamper: Tamper | undefined): Promise<void>;
  logger?: ObserveLogger;
  spawner?: MonitorSpawner;
  backoff?: Backoff;
  /** How long after spawn the child is trusted to be subscribed. */
  settleMs?: number;
}

export class GuardWatch {
  private readonly monitor: RestartingChild;
  private running = false;
  private reader = new TransactionReader();
  /** The transaction being read already started a heal (early, from one line). */
  private reacted = false;
  private healing: Promise<void> | undefined;
  /** A tamper seen while a heal ran; `full` when a restart asked for a full reconcile. */
  private next: Tamper | 'full' | undefined;

  constructor(private readonly o: GuardWatchOptions) {
    this.monitor = new RestartingChild({
      start: (events) => this.spawn(events),
      label: 'guard watch: nft monitor',
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

  /** Resolves when no heal runs or waits (tests and the benchmark). */
  async idle(): Promise<void> {
    while (this.healing) await this.healing;
  }

  private spawn(events: ChildEvents): ChildHandle {
    this.reader = new TransactionReader();
    this.reacted = false;
    return (this.o.spawner ?? osMonitorSpawner).spawn(['nft', 'monitor'], {
      spawned: () => {
        events.spawned();
        // Whatever changed before the subscription was missed: one full reconcile.
        setTimeout(() => this.request('full'), this.o.settleMs ?? 100).unref();
      },
      line: (text) => this.onLine(text),
      exit: events.exit,
    });
  }

  private onLine(text: string): void {
    const tx = this.reader.line(text);
    if (!tx) {
      // A flush or table delete prints thousands of lines before the line that
      // names its writer. When berth has no write of its own on the way, a
      // skeleton change is somebody else's: heal now. The kernel sends events
      // after the commit, so the heal reads the final state.
      const line = text.trim();
      if (!this.reacted && skeletonLine(line, this.o.table) && !this.o.writing()) {
        this.reacted = true;
        this.request({
          tableGone: false,
          whole: true,
          ports: [],
          seen: [line],
          events: 1,
          pid: undefined,
          comm: undefined,
        });
      }
      return;
    }
    const reacted = this.reacted;
    this.reacted = false;
    if (tx.pid !== undefined && this.o.ownTransaction(tx.pid)) return;
    const tamper = tamperOf(tx, this.o.table);
    if (!tamper) return;
    if (reacted)
      this.o.logger?.info?.(
        {
          table: this.o.table,
          by: { pid: tamper.pid, comm: tamper.comm },
          events: tamper.events,
          seen: tamper.seen,
        },
        'guard watch: the change being restored was made by',
      );
    else this.request(tamper);
  }

  /** Runs one heal at a time; what arrives meanwhile is folded into one more. */
  private request(what: Tamper | 'full'): void {
    if (!this.running) return;
    if (this.healing) {
      this.next = what === 'full' || this.next === 'full' ? 'full' : mergeTamper(this.next, what);
      return;
    }
    this.healing = this.run(what).finally(() => {
      this.healing = undefined;
      const again = this.next;
      this.next = undefined;
      if (again) this.request(again);
    });
  }

  private async run(what: Tamper | 'full'): Promise<void> {
    try {
      await this.o.heal(what === 'full' ? undefined : what);
    } catch (err) {
      // The periodic reconcile retries; a log line per failure is enough here.
      this.o.logger?.error?.(
        { table: this.o.table, err: causeText(err) },
        'guard watch: could not restore the guard table',
      );
    }
  }
}
