import type { Command } from 'commander';
import type { AuditQuery } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { NotImplementedError, printJson, table, UsageError } from '../output.js';

function positiveInt(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`${name}: "${String(value)}" is not a non-negative integer`);
  return n;
}

export function registerAudit(program: Command, ctx: CliContext): void {
  program
    .command('audit')
    .description('show the audit log: every refusal, with who (MAC, port, IP) and why')
    .option('--limit <n>', 'newest N records (default 100)')
    .option('--after <seq>', 'records after this sequence number, oldest first')
    .option('--outcome <outcome>', 'refused, allowed or info')
    .option('--event <event>', 'only this event, e.g. dhcp.discover')
    .option('--follow', 'keep printing new records')
    .action(
      action(ctx, async (flags) => {
        if (flags.follow) throw new NotImplementedError('berthctl audit --follow');
        const outcome = flags.outcome as string | undefined;
        if (outcome !== undefined && !['refused', 'allowed', 'info'].includes(outcome)) {
          throw new UsageError(`--outcome: "${outcome}" is not one of refused, allowed, info`);
        }
        const query: AuditQuery = {};
        const limit = positiveInt('--limit', flags.limit);
        const after = positiveInt('--after', flags.after);
        if (limit !== undefined) query.limit = limit;
        if (after !== undefined) query.after = after;
        if (outcome !== undefined) query.outcome = outcome as AuditQuery['outcome'];
        if (flags.event !== undefined) query.event = String(flags.event);
        const { records } = await ctx.client(flags).audit(query);
        if (flags.json) return printJson(ctx.io, records);
        ctx.io.out(
          table(
            ['SEQ', 'TIME', 'EVENT', 'OUTCOME', 'WHO', 'REASON'],
            records.map((r) => [
              r.seq,
              r.time,
              r.event,
              r.outcome,
              [r.instance, r.mac, r.port, r.ip].filter(Boolean).join(' ') || r.path,
              r.reason,
            ]),
          ),
        );
      }),
    );
}
