// Acceptance (DHCP leases): a lease outlives a berthd restart and the guest's
// renewal is ACKed with the same IP; deleting an instance releases its lease
// and the IP is not handed out again before its quarantine ends.
import { join } from 'node:path';
import t from 'tap';
import type { Lease, Network } from '../../agent/api/types.js';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import {
  Background,
  lastEvent,
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

t.test('restart berthd while a guest holds a lease: the renewal gets the same IP', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const base = await tempDir(t, 'dhcp-restart');
  const where = { prefix, stateDir: join(base, 'state'), socket: join(base, 'berthd.sock') };
  const first = await startDhcpLab(t, [NET_CONFIG('a', 75)], where);
  const g = await first.guest('keep', 'a', { address: false });
  const script = await udhcpcScript(t);
  const client = new Background(t, g.netns, [
    'udhcpc',
    '-f',
    '-i',
    'eth0',
    '-t',
    '3',
    '-T',
    '1',
    '-s',
    script,
  ]);
  t.ok(await client.waitFor(/serverid=.*\n/, 10_000), `bound: ${client.out}`);
  t.equal(lastEvent(client.out).ip, g.ip);
  const before = (await first.json<Lease[]>(['lease', 'list']))[0];

  t.equal(await first.d.stop(), 0, 'berthd stopped cleanly');
  const second = await startDhcpLab(t, [NET_CONFIG('a', 75)], where);
  t.match(
    await second.json<Lease[]>(['lease', 'list']),
    [{ mac: g.mac, ip: g.ip, state: 'bound' }],
    'the lease was kept',
  );

  // SIGUSR1 makes udhcpc renew: a unicast REQUEST with ciaddr to the server id.
  // The endpoint may still be starting, so ask again until it answers.
  const mark = client.out.length;
  let renewed: RegExpMatchArray | undefined;
  for (let i = 0; i < 10 && !renewed; i++) {
    client.signal('SIGUSR1');
    renewed = await client.waitFor(/event=renew[\s\S]*?serverid=.*\n/, 1500, mark);
  }
  t.ok(renewed, `udhcpc renewed after the restart: ${client.out.slice(mark)}`);
  const got = lastEvent(client.out.slice(mark));
  t.equal(got.event, 'renew');
  t.equal(got.ip, g.ip, 'same IP');
  const after = (await second.json<Lease[]>(['lease', 'list']))[0];
  t.ok(
    Date.parse(after?.expires as string) > Date.parse(before?.expires as string),
    'the renewal extended the lease',
  );
});

t.test('instance delete releases the lease; the IP waits out its quarantine', async (t) => {
  // A /29 holds four guest IPs (.2-.5; .1 is the gateway, .6 the endpoint).
  const lab = await startDhcpLab(t, ['{name: a, subnet: 10.76.0.0/29, gateway: 10.76.0.1, mtu: 1400}'], {
    extraConfig: 'quarantine: {mac_seconds: 3600, ip_seconds: 5}\n',
  });
  const script = await udhcpcScript(t);
  const guests = [];
  for (const name of ['q1', 'q2', 'q3', 'q4']) guests.push(await lab.guest(name, 'a', { address: false }));
  const old = guests[0] as (typeof guests)[0];
  const r = await udhcpcOnce(lab, 'q1', script);
  t.equal(r.got.ip, old.ip, 'q1 leased its IP');
  t.equal((await lab.json<Lease[]>(['lease', 'list'])).length, 1);

  const deletedAt = Date.now();
  t.equal((await lab.ctl(['instance', 'delete', 'q1'])).code, 0);
  t.same(await lab.json<Lease[]>(['lease', 'list']), [], 'the lease went with the instance');
  t.match(await lab.json<Network>(['network', 'show', 'a']), {
    ips: { assigned: 3, quarantined: 1, free: 0 },
  });
  const refused = await lab.ctl([
    'instance',
    'create',
    'q5',
    '--network',
    'a',
    '--runtime',
    'netns',
    '--json',
  ]);
  t.not(refused.code, 0, 'no new instance while the only free IP is in quarantine');
  t.match(refused.stdout, /BERTH_ERR_EXHAUSTED/);

  await new Promise((res) => setTimeout(res, Math.max(0, deletedAt + 5500 - Date.now())));
  const q5 = await lab.guest('q5', 'a', { address: false });
  t.equal(q5.ip, old.ip, 'after the quarantine the IP is reused');
  t.not(q5.mac, old.mac, 'by a guest with a new MAC');
  const r5 = await udhcpcOnce(lab, 'q5', script);
  t.equal(r5.got.ip, old.ip, 'and DHCP hands it to the new guest');
  t.match(await lab.json<Lease[]>(['lease', 'list']), [{ mac: q5.mac, ip: old.ip, instance: q5.id }]);
});
