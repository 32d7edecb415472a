import type { Command } from 'commander';
import type { Instance } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { NotImplementedError, printJson, table, UsageError } from '../output.js';

function describe(i: Instance): string {
  const head = table(
    ['', ''],
    [
      ['name', i.name],
      ['id', i.id],
      ['uuid', i.uuid],
      ['state', i.state],
      ['runtime', i.runtime],
      ['netns', i.netns],
      ['created', i.created_at],
    ],
  )
    .split('\n')
    .slice(1)
    .join('\n');
  return `${head}\n${table(
    ['NETWORK', 'MAC', 'IP', 'PORT'],
    i.nics.map((n) => [n.network, n.mac, n.ip, n.port]),
  )}`;
}

export function registerInstances(program: Command, ctx: CliContext): void {
  const instance = program
    .command('instance')
    .description('guests (netns runtime now; libvirt with compute)');
  instance
    .command('create <name>')
    .description('create an instance: MAC and IP from the pools, guard, then the port')
    .requiredOption('--network <name>', 'network for its NIC')
    .option('--runtime <runtime>', 'netns or libvirt', 'netns')
    .action(
      action(ctx, async (flags, name: string) => {
        const runtime = String(flags.runtime);
        if (runtime !== 'netns' && runtime !== 'libvirt')
          throw new UsageError(`--runtime: "${runtime}" is not one of netns, libvirt`);
        const i = await ctx.client(flags).createInstance({ name, network: String(flags.network), runtime });
        if (flags.json) return printJson(ctx.io, i);
        ctx.io.out(
          `instance ${i.name} (${i.id}) ${i.state}: ${i.nics.map((n) => `${n.mac} ${n.ip} on ${n.port}`).join(', ')}`,
        );
      }),
    );
  instance
    .command('list')
    .description('list instances')
    .action(
      action(ctx, async (flags) => {
        const { instances } = await ctx.client(flags).instances();
        if (flags.json) return printJson(ctx.io, instances);
        ctx.io.out(
          table(
            ['NAME', 'ID', 'STATE', 'RUNTIME', 'NETWORK', 'MAC', 'IP'],
            instances.map((i) => [
              i.name,
              i.id,
              i.state,
              i.runtime,
              i.nics[0]?.network,
              i.nics[0]?.mac,
              i.nics[0]?.ip,
            ]),
          ),
        );
      }),
    );
  instance
    .command('show <name>')
    .description('show one instance')
    .action(
      action(ctx, async (flags, name: string) => {
        const i = await ctx.client(flags).instance(name);
        if (flags.json) return printJson(ctx.io, i);
        ctx.io.out(describe(i));
      }),
    );
  instance
    .command('delete <name>')
    .description('delete an instance; its MAC and IP go into quarantine')
    .action(
      action(ctx, async (flags, name: string) => {
        await ctx.client(flags).deleteInstance(name);
        if (flags.json) return printJson(ctx.io, { deleted: name });
        ctx.io.out(`instance ${name} deleted`);
      }),
    );
  instance
    .command('exec <name> <argv...>')
    .description('run a command inside a netns instance: berthctl instance exec g1 -- ip addr')
    .action(
      action(ctx, async (flags, name: string, argv: string[]) => {
        const r = await ctx.client(flags).exec(name, argv);
        if (flags.json) return printJson(ctx.io, r);
        if (r.stdout) ctx.io.out(r.stdout);
        if (r.stderr) ctx.io.err(r.stderr);
        ctx.exitCode = r.code === 0 ? 0 : 1;
      }),
    );
  for (const verb of ['start', 'stop', 'reboot']) {
    instance
      .command(`${verb} <name>`)
      .description(`${verb} an instance (libvirt runtime; not implemented yet)`)
      .action(
        action(ctx, async () => {
          throw new NotImplementedError(`berthctl instance ${verb}`);
        }),
      );
  }
}
