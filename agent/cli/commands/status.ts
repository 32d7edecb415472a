import type { Command } from 'commander';
import type { Status } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { printJson, table } from '../output.js';

function endpointSummary(s: Status): string {
  const ready = s.endpoints.filter((e) => e.ready).length;
  const adopted = s.endpoints.filter((e) => e.adopted).length;
  const waiting = s.endpoints.filter((e) => !e.ready).map((e) => e.network);
  return `${ready} of ${s.endpoints.length} ready, ${adopted} adopted${waiting.length ? `; not ready: ${waiting.join(', ')}` : ''}`;
}

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
              ['endpoints', endpointSummary(s)],
              ...(s.orphan_domains.length
                ? [['orphan domains', s.orphan_domains.join(', ')] as [string, string]]
                : []),
            ],
          )
            .split('\n')
            .slice(1)
            .join('\n'),
        );
      }),
    );
}
