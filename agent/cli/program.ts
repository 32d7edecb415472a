// berthctl's command tree. Exit codes: 0 ok, 1 refused, 2 bad usage,
// 3 berthd unreachable or the feature not there yet.
import { Command, CommanderError } from 'commander';
import { BerthClient } from '../client/client.js';
import { registerAudit } from './commands/audit.js';
import { registerHosts } from './commands/hosts.js';
import { registerIdentity } from './commands/identity.js';
import { registerImages } from './commands/images.js';
import { registerInstances } from './commands/instances.js';
import { registerLeases } from './commands/leases.js';
import { registerNetworks } from './commands/networks.js';
import { registerNotices } from './commands/notices.js';
import { registerPolicies } from './commands/policies.js';
import { registerPool } from './commands/pool.js';
import { registerSecgroups } from './commands/secgroups.js';
import { registerStatus } from './commands/status.js';
import type { CliContext } from './context.js';
import { EXIT, type Io } from './output.js';

export function buildProgram(ctx: CliContext, version: string): Command {
  const program = new Command('berthctl')
    .description('control berthd, the berth host agent, over its admin socket')
    .version(version)
    .option('--socket <path>', 'admin socket (env BERTH_SOCKET, default /run/berth/berthd.sock)')
    .option('--json', 'print machine-readable JSON')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.io.out(s.trimEnd()), writeErr: (s) => ctx.io.err(s.trimEnd()) });
  registerStatus(program, ctx);
  registerAudit(program, ctx);
  registerNetworks(program, ctx);
  registerInstances(program, ctx);
  registerPool(program, ctx);
  registerLeases(program, ctx);
  registerPolicies(program, ctx);
  registerSecgroups(program, ctx);
  registerImages(program, ctx);
  registerHosts(program, ctx);
  registerIdentity(program, ctx);
  registerNotices(program, ctx);
  // Subcommands inherit exit handling so usage errors anywhere exit 2.
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

export async function runCli(argv: string[], io: Io, version: string): Promise<number> {
  const ctx: CliContext = {
    io,
    client: (flags) => new BerthClient(flags.socket || process.env.BERTH_SOCKET || undefined),
    exitCode: EXIT.ok,
  };
  const program = buildProgram(ctx, version);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; every other parse failure is bad usage.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    throw err;
  }
  return ctx.exitCode;
}
