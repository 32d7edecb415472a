// 20 instances (16 netns, 4 libvirt) get 20 distinct MACs and IPs; deleting
// them all leaves no domain, tap or veth, guard chain, lease or store record
// (checked against virsh, ip, nft and the store itself).
import { join } from 'node:path';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { LevelStore } from '../../agent/store/level-store.js';
import { RATE_SET_PREFIX } from '../../hostnet/guard/reasons.js';
import { domainsOf, guestReport, sh, startComputeLab } from '../helpers/compute_lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges)');
  process.exit(0);
}
// Real QEMU under TCG on a busy 2-core machine: boots take seconds each.
t.setTimeout(300_000);

t.test('20 instances: distinct identities, and no trace after delete', async (t) => {
  const { d, guest, network, prefix } = await startComputeLab(t);
  await d.client.importImage({
    path: guest.kernel,
    name: 'test',
    initrd: guest.initrd,
    cmdline: guest.cmdline,
  });
  const made: Instance[] = [];
  const t0 = Date.now();
  for (let i = 0; i < 20; i++) {
    const libvirt = i % 5 === 0;
    made.push(
      await d.client.createInstance({
        name: `s${i}`,
        network,
        ...(libvirt ? { runtime: 'libvirt' as const, image: 'test' } : {}),
      }),
    );
  }
  t.comment(`20 creates (4 libvirt) in ${Date.now() - t0} ms`);
  const macs = new Set(made.map((i) => i.nics[0]?.mac));
  const ips = new Set(made.map((i) => i.nics[0]?.ip));
  t.equal(macs.size, 20, '20 distinct MACs');
  t.equal(ips.size, 20, '20 distinct IPs');
  const vms = made.filter((i) => i.runtime === 'libvirt');
  t.equal((await domainsOf(prefix)).length, 4, 'four domains defined');
  for (const vm of vms) {
    const r = await guestReport(vm.console_log as string, 180_000);
    t.equal(r.lease, vm.nics[0]?.ip, `${vm.name}: leased its own IP`);
    t.equal(r.instanceId, vm.id, `${vm.name}: its own instance-id (error: ${r.instanceIdError ?? 'none'})`);
    if (r.instanceId !== vm.id)
      t.comment(JSON.stringify((await d.client.audit({ event: 'metadata.request' })).records));
  }
  t.ok((await d.client.leases(network)).leases.length >= 4, 'leases recorded');

  const t1 = Date.now();
  for (const i of made) await d.client.deleteInstance(i.name);
  t.comment(`20 deletes in ${Date.now() - t1} ms`);
  t.same(await domainsOf(prefix), [], 'virsh: no domain');
  const links = JSON.parse((await sh('ip', '-j', 'link', 'show')).stdout) as { ifname: string }[];
  const ports = new Set(made.map((i) => i.nics[0]?.port));
  t.same(
    links.filter((l) => ports.has(l.ifname)).map((l) => l.ifname),
    [],
    'ip: no tap or veth',
  );
  const netns = (await sh('ip', 'netns', 'list')).stdout;
  t.notMatch(netns, `${prefix}-g-`, 'ip: no guest namespace');
  // The log chains' rate sets (rl_*) are the kernel's: a port that had a
  // drop logged keeps a token bucket there until it times out (10 s).
  const listing = JSON.parse(
    (await sh('nft', '-j', 'list', 'table', 'bridge', `${prefix}_guard`)).stdout,
  ) as {
    nftables: Record<string, { name?: string }>[];
  };
  const nft = JSON.stringify(
    listing.nftables.filter((o) => !(o.set?.name ?? '').startsWith(RATE_SET_PREFIX)),
  );
  for (const p of ports) if (nft.includes(p as string)) t.fail(`nft still names ${p}`);
  t.same((await d.client.leases(network)).leases, [], 'no lease');
  t.equal((await d.client.pool()).pools[0]?.assigned, 0, 'no MAC assigned');

  t.equal(await d.stop(), 0, 'berthd stops cleanly');
  const store = await LevelStore.open(d.stateDir);
  try {
    for (const prefixKey of [
      'instance/',
      'instance-name/',
      'lease/',
      'userdata/',
      'vendordata/',
      'password/',
    ]) {
      t.same(await store.list(prefixKey), [], `store: nothing under ${prefixKey}`);
    }
    const macRecs = await store.list<{ state?: string }>('mac/');
    t.equal(macRecs.length, 20, 'every MAC is kept, in quarantine');
  } finally {
    await store.close();
  }
  t.same((await sh('ls', join(d.stateDir, 'instances'))).stdout.trim(), '', 'no instance dirs');
});
