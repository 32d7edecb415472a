// A long-lived reader child (nft monitor, tcpdump) kept running: when it dies
// it is started again after an exponential backoff. A child that ran longer
// than the longest delay earned a fresh backoff; one that dies at once did
// not, so a reader that cannot start costs one spawn per 10 s, not a loop.
// The guard watch, the security-group watch and the drop log each hold one
// (what the child reads is theirs); the observer's feeds share the clock.
import type { ObserveLogger } from './monitor.js';

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 200, maxMs: 10_000 };

/** How long to wait before the next start. */
export class BackoffClock {
  private restarts = 0;
  private spawnedAt = 0;

  constructor(private readonly backoff: Backoff = DEFAULT_BACKOFF) {}

  /** The child is running: the time it runs counts towards a fresh backoff. */
  spawned(): void {
    this.spawnedAt = Date.now();
  }

  /** The child ended: the delay before the next start. */
  nextDelay(): number {
    if (this.spawnedAt > 0 && Date.now() - this.spawnedAt > this.backoff.maxMs) this.restarts = 0;
    const delay = Math.min(this.backoff.initialMs * 2 ** this.restarts, this.backoff.maxMs);
    this.restarts++;
    this.spawnedAt = 0;
    return delay;
  }
}

export interface ChildHandle {
  kill(): void;
}

export interface ChildEvents {
  spawned(): void;
  exit(reason: string): void;
}

export interface RestartingChildOptions {
  /** Starts one child, which reports `spawned` once it runs and `exit` once when it ends. */
  start(events: ChildEvents): ChildHandle;
  /** The warning on a restart reads `<label> exited; restarting`, with `fields`, `reason` and `restartInMs`. */
  label: string;
  fields: Record<string, unknown>;
  logger?: ObserveLogger | undefined;
  backoff?: Backoff | undefined;
}

export class RestartingChild {
  private child: ChildHandle | undefined;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: BackoffClock;

  constructor(private readonly o: RestartingChildOptions) {
    this.clock = new BackoffClock(o.backoff ?? DEFAULT_BACKOFF);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.spawn();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.child?.kill();
    this.child = undefined;
  }

  private spawn(): void {
    const child = this.o.start({
      spawned: () => this.clock.spawned(),
      // Only the current child's end restarts: a killed predecessor's late exit does not.
      exit: (reason) => {
        if (this.child === child) this.onExit(reason);
      },
    });
    this.child = child;
  }

  private onExit(reason: string): void {
    this.child = undefined;
    if (!this.running) return;
    const delay = this.clock.nextDelay();
    this.o.logger?.warn?.(
      { ...this.o.fields, reason, restartInMs: delay },
      `${this.o.label} exited; restarting`,
    );
    this.timer = setTimeout(() => {
      if (this.running) this.spawn();
    }, delay);
    this.timer.unref();
  }
}
