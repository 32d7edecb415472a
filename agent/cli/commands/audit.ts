import type { Command } from 'commander';
import type { AuditFollowQuery, AuditQuery, AuditRecord } from '../../api/types.js';
import type { BerthClient } from '../../client/client.js';
import { action, type CliContext } from '../context.js';
import { printJson, table, UsageError } from '../output.js';

const HEADERS = ['SEQ', 'TIME', 'EVENT', 'OUTCOME', 'WHO', 'REASON'];
const cells = (r: AuditRecord) => [
  r.seq,
  r.time,
  r.event,
  r.outcome,
  [
    r.peer ? `uid=${r.peer.uid} gid=${r.peer.gid} pid=${r.peer.pid}` : undefined,
    r.instance,
    r.mac,
    r.port,
    r.ip,
  ]
    .filter(Boolean)
    .join(' ') || r.path,
  r.reason,
];

/**
 * `audit --follow`: the newest records (as without --follow) or those after
 * --after, then every new one as it is written, until SIGINT or SIGTERM.
 * Rows are not padded to a common width: the next row is not known yet.
 */
async function follow(ctx: CliContext, client: BerthClient, query: AuditQuery, json: boolean): Promise<void> {
  const filters: AuditFollowQuery = {};
  if (query.outcome !== undefined) filters.outcome = query.outcome;
  if (query.event !== undefined) filters.event = query.event;
  const print = (r: AuditRecord) =>
    ctx.io.out(
      json
        ? JSON.stringify(r)
        : cells(r)
            .map((c) => (c === undefined ? '-' : String(c)))
            .join('  '),
    );
  let after = query.after;
  if (!json) ctx.io.out(HEADERS.join('  '));
  if (after === undefined) {
    const { records } = await client.audit({ ...filters, limit: query.limit ?? 10 });
    records.forEach(print);
    after = records.at(-1)?.seq ?? 0;
  }
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    for await (const r of client.followAudit({ ...filters, after }, abort.signal)) print(r);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

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
    .description(
      'show the audit log: every refusal and admin change, with who (MAC, port, IP; uid, gid, pid) and why',
    )
    .option('--limit <n>', 'newest N records (default 100)')
    .option('--after <seq>', 'records after this sequence number, oldest first')
    .option('--outcome <outcome>', 'refused, allowed or info')
    .option('--event <event>', 'only this event, e.g. dhcp.discover')
    .option('--follow', 'keep printing new records as they are written, until Ctrl-C (JSON: one per line)')
    .action(
      action(ctx, async (flags) => {
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
        if (flags.follow) return follow(ctx, ctx.client(flags), query, flags.json === true);
        const { records } = await ctx.client(flags).audit(query);
        if (flags.json) return printJson(ctx.io, records);
        ctx.io.out(table(HEADERS, records.map(cells)));
      }),
    );
}
