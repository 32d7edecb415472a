import type { Command } from 'commander';
import { action, type CliContext } from '../context.js';
import { printJson, table } from '../output.js';

export function registerLeases(program: Command, ctx: CliContext): void {
  program
    .command('lease')
    .description('DHCP leases')
    .command('list')
    .description('list DHCP leases: MAC, IP, instance, expiry, state')
    .option('--network <name>', 'only this network')
    .action(
      action(ctx, async (flags) => {
        const network = flags.network === undefined ? undefined : String(flags.network);
        const { leases } = await ctx.client(flags).leases(network);
        if (flags.json) return printJson(ctx.io, leases);
        ctx.io.out(
          table(
            ['NETWORK', 'MAC', 'IP', 'INSTANCE', 'EXPIRES', 'STATE'],
            leases.map((l) => [l.network, l.mac, l.ip, l.instance_name ?? l.instance, l.expires, l.state]),
          ),
        );
      }),
    );
}
