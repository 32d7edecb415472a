// Fault: libvirtd goes away under a running libvirt guest and comes back.
// test/e2e/compute-restart.test.ts shows that berthd hears domain events
// again after a libvirtd restart; this covers the outage itself: the guest
// keeps running (same QEMU, same domain id), keeps its lease and its
// identity, and answers pings; berthd keeps its state right; a create during
// the outage fails with a clear error and leaves nothing behind (no record,
// port, guard rule, domain, and no MAC or IP taken); after the restart the
// same create works and the new guest gets its lease and metadata.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import type { ResolveAnswer } from '../../agent/api/types.js';
import { ClientError } from '../../agent/client/client.js';
import {
  domainsOf,
  guestReport,
  libvirtUp,
  sh,
  startComputeLab,
  virsh,
  waitFor,
} from '../helpers/compute_lab.js';
import { checkInvariants, hostView } from '../helpers/faults.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges)');
  process.exit(0);
}
// Real QEMU under TCG on a busy 2-core machine: boots take seconds each.
t.setTimeout(240_000);

const alive = (pid: string) =>
  sh('kill', '-0', pid).then(
    () => true,
    () => false,
  );

t.test('a libvirtd outage under a running guest: guest untouched, create refused cleanly', async (t) => {
  // Whatever happens below, libvirtd runs again afterwards: other tests share it.
  t.teardown(() => libvirtUp().catch(() => undefined));
  const lab = await startComputeLab(t);
  const { d, guest, network, prefix } = lab;
  await d.client.importImage({
    path: guest.kernel,
    name: 'hold',
    initrd: guest.initrd,
    cmdline: `${guest.cmdline} berth.hold`,
  });
  const g0 = await d.client.createInstance({ name: 'g0', network, runtime: 'libvirt', image: 'hold' });
  const report = await guestReport(g0.console_log as string);
  const ip = g0.nics[0]?.ip as string;
  t.equal(report.lease, ip, 'g0 leased its IP');
  t.equal(report.instanceId, g0.id, 'g0 read its metadata');
  const domain = `${prefix}-g0`;
  const domId = (await virsh('domid', domain)).stdout.trim();
  const qemuPid = (await readFile(`/run/libvirt/qemu/${domain}.pid`, 'utf8')).trim();
  const epNetns = (await d.client.network(network)).endpoint;
  const pingG0 = async () =>
    (await sh('ip', 'netns', 'exec', epNetns, 'ping', '-n', '-q', '-c', '2', '-i', '0.2', '-W', '2', ip))
      .stdout;
  const identity = () => d.client.request<ResolveAnswer>('GET', `/networks/${network}/resolve?ip=${ip}`);
  t.match(await pingG0(), /2 received/, 'g0 answers pings');
  t.match(await identity(), { ok: true, instance: g0.id }, "berthd sees g0's identity behind its IP");
  const host = await hostView(prefix);
  const pool = await d.client.pool();
  const ips = (await d.client.network(network)).ips;

  // The outage: as short as it can be, libvirtd is shared.
  const pid = (await readFile('/run/libvirtd.pid', 'utf8')).trim();
  const down = Date.now();
  await sh('kill', pid);
  await waitFor('libvirtd to exit', async () => !(await alive(pid)), 30_000);
  try {
    const err = await d.client
      .createInstance({ name: 'g1', network, runtime: 'libvirt', image: 'hold' })
      .catch((e) => e);
    t.type(err, ClientError, 'a create during the outage is refused');
    t.match(
      err,
      {
        code: 'BERTH_ERR_HOST_OP',
        message:
          /^could not create instance "g1": libvirt does not answer \(.+\); start it with scripts\/libvirt-up\.sh/,
      },
      'with a code, the instance, the cause and how to fix it',
    );
    t.comment(`the refusal: ${err.message}`);
    t.ok(await alive(qemuPid), "g0's QEMU keeps running without libvirtd");
    t.match(await pingG0(), /2 received/, 'g0 answers pings during the outage');
    t.match(await identity(), { ok: true, instance: g0.id }, "g0's identity holds during the outage");
    t.equal((await d.client.instance('g0')).state, 'running', 'berthd still has g0 running');
    t.same(await hostView(prefix), host, 'no port or guard rule of g1 on the host');
    t.same(
      (await d.client.instances()).instances.map((i) => i.name),
      ['g0'],
      'no record of g1',
    );
    t.same(await d.client.pool(), pool, 'no MAC taken or quarantined');
    t.same((await d.client.network(network)).ips, ips, 'no IP taken or quarantined');
  } finally {
    await libvirtUp();
    t.comment(`libvirtd was down for ${Date.now() - down} ms`);
  }

  t.equal((await virsh('domid', domain)).stdout.trim(), domId, 'g0 is the same running domain');
  t.same(await domainsOf(prefix), [domain], 'no domain of g1 was left behind');
  t.match(
    (await d.client.leases(network)).leases,
    [{ mac: g0.nics[0]?.mac, ip, state: 'bound' }],
    'g0 keeps its lease',
  );
  // berthd reconnects on its own (heartbeat); the same create then works.
  const g1 = await waitFor(
    'a create to work again',
    () =>
      d.client
        .createInstance({ name: 'g1', network, runtime: 'libvirt', image: 'hold' })
        .catch(() => undefined),
    30_000,
  );
  t.equal(g1.state, 'running', 'after the restart the create works');
  const r1 = await guestReport(g1.console_log as string);
  t.equal(r1.lease, g1.nics[0]?.ip, 'g1 leased its IP');
  t.equal(r1.instanceId, g1.id, 'g1 read its metadata');
  t.equal((await d.client.instance('g0')).state, 'running', 'g0 is still running in berthd');
  await checkInvariants(t, d.client, prefix, { domains: () => domainsOf(prefix) });

  for (const name of ['g1', 'g0']) await d.client.deleteInstance(name);
  t.same(await domainsOf(prefix), [], 'no domain left');
});
