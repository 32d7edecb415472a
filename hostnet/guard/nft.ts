// The guard's one seam to nftables: run a script as one transaction, read a
// table back as JSON. Tests swap in a recording applier.
import { CommandError, type CommandRunner, osCommandRunner } from '../command.js';

export interface NftApplier {
  /** Runs the script with `nft -f -`: all of it commits, or none of it does. */
  run(script: string): Promise<void>;
  /** `nft -j list table` output (handles included), or undefined when the table does not exist. */
  listTable(family: string, name: string): Promise<unknown>;
  /** `nft -j list <what…>` (`chains bridge`, `map bridge T ports`), or undefined when it does not exist. */
  list(what: string[]): Promise<unknown>;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof CommandError && /No such file or directory/.test(err.stderr);
}

export class CommandNftApplier implements NftApplier {
  constructor(private readonly runner: CommandRunner = osCommandRunner) {}

  async run(script: string): Promise<void> {
    await this.runner.run(['nft', '-f', '-'], { input: script });
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
