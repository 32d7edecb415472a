// Fault: berthd's state dir on a full disk (a small tmpfs, filled). What must
// hold: a create fails with BERTH_ERR_STORE_FULL naming the instance and the
// cause, nothing of it lands on the host (no port, netns or guard rule) or in
// the pools; a running guest keeps its address, renews its lease and reads
// its metadata; berthd keeps answering reads. Once space is freed creates
// work again, and what they wrote survives a kill -9.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { ClientError } from '../../agent/client/client.js';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import { DhcpGuest } from '../helpers/dhcp_guest.js';
import { NET_CONFIG, startDhcpLab, udhcpcScript } from '../helpers/dhcp_lab.js';
import { checkInvariants, hostView } from '../helpers/faults.js';
import { inNetns, isRoot } from '../helpers/hostnet_lab.js';
import { fillUp, mountTmpfs } from '../helpers/tmpfs.js';

if (!isRoot()) {
  t.plan(0, 'needs root (tmpfs, bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

t.test('a full state dir: clear refusal, nothing half-applied, guests and reads untouched', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const base = await tempDir(t, 'disk-full');
  const stateDir = join(base, `${prefix}-state`);
  await mountTmpfs(t, stateDir, 16 << 20);
  const where = { prefix, stateDir, socket: join(base, 'berthd.sock') };
  const third = 50 + Math.floor(Math.random() * 9);
  const lab = await startDhcpLab(t, [NET_CONFIG('f', third)], where);
  const client = lab.d.client;
  const script = await udhcpcScript(t);
  const rec = await client.createInstance({ name: 'g0', network: 'f', runtime: 'netns' });
  const g0 = new DhcpGuest(
    t,
    { name: 'g0', id: rec.id, ip: rec.nics[0]?.ip as string, netns: rec.netns as string },
    script,
  );
  t.ok(await g0.bound(15_000), 'g0 has its lease');
  t.equal(await g0.instanceId(10_000), rec.id, 'g0 reads its metadata');
  const serviceIp = (await client.network('f')).service_ip;

  const host = await hostView(prefix);
  const pool = await client.pool();
  const ips = (await client.network('f')).ips;
  const filler = await fillUp(stateDir);

  // The first create carries 60 kB of user-data: the log page LevelDB already has could hold a
  // small record, so only a write bigger than a page is sure to meet the full disk. The second
  // is small, and is refused all the same: nothing is written until space is freed.
  const userData = Buffer.alloc(45_000, 'u').toString('base64');
  for (const attempt of ['first', 'second']) {
    const err = await client
      .createInstance({
        name: 'g1',
        network: 'f',
        runtime: 'netns',
        ...(attempt === 'first' ? { user_data: userData } : {}),
      })
      .catch((e) => e);
    t.type(err, ClientError, `the ${attempt} create is refused`);
    t.match(
      err,
      {
        code: 'BERTH_ERR_STORE_FULL',
        status: 507,
        message: new RegExp(
          `^could not create instance "g1": could not write key "instance/i-[0-9a-f]+" in store "${stateDir}/db": the disk is (still )?full .*; free space under ${stateDir}`,
        ),
      },
      `the ${attempt} refusal names the instance, the store and the cause`,
    );
  }
  t.match(
    await client.deleteInstance('g0').catch((e) => e),
    { code: 'BERTH_ERR_STORE_FULL', message: /^could not delete instance "g0": .*the disk is still full/ },
    'a delete is refused as clearly, before it touches anything',
  );
  t.same(await hostView(prefix), host, 'no port, namespace or guard rule of g1 on the host, all of g0 still');
  t.same(await client.pool(), pool, 'the MAC pool is as it was');
  t.same((await client.network('f')).ips, ips, "the network's IPs are as they were");

  // Reads, and the guest, while the disk is full.
  t.equal((await client.status()).counts.instances, 1, 'status answers');
  t.same(
    (await client.instances()).instances.map((i) => [i.name, i.state]),
    [['g0', 'running']],
    'the instance list answers: g0 running, no g1',
  );
  t.match((await client.leases('f')).leases, [{ mac: rec.nics[0]?.mac, state: 'bound' }], 'leases answer');
  t.equal(await g0.address(), g0.g.ip, 'g0 keeps its address');
  const ping = await inNetns(g0.g.netns, ['ping', '-n', '-q', '-c', '2', '-i', '0.2', '-W', '1', serviceIp]);
  t.match(ping.stdout, /2 received/, 'g0 reaches its network endpoint');
  t.equal((await g0.renew(10_000))?.ip, g0.g.ip, 'g0 renews its lease (not recorded, still answered)');
  t.equal(await g0.instanceId(5_000), rec.id, 'g0 still reads its metadata');
  t.match(lab.d.stderr(), /could not record the lease; answering anyway/, 'the unrecorded lease is logged');

  await rm(filler);
  const g1 = await client.createInstance({ name: 'g1', network: 'f', runtime: 'netns' });
  t.equal(g1.state, 'running', 'with space freed, the create works');
  await checkInvariants(t, client, prefix);

  // What was written after the failure must survive a crash (a torn log record would have taken it).
  await lab.d.kill9();
  const again = await startDhcpLab(t, [NET_CONFIG('f', third)], where);
  t.same(
    (await again.d.client.instances()).instances.map((i) => [i.name, i.id, i.state]),
    [
      ['g0', rec.id, 'running'],
      ['g1', g1.id, 'running'],
    ],
    'both instances are there after kill -9 and a restart',
  );
  await checkInvariants(t, again.d.client, prefix);
  t.equal(await g0.instanceId(10_000), rec.id, 'and g0 is served by the new berthd');
});
