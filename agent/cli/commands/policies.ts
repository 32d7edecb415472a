import type { Command } from 'commander';
import type { Policy } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { printJson, table } from '../output.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function describe(p: Policy): string {
  return table(
    ['', ''],
    [
      ['name', p.name],
      ['description', p.description],
      ['identities', p.identities.join(', ')],
      ['allow', p.allow.join(', ') || undefined],
      ['deny', p.deny.join(', ') || undefined],
    ],
  )
    .split('\n')
    .slice(1)
    .join('\n');
}

export function registerPolicies(program: Command, ctx: CliContext): void {
  const policy = program
    .command('policy')
    .description(
      'identity permissions for the metadata service (without a matching policy a guest reads all of its own data)',
    );
  policy
    .command('list')
    .description('list policies')
    .action(
      action(ctx, async (flags) => {
        const { policies } = await ctx.client(flags).policies();
        if (flags.json) return printJson(ctx.io, policies);
        ctx.io.out(
          table(
            ['NAME', 'IDENTITIES', 'ALLOW', 'DENY'],
            policies.map((p) => [p.name, p.identities.join(','), p.allow.join(','), p.deny.join(',')]),
          ),
        );
      }),
    );
  policy
    .command('show <name>')
    .description('show one policy')
    .action(
      action(ctx, async (flags, name: string) => {
        const p = await ctx.client(flags).policy(name);
        if (flags.json) return printJson(ctx.io, p);
        ctx.io.out(describe(p));
      }),
    );
  policy
    .command('set <name>')
    .description(
      'create or replace a policy: berthctl policy set web-no-userdata --identity role:web --deny read:user-data',
    )
    .option(
      '--identity <id>',
      '* | instance:<id|name> | mac:<mac> | mac:<mac>/<bits> | image:<sha256> | role:<name> (repeatable)',
      collect,
    )
    .option(
      '--allow <perm>',
      'read:<resource> or write:<resource>, e.g. read:meta-data/* (repeatable)',
      collect,
    )
    .option('--deny <perm>', 'read:<resource> or write:<resource>, e.g. read:user-data (repeatable)', collect)
    .option('--description <text>', 'what the policy is for')
    .action(
      action(ctx, async (flags, name: string) => {
        const body: Policy = {
          name,
          identities: (flags.identity as string[] | undefined) ?? [],
          allow: (flags.allow as string[] | undefined) ?? [],
          deny: (flags.deny as string[] | undefined) ?? [],
          ...(flags.description ? { description: String(flags.description) } : {}),
        };
        const p = await ctx.client(flags).setPolicy(body);
        if (flags.json) return printJson(ctx.io, p);
        ctx.io.out(`policy ${p.name} set`);
      }),
    );
  policy
    .command('delete <name>')
    .description('delete a policy')
    .action(
      action(ctx, async (flags, name: string) => {
        await ctx.client(flags).deletePolicy(name);
        if (flags.json) return printJson(ctx.io, { deleted: name });
        ctx.io.out(`policy ${name} deleted`);
      }),
    );
}
