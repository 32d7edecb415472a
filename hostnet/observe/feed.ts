// One kernel table kept in memory: a monitor child streams its changes, and a
// full dump replaces the view after every (re)start and periodically, to repair
// whatever the stream missed. A child that dies is restarted with backoff.

import type { CommandRunner } from '../../base/command.js';
import { causeText, couldNot } from '../../base/errors.js';
import type { MonitorChild, MonitorSpawner, ObserveLogger } from './monitor.js';
import { type Backoff, BackoffClock } from './restarting-child.js';

export interface FeedOptions<E, S> {
  /** Names the table in logs and errors: `neighbours of namespace` + `ob-ep-a`. */
  object: string;
  name: string;
  monitorArgv: string[];
  dumpArgv: string[];
  parseLine(line: string): E | undefined;
  parseDump(stdout: string): S;
  apply(event: E): void;
  replace(snapshot: S): void;
  runner: CommandRunner;
  spawner: MonitorSpawner;
  logger: ObserveLogger;
  resyncMs: number;
  /** How long after spawn the child is trusted to be subscribed before the dump starts. */
  settleMs: number;
  backoff: Backoff;
}

export class Feed<E, S> {
  private child: MonitorChild | undefined;
  private running = false;
  private readonly clock: BackoffClock;
  private resyncTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  // Events that arrive while a dump runs are replayed on top of it: each one is
  // a state at least as new as the dump's, so the last one for a key wins.
  private pending: E[] | undefined;

  private readonly what: string;

  constructor(private readonly o: FeedOptions<E, S>) {
    this.what = `${o.object} "${o.name}"`;
    this.clock = new BackoffClock(o.backoff);
  }

  /** Resolves once the first dump is in; rejects (and stops) if it cannot be read. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.spawnChild();
    try {
      await this.resync();
    } catch (err) {
      this.stop();
      throw couldNot('BERTH_ERR_HOST_OP', 'observe', this.o.object, this.o.name, err);
    }
    this.resyncTimer = setInterval(() => {
      this.resync().catch(() => undefined);
    }, this.o.resyncMs);
    this.resyncTimer.unref();
  }

  stop(): void {
    this.running = false;
    clearInterval(this.resyncTimer);
    clearTimeout(this.restartTimer);
    this.child?.kill();
    this.child = undefined;
  }

  get alive(): boolean {
    return this.child !== undefined;
  }

  /** A full dump; concurrent calls share one run, and a call during a run queues one more. */
  resync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = this.dumpLoop().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async dumpLoop(): Promise<void> {
    do {
      this.syncAgain = false;
      this.pending = [];
      try {
        const { stdout } = await this.o.runner.run(this.o.dumpArgv, { timeoutMs: 10_000 });
        this.o.replace(this.o.parseDump(stdout));
      } catch (err) {
        this.o.logger.warn?.(
          { what: this.what, err: causeText(err) },
          'observe: resync failed; keeping the old view',
        );
        throw err;
      } finally {
        const replay = this.pending;
        this.pending = undefined;
        for (const event of replay) this.o.apply(event);
      }
    } while (this.syncAgain && this.running);
  }

  private spawnChild(): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        resolve();
      };
      const child = this.o.spawner.spawn(this.o.monitorArgv, {
        spawned: () => {
          this.clock.spawned();
          setTimeout(settle, this.o.settleMs);
        },
        line: (text) => this.onLine(text),
        exit: (reason) => {
          settle();
          if (this.child === child) this.onExit(reason);
        },
      });
      this.child = child;
    });
  }

  private onLine(text: string): void {
    let event: E | undefined;
    try {
      event = this.o.parseLine(text);
    } catch (err) {
      this.o.logger.warn?.({ what: this.what, line: text, err: causeText(err) }, 'observe: unreadable event');
      return;
    }
    if (event === undefined) return;
    if (this.pending) this.pending.push(event);
    else this.o.apply(event);
  }

  private onExit(reason: string): void {
    this.child = undefined;
    if (!this.running) return;
    const delay = this.clock.nextDelay();
    this.o.logger.warn?.(
      { what: this.what, argv: this.o.monitorArgv, reason, restartInMs: delay },
      'observe: monitor exited; restarting',
    );
    this.restartTimer = setTimeout(() => {
      if (!this.running) return;
      this.spawnChild()
        .then(() => (this.running ? this.resync() : undefined))
        .then(() => this.o.logger.info?.({ what: this.what }, 'observe: monitor restarted and resynced'))
        .catch(() => undefined);
    }, delay);
    this.restartTimer.unref();
  }
}
