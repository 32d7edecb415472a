// One reconcile pass through SnapshotLinkOps: the kernel is read once per
// namespace, and the logic on top still sees every change it makes itself,
// so the writes it issues are exactly those it issues without the snapshot.
import t from 'tap';
import { ensureNetnsGuest, type NetnsGuestSpec } from '../../hostnet/links/netns-guest.js';
import { SnapshotLinkOps } from '../../hostnet/links/snapshot-ops.js';
import { sweepOrphans } from '../../hostnet/links/sweep.js';
import { Names } from '../../hostnet/names.js';
import { FakeKernel, fakeOps, ROOT } from '../helpers/fake_kernel.js';

const names = new Names('sn');
const br = names.bridge('net-s');

function guests(n: number): NetnsGuestSpec[] {
  return Array.from({ length: n }, (_, i) => ({
    netns: names.guestNetns(`i-${i}`),
    port: names.port(`inst${i}`, 0),
    bridge: br,
    mac: `0a:b7:e7:00:01:${i.toString(16).padStart(2, '0')}`,
    mtu: 1500,
  }));
}

function kernel(): FakeKernel {
  const k = new FakeKernel();
  k.add(ROOT, br, 'bridge');
  return k;
}

const reads = (k: FakeKernel) => k.calls.filter((c) => / -j /.test(c));

t.test('cold: the same writes as without a snapshot', async (t) => {
  const plain = kernel();
  for (const g of guests(3)) await ensureNetnsGuest(fakeOps(plain), g);
  const snap = kernel();
  const ops = new SnapshotLinkOps(fakeOps(snap));
  for (const g of guests(3)) await ensureNetnsGuest(ops, g);
  t.same(snap.writes(), plain.writes());
  t.ok(plain.writes().length > 10, 'three guests were built');
});

t.test('steady state: one listing per namespace, no writes', async (t) => {
  const k = kernel();
  const specs = guests(5);
  for (const g of specs) await ensureNetnsGuest(fakeOps(k), g);
  k.calls = [];
  for (const g of specs) await ensureNetnsGuest(fakeOps(k), g);
  const without = reads(k).length;

  k.calls = [];
  const ops = new SnapshotLinkOps(fakeOps(k));
  for (const g of specs) await ensureNetnsGuest(ops, g);
  t.same(k.writes(), []);
  t.same(
    reads(k).sort(),
    [
      'ip -j -d addr show',
      'ip -j netns list',
      ...specs.map((g) => `ip -n ${g.netns} -j -d addr show`),
    ].sort(),
  );
  t.ok(without >= 3 * specs.length, `without the snapshot: ${without} reads`);
});

t.test('a change made during the pass is seen by the next look', async (t) => {
  const k = kernel();
  const [g] = guests(1) as [NetnsGuestSpec];
  await ensureNetnsGuest(fakeOps(k), g);
  const ops = new SnapshotLinkOps(fakeOps(k));
  await ensureNetnsGuest(ops, g);
  // Taken away by hand after the snapshot read it: the next check rebuilds.
  await ops.deleteLink('eth0', g.netns);
  await ops.deleteLink(g.port);
  k.calls = [];
  await ensureNetnsGuest(ops, g);
  t.match(k.writes(), [/^ip link add .* type veth peer name eth0/]);
  t.ok(k.links.get(g.netns)?.has('eth0'), 'eth0 is back');
  t.ok(k.links.get(ROOT)?.get(g.port)?.master === br, 'the port is on the bridge again');

  // The namespace list follows adds and deletes made through the snapshot.
  await ops.deleteNetns(g.netns);
  t.notOk((await ops.listNetns()).includes(g.netns));
  await ensureNetnsGuest(ops, g);
  t.ok((await ops.listNetns()).includes(g.netns));
});

t.test('the orphan sweep after a pass sees links the pass made', async (t) => {
  const k = kernel();
  const ops = new SnapshotLinkOps(fakeOps(k));
  const specs = guests(2);
  for (const g of specs) await ensureNetnsGuest(ops, g);
  k.add(ROOT, names.port('gone', 0), 'veth');
  const swept = await sweepOrphans(ops, names, {
    links: [br, ...specs.map((g) => g.port)],
    netns: specs.map((g) => g.netns),
  });
  t.same(swept, { removedLinks: [names.port('gone', 0)], removedNetns: [] });
});

t.test('a failed read is not remembered', async (t) => {
  const k = kernel();
  const ops = new SnapshotLinkOps(fakeOps(k));
  k.failOn = (a) => a === 'ip -j netns list';
  await t.rejects(ops.listNetns());
  k.failOn = undefined;
  t.same(await ops.listNetns(), []);
});
