// Fault: kill -9 of berthd during a boot storm of netns guests, each running
// udhcpc and then fetching its metadata. What must hold: guests that had a
// lease keep it through the outage (address, traffic) and after the restart
// their renewals get the same IP and their metadata answers; guests caught
// mid-boot are served once berthd is back; no two guests share an IP, every
// lease is its instance's fixed IP, and nothing is orphaned.
import { join } from 'node:path';
import t from 'tap';
import type { Lease } from '../../agent/api/types.js';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import { DhcpGuest } from '../helpers/dhcp_guest.js';
import { NET_CONFIG, startDhcpLab, udhcpcScript } from '../helpers/dhcp_lab.js';
import { checkInvariants, killWhen } from '../helpers/faults.js';
import { inNetns, isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const BOOTED = 15;
const BOOTING = 15;

t.test('kill -9 in a boot storm: leases kept, everyone served after the restart', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const base = await tempDir(t, 'storm');
  const where = { prefix, stateDir: join(base, 'state'), socket: join(base, 'berthd.sock') };
  const net = NET_CONFIG('s', 60 + Math.floor(Math.random() * 9));
  const lab = await startDhcpLab(t, [net], where);
  const script = await udhcpcScript(t);
  const start = Date.now();
  const phase = (what: string) => t.comment(`${what} at ${((Date.now() - start) / 1000).toFixed(1)} s`);
  const made = [];
  for (let i = 0; i < BOOTED + BOOTING; i++)
    made.push(await lab.d.client.createInstance({ name: `g${i}`, network: 's', runtime: 'netns' }));
  const ids = made.map((i) => ({
    name: i.name,
    id: i.id,
    ip: i.nics[0]?.ip as string,
    netns: i.netns as string,
  }));
  phase(`${made.length} instances created`);
  const booted = ids.slice(0, BOOTED).map((g) => new DhcpGuest(t, g, script));
  for (const g of booted) t.ok(await g.bound(15_000), `${g.g.name} got a lease before the crash`);
  const answers = await Promise.all(booted.map((g) => g.instanceId(10_000)));
  t.same(
    answers,
    booted.map((g) => g.g.id),
    'each booted guest reads its own instance-id',
  );

  // The storm: the second wave boots all at once; berthd dies as the first of them is served.
  const t0 = Date.now();
  const booting = ids.slice(BOOTED).map((g) => new DhcpGuest(t, g, script));
  await killWhen(
    'the first lease of the second wave',
    async () => booting.some((g) => g.leased() !== undefined),
    () => lab.d.kill9(),
  );
  const servedBefore = booting.filter((g) => g.leased() !== undefined).length;
  t.comment(
    `berthd killed ${Date.now() - t0} ms into the storm; ${servedBefore}/${BOOTING} of the wave had leases`,
  );
  t.ok(servedBefore < BOOTING, 'some guests were still booting when berthd died');

  // The outage: berthd is gone, the data path is not.
  for (const g of booted)
    t.equal(await g.address(), g.g.ip, `${g.g.name} keeps its address while berthd is down`);
  const [a, b] = booted;
  // From the host, not through berthctl: berthd is down.
  const ping = await inNetns(a?.g.netns as string, [
    'ping',
    '-n',
    '-q',
    '-c',
    '2',
    '-i',
    '0.2',
    '-W',
    '1',
    b?.g.ip as string,
  ]);
  t.match(ping.stdout, /2 received/, `${a?.g.name} still reaches ${b?.g.name} while berthd is down`);

  const again = await startDhcpLab(t, [net], where);
  phase('berthd restarted');
  const leases = (await again.d.client.leases('s')).leases;
  const byMac = new Map<string, Lease>(leases.map((l) => [l.mac, l]));
  for (const rec of made.slice(0, BOOTED)) {
    t.match(
      byMac.get(rec.nics[0]?.mac as string),
      { ip: rec.nics[0]?.ip, state: 'bound' },
      `${rec.name}'s lease survived`,
    );
  }
  const renewals = await Promise.all(booted.map((g) => g.renew(15_000)));
  t.same(
    renewals.map((r) => r?.ip),
    booted.map((g) => g.g.ip),
    'every booted guest renews its own IP from the new berthd',
  );
  for (const g of booting) t.ok(await g.bound(30_000), `${g.g.name} was served after the restart`);
  const all = [...booted, ...booting];
  t.same(
    all.map((g) => g.leased()),
    all.map((g) => g.g.ip),
    'every guest holds exactly its fixed IP',
  );
  t.same(
    await Promise.all(all.map((g) => g.instanceId(15_000))),
    all.map((g) => g.g.id),
    'every guest reads its own instance-id after the restart',
  );
  phase('everyone served');
  const final = (await again.d.client.leases('s')).leases.filter((l) => l.state === 'bound');
  t.equal(final.length, all.length, 'one bound lease per guest');
  t.equal(new Set(final.map((l) => l.ip)).size, final.length, 'no IP leased twice');
  await checkInvariants(t, again.d.client, prefix);
});
