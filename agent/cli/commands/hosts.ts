// `host list` and `host forget`, and `cluster status`: the cluster as an
// operator sees it. Each answers in single-host mode too.
import type { Command } from 'commander';
import type { ClusterStatusAnswer } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { printJson, table } from '../output.js';

/** A fingerprint short enough for a table and long enough to compare by eye. */
const short = (fp: string) => `${fp.slice(0, 16)}…`;

export function registerHosts(program: Command, ctx: CliContext): void {
  const host = program.command('host').description('hosts of the cluster (this host alone without one)');
  host
    .command('list')
    .description('list hosts: address, key fingerprint, alive or lost, instance count')
    .option('--all', 'include forgotten hosts')
    .action(
      action(ctx, async (flags) => {
        const list = await ctx.client(flags).hosts(flags.all === true);
        if (flags.json) return printJson(ctx.io, list);
        ctx.io.out(
          table(
            ['ID', 'ADDRESS', 'FINGERPRINT', 'STATE', 'INSTANCES', 'REGISTERED', 'VERSION'],
            list.hosts.map((h) => [
              h.id === list.self ? `${h.id} (this host)` : h.id,
              h.address,
              short(h.fingerprint),
              h.state,
              h.instances,
              h.registered_at,
              h.version,
            ]),
          ),
        );
        if (list.mode === 'single-host') ctx.io.out('single-host mode (no cluster: block in berthd.yaml)');
      }),
    );
  host
    .command('forget <host>')
    .description(
      'forget a lost host: its instances leave the directory, their MACs and IPs go into quarantine (never freed otherwise); refused while it is alive',
    )
    .action(
      action(ctx, async (flags, id: string) => {
        const r = await ctx.client(flags).forgetHost(id);
        if (flags.json) return printJson(ctx.io, r);
        if (r.already) return ctx.io.out(`host ${r.host} was forgotten already (at ${r.forgotten_at})`);
        ctx.io.out(
          `host ${r.host} forgotten: ${r.instances.length} instance(s) removed from the directory, ${r.quarantined.length} MAC/IP record(s) quarantined`,
        );
        if (r.left_alone.length > 0) ctx.io.out(`left alone (changed meanwhile): ${r.left_alone.join(', ')}`);
      }),
    );

  const cluster = program.command('cluster').description('the cluster store (etcd) and this host’s watch');
  cluster
    .command('status')
    .description("etcd members, leader, revision, size, and this host's watch lag")
    .action(
      action(ctx, async (flags) => {
        const s = await ctx.client(flags).clusterStatus();
        if (flags.json) return printJson(ctx.io, s);
        ctx.io.out(describeStatus(s));
      }),
    );
}

function describeStatus(s: ClusterStatusAnswer): string {
  if (s.mode === 'single-host')
    return `single-host mode: host ${s.host_id} keeps its state in its own store (no cluster: block in berthd.yaml)`;
  const e = s.etcd;
  const w = s.watch;
  const lines = [`cluster mode, host ${s.host_id}`, `etcd endpoints: ${e?.endpoints.join(', ') ?? '-'}`];
  if (e?.error) lines.push(`etcd: unreachable: ${e.error}`);
  else if (e) {
    lines.push(
      `etcd ${e.version}, revision ${e.revision}, db ${e.db_size_bytes} bytes, leader ${e.leader ?? 'none'}`,
      table(
        ['MEMBER', 'ID', 'CLIENT URLS', 'LEADER'],
        (e.members ?? []).map((m) => [m.name, m.id, m.client_urls.join(','), m.leader ? 'yes' : '']),
      ),
    );
  }
  if (w)
    lines.push(
      `watch: ${w.state}, applied revision ${w.applied_revision}, lag ${w.lag_revisions ?? '?'} revision(s), last event ${w.ms_since_last_event === undefined ? 'never' : `${w.ms_since_last_event} ms ago`}`,
    );
  return lines.join('\n');
}
