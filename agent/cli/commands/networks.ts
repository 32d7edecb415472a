import type { Command } from 'commander';
import type { Network, NetworkCreate } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { printJson, table, UsageError } from '../output.js';

function int(flag: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`${flag}: "${String(value)}" is not an integer`);
  return n;
}

function describe(n: Network): string {
  const drops = n.guard_drops.filter((d) => d.packets > 0);
  return [
    table(
      ['', ''],
      [
        ['name', n.name],
        ['subnet', n.subnet],
        ['gateway', n.gateway ?? undefined],
        ['vlan', n.vlan === null ? undefined : `${n.vlan} on ${n.uplink}`],
        [
          'uplink',
          n.uplink === null
            ? undefined
            : `${n.uplink} (${n.vlan === null ? 'flat, untagged' : `tagged ${n.vlan}`})`,
        ],
        ['mtu', n.mtu],
        ['dns', n.dns.join(', ') || undefined],
        ['domain', n.domain ?? undefined],
        ['bridge', n.bridge],
        ['endpoint', `${n.endpoint} (${n.service_ip}, 169.254.169.254)`],
        ['IPs', `${n.ips.assigned} assigned, ${n.ips.quarantined} in quarantine, ${n.ips.free} free`],
      ],
    )
      .split('\n')
      .slice(1)
      .join('\n'),
    drops.length === 0
      ? 'guard drops: none'
      : `guard drops:\n${table(
          ['PORT', 'REASON', 'PACKETS', 'BYTES'],
          drops.map((d) => [d.port, d.reason, d.packets, d.bytes]),
        )}`,
  ].join('\n');
}

export function registerNetworks(program: Command, ctx: CliContext): void {
  const network = program.command('network').description('bridges, VLANs and the per-network endpoint');
  network
    .command('create <name>')
    .description('create a network: its bridge, endpoint namespace and guard')
    .requiredOption('--subnet <cidr>', 'IPv4 subnet, e.g. 10.0.0.0/24')
    .option('--gateway <ip>', 'router handed to guests')
    .option('--vlan <id>', '802.1Q VLAN ID (1..4094); needs --uplink')
    .option(
      '--uplink <iface>',
      'host interface to the physical network: the VLAN trunk, or without --vlan a flat (untagged) port of the bridge',
    )
    .option('--mtu <n>', 'MTU (default 1500)')
    .option('--dns <ips>', 'comma-separated DNS servers')
    .option('--domain <domain>', 'DNS domain handed to guests')
    .action(
      action(ctx, async (flags, name: string) => {
        const body: NetworkCreate = { name, subnet: String(flags.subnet) };
        if (flags.gateway !== undefined) body.gateway = String(flags.gateway);
        const vlan = int('--vlan', flags.vlan);
        if (vlan !== undefined) body.vlan = vlan;
        if (flags.uplink !== undefined) body.uplink = String(flags.uplink);
        const mtu = int('--mtu', flags.mtu);
        if (mtu !== undefined) body.mtu = mtu;
        if (flags.dns !== undefined) body.dns = String(flags.dns).split(',').filter(Boolean);
        if (flags.domain !== undefined) body.domain = String(flags.domain);
        const n = await ctx.client(flags).createNetwork(body);
        if (flags.json) return printJson(ctx.io, n);
        ctx.io.out(`network ${n.name} created on bridge ${n.bridge}`);
      }),
    );
  network
    .command('list')
    .description('list networks')
    .action(
      action(ctx, async (flags) => {
        const { networks } = await ctx.client(flags).networks();
        if (flags.json) return printJson(ctx.io, networks);
        ctx.io.out(
          table(
            ['NAME', 'SUBNET', 'GATEWAY', 'VLAN', 'UPLINK', 'BRIDGE', 'IPS USED', 'SOURCE'],
            networks.map((n) => [
              n.name,
              n.subnet,
              n.gateway ?? undefined,
              n.vlan ?? undefined,
              n.uplink ?? undefined,
              n.bridge,
              `${n.ips.assigned}/${n.ips.size}`,
              n.source,
            ]),
          ),
        );
      }),
    );
  network
    .command('show <name>')
    .description('show one network, with guard drops per port and reason')
    .action(
      action(ctx, async (flags, name: string) => {
        const n = await ctx.client(flags).network(name);
        if (flags.json) return printJson(ctx.io, n);
        ctx.io.out(describe(n));
      }),
    );
  network
    .command('delete <name>')
    .description('delete a network (refused while instances use it)')
    .action(
      action(ctx, async (flags, name: string) => {
        await ctx.client(flags).deleteNetwork(name);
        if (flags.json) return printJson(ctx.io, { deleted: name });
        ctx.io.out(`network ${name} deleted`);
      }),
    );
}
