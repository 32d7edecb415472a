// berthctl instance notice / host notice: maintenance notices guests read at
// meta-data/events/maintenance/scheduled and /berth/events. One command per
// scope: with --maintenance (--drain) it schedules, with --cancel (--clear)
// it removes, with neither it lists, acknowledgements included.
import type { Command } from 'commander';
import type { Notice, NoticeCreate } from '../../client/client.js';
import { action, type CliContext } from '../context.js';
import { printJson, table, UsageError } from '../output.js';

function body(at: string, flags: Record<string, unknown>): NoticeCreate {
  return {
    at,
    ...(flags.until !== undefined ? { until: String(flags.until) } : {}),
    ...(flags.code !== undefined ? { code: String(flags.code) } : {}),
    ...(flags.description !== undefined ? { description: String(flags.description) } : {}),
  };
}

function printNotices(ctx: CliContext, notices: Notice[]): void {
  if (notices.length === 0) {
    ctx.io.out('no notices');
    return;
  }
  ctx.io.out(
    table(
      ['ID', 'SCOPE', 'CODE', 'NOT BEFORE', 'NOT AFTER', 'ACKNOWLEDGED', 'DESCRIPTION'],
      notices.map((n) => {
        const acks = Object.entries(n.acks).map(([i, a]) => `${i}@${a.at}`);
        return [
          n.id,
          n.scope,
          n.code,
          n.not_before,
          n.not_after,
          acks.join(',') || 'no',
          n.description || '-',
        ];
      }),
    ),
  );
}

const scheduleOptions = (cmd: Command) =>
  cmd
    .option('--until <at>', 'when it ends (NotAfter), ISO 8601; default two hours after the start')
    .option(
      '--code <code>',
      'instance-reboot, system-reboot, system-maintenance, instance-retirement or instance-stop',
    )
    .option('--description <text>', 'what the guest reads (one line, at most 255 characters)');

export function registerNotices(program: Command, ctx: CliContext): void {
  const instance = program.commands.find((c) => c.name() === 'instance');
  const host = program.commands.find((c) => c.name() === 'host');
  if (!instance || !host) throw new Error('berthctl: notices need the instance and host commands');
  scheduleOptions(
    instance
      .command('notice <name>')
      .description(
        'maintenance notices of an instance: --maintenance AT schedules one, --cancel ID removes it, neither lists',
      )
      .option('--maintenance <at>', 'schedule a notice starting at this time (ISO 8601 with a zone, future)')
      .option('--cancel <id>', 'cancel the notice with this id'),
  ).action(
    action(ctx, async (flags, name: string) => {
      const client = ctx.client(flags);
      if (flags.maintenance !== undefined && flags.cancel !== undefined)
        throw new UsageError('--maintenance and --cancel: give one of them');
      if (flags.maintenance !== undefined) {
        const n = await client.scheduleNotice(name, body(String(flags.maintenance), flags));
        if (flags.json) return printJson(ctx.io, n);
        return ctx.io.out(`notice ${n.id} for ${name}: ${n.code} ${n.not_before} to ${n.not_after}`);
      }
      if (flags.cancel !== undefined) {
        await client.cancelNotice(name, String(flags.cancel));
        if (flags.json) return printJson(ctx.io, { cancelled: String(flags.cancel) });
        return ctx.io.out(`notice ${String(flags.cancel)} cancelled`);
      }
      const list = await client.instanceNotices(name);
      if (flags.json) return printJson(ctx.io, list);
      printNotices(ctx, list.notices);
    }),
  );
  scheduleOptions(
    host
      .command('notice')
      .description(
        'host-wide drain notices, on every instance of this host until cleared: --drain AT schedules, --clear [ID] removes, neither lists',
      )
      .option('--drain <at>', 'schedule a drain starting at this time (ISO 8601 with a zone, future)')
      .option('--clear [id]', 'clear the drain with this id, or every drain without one'),
  ).action(
    action(ctx, async (flags) => {
      const client = ctx.client(flags);
      if (flags.drain !== undefined && flags.clear !== undefined)
        throw new UsageError('--drain and --clear: give one of them');
      if (flags.drain !== undefined) {
        const n = await client.scheduleDrain(body(String(flags.drain), flags));
        if (flags.json) return printJson(ctx.io, n);
        return ctx.io.out(`drain ${n.id}: ${n.code} ${n.not_before} to ${n.not_after}, on every instance`);
      }
      if (flags.clear !== undefined) {
        const ids =
          flags.clear === true
            ? (await client.hostNotices()).notices.map((n) => n.id)
            : [String(flags.clear)];
        for (const id of ids) await client.clearDrain(id);
        if (flags.json) return printJson(ctx.io, { cleared: ids });
        return ctx.io.out(ids.length ? `cleared ${ids.join(', ')}` : 'no drain to clear');
      }
      const list = await client.hostNotices();
      if (flags.json) return printJson(ctx.io, list);
      printNotices(ctx, list.notices);
    }),
  );
}
