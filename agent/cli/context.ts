import type { Command } from 'commander';
import type { BerthClient } from '../client/client.js';
import { type Io, reportError } from './output.js';

export interface GlobalFlags {
  socket?: string;
  json?: boolean;
}

export interface CliContext {
  io: Io;
  /** Makes the client for the socket named by --socket, BERTH_SOCKET or the default. */
  client(flags: GlobalFlags): BerthClient;
  exitCode: number;
}

/** Wraps a command action: passes the merged flags, turns errors into output and an exit code. */
export function action<A extends unknown[]>(
  ctx: CliContext,
  fn: (flags: GlobalFlags & Record<string, unknown>, ...args: A) => Promise<void>,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const flags = cmd.optsWithGlobals<GlobalFlags & Record<string, unknown>>();
    try {
      await fn(flags, ...(args.slice(0, -2) as A));
    } catch (err) {
      ctx.exitCode = reportError(ctx.io, err, flags.json === true);
    }
  };
}
