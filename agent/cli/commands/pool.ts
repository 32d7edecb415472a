import type { Command } from 'commander';
import { action, type CliContext } from '../context.js';
import { printJson, table } from '../output.js';

export function registerPool(program: Command, ctx: CliContext): void {
  program
    .command('pool')
    .description('the MAC pool')
    .command('show')
    .description('show MAC pool usage')
    .action(
      action(ctx, async (flags) => {
        const usage = await ctx.client(flags).pool();
        if (flags.json) return printJson(ctx.io, usage);
        ctx.io.out(
          table(
            ['PREFIX', 'SIZE', 'ASSIGNED', 'QUARANTINED', 'FREE'],
            usage.pools.map((p) => [p.prefix, p.size, p.assigned, p.quarantined, p.free]),
          ),
        );
      }),
    );
}
