// Acceptance (DHCP): real clients in netns guests get exactly the instance's
// fixed IP and the network's options from berthd's DHCP server, and the
// leases show in `berthctl lease list`.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Lease } from '../../agent/api/types.js';
import {
  Background,
  dhclientScript,
  NET_CONFIG,
  startDhcpLab,
  udhcpcOnce,
  udhcpcScript,
} from '../helpers/dhcp_lab.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

t.test('udhcpc gets the fixed IP, mask, router, DNS, MTU, hostname and the 121 routes', async (t) => {
  const lab = await startDhcpLab(t, [NET_CONFIG('a', 71)]);
  const g = await lab.guest('web1', 'a', { address: false });
  const script = await udhcpcScript(t);
  const r = await udhcpcOnce(lab, 'web1', script);
  t.equal(r.code, 0, `udhcpc got a lease: ${r.stderr}`);
  t.match(r.got, {
    event: 'bound',
    ip: g.ip,
    mask: '24',
    subnet: '255.255.255.0',
    router: '10.71.0.1',
    dns: '10.71.0.1 9.9.9.9',
    domain: 'dhcp.test',
    mtu: '1400',
    hostname: 'web1',
    staticroutes: '169.254.169.254/32 0.0.0.0 0.0.0.0/0 10.71.0.1',
    lease: '3600',
    serverid: '10.71.0.254',
  });
  const routes = await lab.execOk('web1', ['ip', '-4', 'route', 'show']);
  t.match(routes, /^169\.254\.169\.254 dev eth0 scope link/m, 'ip route shows the metadata route');
  t.match(routes, /^default via 10\.71\.0\.1 dev eth0/m, 'and the default route from 121');
  const addr = await lab.execOk('web1', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
  t.match(addr, new RegExp(`inet ${g.ip.replaceAll('.', '\\.')}/24`), 'eth0 carries the fixed IP');
  t.match(await lab.execOk('web1', ['ip', 'link', 'show', 'eth0']), /mtu 1400/);
  t.ok(await lab.ping('web1', '169.254.169.254'), 'the metadata address answers over the on-link route');

  const leases = await lab.json<Lease[]>(['lease', 'list']);
  t.equal(leases.length, 1);
  t.match(leases[0], {
    network: 'a',
    mac: g.mac,
    ip: g.ip,
    instance: g.id,
    instance_name: 'web1',
    state: 'bound',
  });
  const left = Date.parse(leases[0]?.expires as string) - Date.now();
  t.ok(left > 3500_000 && left <= 3600_000, `expires in about an hour (${left} ms)`);
  const text = await lab.ctl(['lease', 'list', '--network', 'a']);
  t.equal(text.code, 0);
  t.match(text.stdout, /^NETWORK\s+MAC\s+IP\s+INSTANCE\s+EXPIRES\s+STATE/);
  t.match(
    text.stdout,
    new RegExp(`a\\s+${g.mac}\\s+${g.ip.replaceAll('.', '\\.')}\\s+web1\\s+\\S+\\s+bound`),
  );
  t.same(await lab.json<Lease[]>(['lease', 'list', '--network', 'nope']), [], 'filter by network');
  const status = await lab.d.client.status();
  t.equal(status.counts.leases, 1, 'status counts the lease');
});

t.test('dhclient gets the same: fixed IP, mask, router, DNS, MTU and option 121', async (t) => {
  const lab = await startDhcpLab(t, [NET_CONFIG('a', 72)]);
  const g = await lab.guest('db1', 'a', { address: false });
  const { script, out, dir } = await dhclientScript(t);
  const client = new Background(t, g.netns, [
    'dhclient',
    '-d',
    '-1',
    '-v',
    '-sf',
    script,
    '-lf',
    join(dir, 'leases'),
    '-pf',
    join(dir, 'pid'),
    'eth0',
  ]);
  t.ok(await client.waitFor(/bound to/, 15_000), `dhclient bound: ${client.out}`);
  client.stop();
  const events = (await readFile(out, 'utf8')).split('end\n');
  const bound = events.find((e) => e.startsWith('reason=BOUND')) ?? '';
  const vars = Object.fromEntries(
    bound
      .split('\n')
      .filter((l) => l.startsWith('new_'))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  t.match(vars, {
    new_ip_address: g.ip,
    new_subnet_mask: '255.255.255.0',
    new_routers: '10.72.0.1',
    new_domain_name_servers: '10.72.0.1 9.9.9.9',
    new_domain_name: 'dhcp.test',
    new_interface_mtu: '1400',
    new_host_name: 'db1',
    new_dhcp_server_identifier: '10.72.0.254',
    new_dhcp_lease_time: '3600',
    // RFC 3442 bytes: 32 169.254.169.254 0.0.0.0, then 0 (default) via 10.72.0.1.
    new_rfc3442_classless_static_routes: '32 169 254 169 254 0 0 0 0 0 10 72 0 1',
  });
  t.match(await lab.json<Lease[]>(['lease', 'list', '--network', 'a']), [
    { mac: g.mac, ip: g.ip, state: 'bound' },
  ]);
});
