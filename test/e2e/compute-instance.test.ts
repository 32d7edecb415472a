// berthctl instance create --runtime libvirt against real libvirtd and QEMU:
// the test guest gets its fixed IP from berth's DHCP and its own instance-id
// from berth's metadata, as its own serial console says. Then events, power
// verbs, delete leaving no trace, and a tampered image refused.
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { berthctl } from '../helpers/berthd.js';
import { domainsOf, guestReport, sh, startComputeLab, virsh, waitFor } from '../helpers/compute_lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges)');
  process.exit(0);
}
// Real QEMU under TCG on a busy 2-core machine: boots take seconds each.
t.setTimeout(300_000);

t.test('a libvirt guest boots from the test image and learns who it is from berth', async (t) => {
  const { d, guest, network, prefix } = await startComputeLab(t);
  const env = { BERTH_SOCKET: d.socket };

  const imp = await berthctl(
    ['image', 'import', guest.kernel, '--name', 'test', '--initrd', guest.initrd, '--cmdline', guest.cmdline],
    env,
  );
  t.equal(imp.code, 0, imp.stderr);
  const sha = imp.stdout.match(/sha256 ([0-9a-f]{64})/)?.[1];
  t.ok(sha, `import prints the sha256: ${imp.stdout.trim()}`);

  const t0 = Date.now();
  const made = await berthctl(
    ['instance', 'create', 'g1', '--network', network, '--image', 'test', '--runtime', 'libvirt', '--json'],
    env,
  );
  t.equal(made.code, 0, made.stderr);
  const createdMs = Date.now() - t0;
  const shown = await berthctl(['instance', 'show', 'g1', '--json'], env);
  const g1 = JSON.parse(shown.stdout) as Instance;
  const nic = g1.nics[0];
  t.equal(g1.runtime, 'libvirt');
  t.equal(g1.state, 'running', 'show says running');
  t.match(nic?.mac, /^0a:b7:e7:/, 'the MAC comes from the pool');
  t.match(nic?.ip, /^10\.\d+\.0\.\d+$/, 'a fixed IP from IPAM');
  t.equal(nic?.port, `${prefix}p${g1.id.slice(2)}0`, 'the port is berth-named');
  t.equal(g1.image, 'test');
  t.equal(g1.image_sha256, sha, 'the record carries the image sha256');
  t.equal(g1.domain, `${prefix}-g1`);
  t.equal(g1.console_log, join(d.stateDir, 'instances', g1.id, 'serial.log'));
  const link = JSON.parse((await sh('ip', '-j', 'link', 'show', 'dev', nic?.port as string)).stdout)[0];
  const net = await d.client.network(network);
  t.equal(link.master, net.bridge, "the tap sits on the network's bridge");

  const report = await guestReport(g1.console_log as string);
  const bootMs = Date.now() - t0;
  t.comment(
    `create ${createdMs} ms; serial log had the metadata answer ${bootMs} ms after create began; guest uptime lease ${report.uptime.lease} s`,
  );
  t.equal(report.mac, nic?.mac, 'the guest sees its assigned MAC');
  t.equal(report.lease, nic?.ip, "the guest's DHCP lease is its fixed IP");
  t.equal(report.route169, 'staticroutes', '169.254.169.254 came by option 121');
  t.equal(report.instanceId, g1.id, 'the guest got its own instance-id from metadata');
  const leases = await d.client.leases(network);
  t.ok(
    leases.leases.some((l) => l.mac === nic?.mac && l.ip === nic?.ip),
    'berth recorded the lease',
  );

  // The guest powers off by itself: the Stopped event turns the state.
  await waitFor(
    'state stopped (Stopped event)',
    async () => (await d.client.instance('g1')).state === 'stopped',
    60_000,
  );
  t.pass('the guest powered off and berthd saw it');
  const started = await berthctl(['instance', 'start', 'g1'], env);
  t.equal(started.code, 0, started.stderr);
  t.equal((await d.client.instance('g1')).state, 'running', 'start: running again');
  const t1 = Date.now();
  const stopped = await berthctl(['instance', 'stop', 'g1', '--timeout', '1'], env);
  t.equal(stopped.code, 0, stopped.stderr);
  t.comment(`stop took ${Date.now() - t1} ms`);
  t.equal((await d.client.instance('g1')).state, 'stopped');
  t.match((await virsh('domstate', `${prefix}-g1`)).stdout, /shut off/);

  const del = await berthctl(['instance', 'delete', 'g1'], env);
  t.equal(del.code, 0, del.stderr);
  t.same(await domainsOf(prefix), [], 'no domain left (virsh list --all)');
  await t.rejects(sh('ip', 'link', 'show', 'dev', nic?.port as string), 'no tap left');
  const nft = (await sh('nft', 'list', 'table', 'bridge', `${prefix}_guard`)).stdout;
  t.notMatch(nft, nic?.port as string, 'no guard chain for the port');
  t.same((await d.client.leases(network)).leases, [], 'no lease');
  t.same((await d.client.instances()).instances, [], 'no record');
  await t.rejects(stat(join(d.stateDir, 'instances', g1.id)), 'no instance dir (overlay, serial log)');

  // One byte flipped in the store: the next create is refused, nothing is allocated.
  const part = join(d.stateDir, 'images', sha as string, 'initrd');
  const fh = await open(part, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, 1000);
  await fh.write(Buffer.from([(b[0] as number) ^ 0xff]), 0, 1, 1000);
  await fh.close();
  const bad = await berthctl(
    ['instance', 'create', 'g2', '--network', network, '--image', 'test', '--runtime', 'libvirt'],
    env,
  );
  t.equal(bad.code, 1);
  t.match(
    bad.stderr,
    `could not create instance "g2": image "test" (sha256 ${sha}) does not match its hash; it was modified on disk`,
  );
  t.same((await d.client.instances()).instances, [], 'nothing was created');
  t.same(await domainsOf(prefix), []);
  const pool = await d.client.pool();
  t.equal(pool.pools[0]?.assigned, 0, 'no MAC was taken');

  const inUse = await berthctl(['image', 'list', '--json'], env);
  t.equal(JSON.parse(inUse.stdout)[0].sha256, sha);
  const gone = await berthctl(['image', 'delete', 'test'], env);
  t.equal(gone.code, 0, gone.stderr);
  await t.rejects(stat(join(d.stateDir, 'images', sha as string)), 'image files removed');
});
