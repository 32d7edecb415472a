import type { Command } from 'commander';
import { action, type CliContext } from '../context.js';
import { printJson, table } from '../output.js';

export function registerStatus(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description("show berthd's version, uptime, state dir and object counts")
    .action(
      action(ctx, async (flags) => {
        const s = await ctx.client(flags).status();
        if (flags.json) return printJson(ctx.io, s);
        ctx.io.out(`berthd ${s.version} on ${s.host_id} (pid ${s.pid}), up ${s.uptime.toFixed(1)} s`);
        ctx.io.out(
          table(
            ['', ''],
            [
              ['state dir', s.state_dir],
              ['socket', s.socket],
              ['config', s.config_source],
              ['networks', s.counts.networks],
              ['instances', s.counts.instances],
              ['leases', s.counts.leases],
            ],
          )
            .split('\n')
            .slice(1)
            .join('\n'),
        );
      }),
    );
}
