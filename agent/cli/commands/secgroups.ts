// berthctl secgroup: security groups, named sets of ACCEPT rules by the
// sender's identity (role, group, instance, image) or a CIDR.
import type { Command } from 'commander';
import type { SecGroupDetail, SecGroupRule } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { printJson, table, UsageError } from '../output.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function gid(text: string): number {
  if (!/^\d{1,10}$/.test(text)) throw new UsageError(`--join-gid: "${text}" is not a numeric gid`);
  return Number(text);
}

export function portsText(r: Pick<SecGroupRule, 'ports'>): string | undefined {
  if (!r.ports) return undefined;
  return r.ports.from === r.ports.to ? String(r.ports.from) : `${r.ports.from}-${r.ports.to}`;
}

function portsTable(g: SecGroupDetail): string {
  if (g.ports.length === 0) return 'no member port on this host';
  return table(
    ['INSTANCE', 'PORT', 'COUNTER', 'PACKETS', 'BYTES'],
    g.ports.flatMap((p) => [
      ...p.rules.map((r) => [p.instance, p.port, `${r.id} accepted`, r.packets, r.bytes]),
      [p.instance, p.port, 'dropped', p.dropped.packets, p.dropped.bytes],
      [p.instance, p.port, 'invalid', p.invalid.packets, p.invalid.bytes],
    ]),
  );
}

function describe(g: SecGroupDetail): string {
  const head = table(
    ['', ''],
    [
      ['name', g.name],
      ['description', g.description],
      ['join gids', g.join_gids?.join(', ') || 'any caller of the admin socket'],
      ['created', g.created_at],
      ['updated', g.updated_at],
    ],
  )
    .split('\n')
    .slice(1)
    .join('\n');
  const rules =
    g.rules.length === 0
      ? 'no rules: members receive only replies to their own connections and platform traffic'
      : table(
          ['RULE', 'PROTO', 'PORT', 'FROM'],
          g.rules.map((r) => [r.id, r.proto, portsText(r), r.from]),
        );
  return `${head}\n${rules}\n\nmember ports on this host (drops count everything the port refused):\n${portsTable(g)}`;
}

export function registerSecgroups(program: Command, ctx: CliContext): void {
  const sg = program
    .command('secgroup')
    .description(
      'security groups: ACCEPT rules by identity; a guest in a group receives only what its groups accept',
    );
  sg.command('create <name>')
    .description('create a group (the same create again is a no-op)')
    .option('--description <text>', 'what the group is for')
    .option(
      '--join-gid <gid>',
      'only root or a caller with this gid may put instances in or out of the group (repeatable)',
      collect,
    )
    .action(
      action(ctx, async (flags, name: string) => {
        const gids = ((flags.joinGid as string[] | undefined) ?? []).map(gid);
        const g = await ctx.client(flags).createSecgroup({
          name,
          ...(flags.description ? { description: String(flags.description) } : {}),
          ...(gids.length > 0 ? { join_gids: gids } : {}),
        });
        if (flags.json) return printJson(ctx.io, g);
        ctx.io.out(`secgroup ${g.name} created`);
      }),
    );
  sg.command('delete <name>')
    .description('delete a group; refused while an instance is in it or another group admits it')
    .action(
      action(ctx, async (flags, name: string) => {
        await ctx.client(flags).deleteSecgroup(name);
        if (flags.json) return printJson(ctx.io, { deleted: name });
        ctx.io.out(`secgroup ${name} deleted`);
      }),
    );
  sg.command('list')
    .description('list groups')
    .action(
      action(ctx, async (flags) => {
        const { secgroups } = await ctx.client(flags).secgroups();
        if (flags.json) return printJson(ctx.io, secgroups);
        ctx.io.out(
          table(
            ['NAME', 'RULES', 'JOIN GIDS', 'DESCRIPTION'],
            secgroups.map((g) => [g.name, g.rules.length, g.join_gids?.join(','), g.description]),
          ),
        );
      }),
    );
  sg.command('show <name>')
    .description("show a group, its rules and its members' ports on this host with their counters")
    .action(
      action(ctx, async (flags, name: string) => {
        const g = await ctx.client(flags).secgroup(name);
        if (flags.json) return printJson(ctx.io, g);
        ctx.io.out(describe(g));
      }),
    );
  const rule = sg.command('rule').description('rules of a group (all ACCEPT; groups compose)');
  rule
    .command('add <name>')
    .description('berthctl secgroup rule add db --proto tcp --port 3306 --from role:webapp')
    .requiredOption('--proto <proto>', 'tcp, udp, icmp or any')
    .option('--port <P[-Q]>', 'destination port or range (tcp and udp only)')
    .requiredOption(
      '--from <source>',
      'role:<name> | group:<name> | instance:<id|name> | image:<sha256> | an IPv4 CIDR',
    )
    .action(
      action(ctx, async (flags, name: string) => {
        const proto = String(flags.proto);
        if (!['tcp', 'udp', 'icmp', 'any'].includes(proto))
          throw new UsageError(`--proto: "${proto}" is not one of tcp, udp, icmp, any`);
        const r = await ctx.client(flags).addSecgroupRule(name, {
          proto: proto as SecGroupRule['proto'],
          ...(flags.port !== undefined ? { port: String(flags.port) } : {}),
          from: String(flags.from),
        });
        if (flags.json) return printJson(ctx.io, r);
        const port = portsText(r);
        ctx.io.out(`rule ${r.id} in ${name}: ${r.proto}${port ? ` ${port}` : ''} from ${r.from}`);
      }),
    );
  rule
    .command('delete <name> <rule-id>')
    .description('delete a rule by its id (see secgroup show)')
    .action(
      action(ctx, async (flags, name: string, id: string) => {
        const r = await ctx.client(flags).deleteSecgroupRule(name, id);
        if (flags.json) return printJson(ctx.io, { deleted: r });
        ctx.io.out(`rule ${r.id} deleted from ${name}`);
      }),
    );
  // Usage errors exit 2 here too (program.ts handles only two levels).
  for (const sub of rule.commands) sub.exitOverride();
}
