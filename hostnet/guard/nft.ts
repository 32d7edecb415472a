// The guard's one seam to nftables: run a script as one transaction, read a
// table back as JSON. Tests swap in a recording applier.
import { CommandError, type CommandRunner, osCommandRunner } from '../../base/command.js';

export interface NftApplier {
  /** Runs the script with `nft -f -`: all of it commits, or none of it does. */
  run(script: string): Promise<void>;
  /** `nft -j list table` output (handles included), or undefined when the table does not exist. */
  listTable(family: string, name: string): Promise<unknown>;
  /** `nft -j list <what…>` (`chains bridge`, `map bridge T ports`), or undefined when it does not exist. */
  list(what: string[]): Promise<unknown>;
  /**
   * True when pid is one of this applier's recent `nft -f` writers (nft
   * monitor names the writer's pid); the caller has now seen its transaction.
   */
  ownTransaction?(pid: number): boolean;
  /** True while one of its writes may still show up in nft monitor. */
  writing?(): boolean;
}

/** How long a writer's pid counts as berth's: far longer than nft monitor can trail, far shorter than pid reuse. */
const WRITER_MS = 60_000;
const WRITERS_KEPT = 4096;
/** A write whose transaction nft monitor has not shown after this long never committed (nft refused it). */
const UNSEEN_MS = 3000;

/** The pids of recent writes, so the guard watch can ignore berth's own transactions. */
export class RecentWriters {
  private readonly pids = new Map<number, number>();
  /** Writes whose transaction the watch has not seen yet. */
  private readonly unseen = new Map<number, number>();

  add(pid: number, now = Date.now()): void {
    this.pids.delete(pid);
    this.pids.set(pid, now);
    this.unseen.set(pid, now);
    // Oldest first in insertion order: trim the front.
    for (const [old, at] of this.pids) {
      if (this.pids.size <= WRITERS_KEPT && now - at < WRITER_MS) break;
      this.pids.delete(old);
    }
  }

  /** True when pid is a recent writer; its transaction counts as seen from now on. */
  seen(pid: number, now = Date.now()): boolean {
    const at = this.pids.get(pid);
    if (at === undefined || now - at >= WRITER_MS) return false;
    this.unseen.delete(pid);
    return true;
  }

  /** True while a write's transaction may still be on its way through nft monitor. */
  writing(now = Date.now()): boolean {
    for (const [pid, at] of this.unseen) {
      if (now - at < UNSEEN_MS) return true;
      this.unseen.delete(pid);
    }
    return false;
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof CommandError && /No such file or directory/.test(err.stderr);
}

export class CommandNftApplier implements NftApplier {
  private readonly writers = new RecentWriters();

  constructor(private readonly runner: CommandRunner = osCommandRunner) {}

  async run(script: string): Promise<void> {
    await this.runner.run(['nft', '-f', '-'], { input: script, onSpawn: (pid) => this.writers.add(pid) });
  }

  ownTransaction(pid: number): boolean {
    return this.writers.seen(pid);
  }

  writing(): boolean {
    return this.writers.writing();
  }

  listTable(family: string, name: string): Promise<unknown> {
    return this.list(['table', family, name]);
  }

  async list(what: string[]): Promise<unknown> {
    try {
      const { stdout } = await this.runner.run(['nft', '-j', 'list', ...what]);
      return JSON.parse(stdout) as unknown;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
}
