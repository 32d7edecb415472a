// Crashes and restarts around libvirt guests: kill -9 of berthd in the middle
// of a create leaves a complete instance or no trace, and a running guest
// untouched; a libvirtd restart under a running guest, after which berthd
// still hears its events; a tagged domain without a record is reported, never removed.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { startBerthd, tempDir } from '../helpers/berthd.js';
import {
  computeConfig,
  domainsOf,
  libvirtUp,
  sh,
  startComputeLab,
  virsh,
  waitFor,
} from '../helpers/compute_lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges)');
  process.exit(0);
}
// Real QEMU under TCG on a busy 2-core machine: boots take seconds each.
t.setTimeout(300_000);

const domId = async (name: string) => (await virsh('domid', name)).stdout.trim();

t.test('kill -9 mid-create, then a libvirtd restart under a running guest', async (t) => {
  const base = await tempDir(t, 'cmr');
  const stateDir = join(base, 'state');
  const socket = join(base, 'berthd.sock');
  const third = 100 + Math.floor(Math.random() * 100);
  const lab = await startComputeLab(t, { stateDir, socket, third });
  const { guest, network, prefix } = lab;
  let d = lab.d;
  // berth.hold keeps the guest running after it reported.
  await d.client.importImage({
    path: guest.kernel,
    name: 'hold',
    initrd: guest.initrd,
    cmdline: `${guest.cmdline} berth.hold`,
  });
  await d.client.createInstance({ name: 'g0', network, runtime: 'libvirt', image: 'hold' });
  const g0dom = `${prefix}-g0`;
  const g0id = await domId(g0dom);

  // kill -9 as soon as g1's domain exists: between define and the final record.
  const pending = d.client
    .createInstance({ name: 'g1', network, runtime: 'libvirt', image: 'hold' })
    .catch((e: Error) => e);
  await waitFor('g1 defined', async () => (await domainsOf(prefix)).includes(`${prefix}-g1`), 30_000);
  await d.kill9();
  t.type(await pending, Error, 'the create was cut off');
  d = await startBerthd(t, { prefix, stateDir, socket, config: computeConfig(network, third) });
  const after = (await d.client.instances()).instances;
  const g1 = after.find((i) => i.name === 'g1');
  if (g1) {
    t.comment('berthd died after the record was complete');
    t.equal(g1.state, 'running', 'a complete instance');
  } else {
    t.comment('berthd died mid-create: undone');
    t.notOk((await domainsOf(prefix)).includes(`${prefix}-g1`), 'no domain for g1');
    const links = (await sh('ip', '-o', 'link', 'show')).stdout;
    t.equal(links.split('\n').filter((l) => l.includes(`${prefix}p`)).length, 1, "only g0's tap");
    t.equal((await d.client.pool()).pools[0]?.assigned, 1, "only g0's MAC is assigned");
    const dirs = (await sh('ls', join(stateDir, 'instances'))).stdout.trim().split('\n');
    t.equal(dirs.length, 1, "only g0's instance dir");
  }
  t.equal(await domId(g0dom), g0id, 'g0 kept running through the crash (same domain id)');
  t.equal((await d.client.instance('g0')).state, 'running', 'g0 adopted as running');

  // A domain with berth's tag and prefix but no record (a restored store, a hand-made copy):
  // reported after the next resync, never destroyed or undefined.
  const ghost = `${prefix}-ghost`;
  const ghostXml = join(base, 'ghost.xml');
  const g0xml = (await virsh('dumpxml', '--inactive', g0dom)).stdout;
  await writeFile(
    ghostXml,
    g0xml
      .replace(/<name>[^<]*<\/name>/, `<name>${ghost}</name>`)
      .replace(/<uuid>[^<]*<\/uuid>/, '')
      .replace(/<sysinfo[\s\S]*?<\/sysinfo>/, '')
      .replace(/<interface[\s\S]*?<\/interface>/g, '')
      .replace(/<berth:id>[^<]*<\/berth:id>/, '<berth:id>i-00000000</berth:id>'),
  );
  await virsh('define', ghostXml);
  t.teardown(() => virsh('undefine', ghost).catch(() => undefined));

  // libvirtd restarts under the running g0; then an out-of-band destroy must reach berthd as an event.
  const pid = (await readFile('/run/libvirtd.pid', 'utf8')).trim();
  await sh('kill', pid);
  await waitFor(
    'libvirtd to exit',
    async () =>
      !(await sh('kill', '-0', pid).then(
        () => true,
        () => false,
      )),
    30_000,
  );
  await libvirtUp();
  t.equal(await domId(g0dom), g0id, 'g0 survived the libvirtd restart');
  await waitFor(
    'the ghost reported',
    async () => (await d.client.status()).orphan_domains.includes(ghost),
    30_000,
  );
  t.same((await d.client.status()).orphan_domains, [ghost], 'only the ghost is an orphan');
  t.match(d.stderr(), /domain carries our tag but has no record/, 'and logged');
  // Give berthd's heartbeat a moment to reconnect libvirt-dbus to the new libvirtd.
  await new Promise((r) => setTimeout(r, 2500));
  const t0 = Date.now();
  await virsh('destroy', g0dom);
  await waitFor(
    'g0 stopped in berthd',
    async () => (await d.client.instance('g0')).state === 'stopped',
    10_000,
  );
  t.comment(`berthd saw g0 stop ${Date.now() - t0} ms after virsh destroy`);
  t.match(
    d.stderr(),
    /"event":"stopped".*instance state from a libvirt event/,
    'by a libvirt event, not polling',
  );
  await virsh('start', g0dom);
  await waitFor(
    'g0 running in berthd',
    async () => (await d.client.instance('g0')).state === 'running',
    10_000,
  );
  t.pass('and the Started event');

  for (const i of (await d.client.instances()).instances) await d.client.deleteInstance(i.name);
  t.same(
    await domainsOf(prefix),
    [ghost],
    'the ghost is still defined: berth never removes what it has no record of',
  );
  await virsh('undefine', ghost);
  t.same(await domainsOf(prefix), [], 'no domain left');
});
