import type { Command } from 'commander';
import type { Instance } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { printJson, table, UsageError } from '../output.js';
import {
  addMetadataOptions,
  addMetadataUpdateOptions,
  metadataInputs,
  metadataPatch,
} from './instance-inputs.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

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
      ['image', i.image ? `${i.image} sha256 ${i.image_sha256}` : undefined],
      ['domain', i.domain],
      ['console log', i.console_log],
      ['size', i.vcpus !== undefined ? `${i.vcpus} vcpu, ${i.memory_mib} MiB` : undefined],
      ['created', i.created_at],
      ['role', i.role],
      ['secgroups', i.secgroups?.join(', ') || 'none (receives everything the guard passes)'],
      ['tokens', i.tokens],
      ['metadata version', i.metadata_version !== undefined ? String(i.metadata_version) : undefined],
      ['ssh keys', i.ssh_keys?.map((k) => k.name).join(', ') || undefined],
      [
        'meta',
        Object.entries(i.meta ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(', ') || undefined,
      ],
      ['user-data', i.user_data ? `${i.user_data.bytes} bytes, sha256 ${i.user_data.sha256}` : undefined],
      [
        'vendor-data',
        i.vendor_data ? `${i.vendor_data.bytes} bytes, sha256 ${i.vendor_data.sha256}` : undefined,
      ],
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
  addMetadataOptions(
    instance
      .command('create <name>')
      .description('create an instance: MAC and IP from the pools, guard, then the port')
      .requiredOption('--network <name>', 'network for its NIC')
      .option('--runtime <runtime>', 'netns or libvirt', 'netns')
      .option('--image <name>', 'image name or sha256 (libvirt runtime)')
      .option('--vcpus <n>', 'virtual CPUs (libvirt runtime)', (v) => Number.parseInt(v, 10))
      .option('--memory <mib>', 'memory in MiB (libvirt runtime)', (v) => Number.parseInt(v, 10))
      .option('--secgroup <name>', 'security group to join (repeatable)', collect),
  ).action(
    action(ctx, async (flags, name: string) => {
      const runtime = String(flags.runtime);
      if (runtime !== 'netns' && runtime !== 'libvirt')
        throw new UsageError(`--runtime: "${runtime}" is not one of netns, libvirt`);
      if (runtime === 'libvirt' && !flags.image)
        throw new UsageError('--image: the libvirt runtime needs an image');
      const i = await ctx.client(flags).createInstance({
        name,
        network: String(flags.network),
        runtime,
        ...(flags.image ? { image: String(flags.image) } : {}),
        ...(flags.vcpus !== undefined ? { vcpus: Number(flags.vcpus) } : {}),
        ...(flags.memory !== undefined ? { memory_mib: Number(flags.memory) } : {}),
        ...metadataInputs(flags),
        ...(flags.secgroup ? { secgroups: flags.secgroup as string[] } : {}),
      });
      if (flags.json) return printJson(ctx.io, i);
      ctx.io.out(
        `instance ${i.name} (${i.id}) ${i.state}: ${i.nics.map((n) => `${n.mac} ${n.ip} on ${n.port}`).join(', ')}`,
      );
    }),
  );
  addMetadataUpdateOptions(
    instance
      .command('update <name>')
      .description(
        'change an instance: berthctl instance update db1 --secgroup db --meta env=prod --unset-meta old',
      )
      .option('--secgroup <name>', 'the new list of security groups, replacing the old (repeatable)', collect)
      .option(
        '--no-secgroups',
        'leave every security group (the guest receives everything the guard passes)',
      ),
  ).action(
    action(ctx, async (flags, name: string) => {
      const groups = flags.secgroup as string[] | undefined;
      // commander: --no-secgroups sets secgroups false; it defaults to true.
      const none = flags.secgroups === false;
      if (groups && none) throw new UsageError('--secgroup and --no-secgroups: give one of them');
      const metadata = metadataPatch(flags);
      const sg = groups || none;
      if (!sg && Object.keys(metadata).length === 0)
        throw new UsageError(
          'nothing to update: give --secgroup NAME, --no-secgroups or a metadata flag (--meta, --user-data, --role, ...)',
        );
      const i = await ctx.client(flags).updateInstance(name, {
        ...metadata,
        ...(sg ? { secgroups: none ? [] : (groups ?? []) } : {}),
      });
      if (flags.json) return printJson(ctx.io, i);
      if (sg) ctx.io.out(`instance ${i.name} secgroups: ${i.secgroups?.join(', ') || 'none'}`);
      if (Object.keys(metadata).length > 0)
        ctx.io.out(`instance ${i.name} metadata version ${i.metadata_version ?? 1}`);
    }),
  );
  instance
    .command('list')
    .description('list instances')
    .option('--all-hosts', "every host's instances, from the cluster directory (by host, then name)")
    .action(
      action(ctx, async (flags) => {
        if (flags.allHosts) {
          const { instances } = await ctx.client(flags).directory();
          if (flags.json) return printJson(ctx.io, instances);
          ctx.io.out(
            table(
              ['HOST', 'NAME', 'ID', 'NETWORK', 'MAC', 'IP', 'ROLE', 'SECGROUPS'],
              instances.map((i) => [
                i.host,
                i.name,
                i.id,
                i.nics.map((n) => n.network).join(','),
                i.nics.map((n) => n.mac).join(','),
                i.nics.map((n) => n.ip).join(','),
                i.role,
                i.secgroups?.join(','),
              ]),
            ),
          );
          return;
        }
        const { instances } = await ctx.client(flags).instances();
        if (flags.json) return printJson(ctx.io, instances);
        ctx.io.out(
          table(
            ['NAME', 'ID', 'STATE', 'RUNTIME', 'NETWORK', 'MAC', 'IP', 'SECGROUPS'],
            instances.map((i) => [
              i.name,
              i.id,
              i.state,
              i.runtime,
              i.nics[0]?.network,
              i.nics[0]?.mac,
              i.nics[0]?.ip,
              i.secgroups?.join(','),
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
  const power = (verb: 'start' | 'stop' | 'reboot', description: string) =>
    instance.command(`${verb} <name>`).description(description);
  power('start', 'start a stopped libvirt instance (its image is verified again)').action(
    action(ctx, async (flags, name: string) => {
      const i = await ctx.client(flags).startInstance(name);
      if (flags.json) return printJson(ctx.io, i);
      ctx.io.out(`instance ${i.name} ${i.state}`);
    }),
  );
  power('stop', 'stop a libvirt instance: ACPI shutdown, then destroy after --timeout seconds')
    .option(
      '--timeout <seconds>',
      'seconds to wait for the guest before pulling the plug',
      (v) => Number.parseInt(v, 10),
      20,
    )
    .action(
      action(ctx, async (flags, name: string) => {
        const i = await ctx.client(flags).stopInstance(name, Number(flags.timeout));
        if (flags.json) return printJson(ctx.io, i);
        ctx.io.out(`instance ${i.name} ${i.state}`);
      }),
    );
  power('reboot', 'reboot a libvirt instance (starts it when stopped)').action(
    action(ctx, async (flags, name: string) => {
      const i = await ctx.client(flags).rebootInstance(name);
      if (flags.json) return printJson(ctx.io, i);
      ctx.io.out(`instance ${i.name} ${i.state}`);
    }),
  );
}
