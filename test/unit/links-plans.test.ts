// Link logic against a small in-memory kernel behind the CommandRunner seam:
// the argv the real adapter would run, recorded and compared with golden lists.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BerthError } from '../../base/errors.js';
import { bridgeMac, ensureBridge } from '../../hostnet/links/bridge.js';
import { ensureEndpoint, removeEndpoint } from '../../hostnet/links/endpoint.js';
import { HostLinks } from '../../hostnet/links/index.js';
import { ensureNetnsGuest } from '../../hostnet/links/netns-guest.js';
import { sweepOrphans } from '../../hostnet/links/sweep.js';
import { applyVlanPlan, chooseVlanMode, planVlanNetwork, setPortVlan } from '../../hostnet/links/vlan.js';
import { Names } from '../../hostnet/names.js';
import { FakeKernel, fakeEtc, fakeOps, ROOT } from '../helpers/fake_kernel.js';

const names = new Names('lk');
const noVlan = { dot1q: false, vlanFiltering: false };
const allVlan = { dot1q: true, vlanFiltering: true };

t.test('bridge MAC is pinned, deterministic and locally administered', async (t) => {
  const mac = bridgeMac('lkb123456');
  t.equal(mac, bridgeMac('lkb123456'));
  t.not(mac, bridgeMac('lkb654321'));
  t.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  const first = Number.parseInt(mac.slice(0, 2), 16);
  t.equal(first & 0x03, 0x02, 'locally administered, unicast');
});

t.test('ensureBridge creates once, and a second call issues no writes', async (t) => {
  const k = new FakeKernel();
  const ops = fakeOps(k);
  const br = names.bridge('net-a');
  await ensureBridge(ops, br, { mtu: 1450 });
  t.same(k.writes(), [
    `ip link add ${br} address ${bridgeMac(br)} mtu 1450 type bridge stp_state 0 forward_delay 0`,
    `sysctl -qw net/ipv6/conf/${br}/disable_ipv6=1`,
    `ip link set ${br} up`,
  ]);
  k.calls = [];
  const again = await ensureBridge(ops, br, { mtu: 1450 });
  t.same(k.writes(), [], 'nothing changed on the second call');
  t.ok(k.calls.length > 0, 'but it did read');
  t.equal(again.mac, bridgeMac(br));
  t.equal(again.bridge?.stpState, 0);
});

t.test('ensureBridge converges only what differs', async (t) => {
  const k = new FakeKernel();
  const br = names.bridge('net-b');
  k.add(ROOT, br, 'bridge', {
    flags: ['UP'],
    address: '0a:00:00:00:00:33',
    linkinfo: { info_kind: 'bridge', info_data: { stp_state: 1, forward_delay: 1500, vlan_filtering: 0 } },
    addr_info: [{ family: 'inet', local: '10.9.0.1', prefixlen: 24 }],
  });
  k.sysctls.set(`:net/ipv6/conf/${br}/disable_ipv6`, '1');
  await ensureBridge(fakeOps(k), br, { mtu: 1500 });
  t.same(k.writes(), [
    `ip link set ${br} type bridge stp_state 0 forward_delay 0`,
    `ip link set ${br} address ${bridgeMac(br)}`,
    `ip addr del 10.9.0.1/24 dev ${br}`,
  ]);
});

t.test('ensureBridge refuses a name taken by another kind', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'lkbtaken', 'veth');
  await t.rejects(ensureBridge(fakeOps(k), 'lkbtaken', { mtu: 1500 }), {
    code: 'BERTH_ERR_CONFLICT',
    message: '"lkbtaken" already exists but is not a bridge (it is a veth)',
  });
  t.same(k.writes(), []);
});

t.test('filtering mode: golden argv for a VLAN network', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0');
  const plan = planVlanNetwork(names, 'filtering', 'net-v', 'up0', 100);
  const trunk = names.trunkBridge('up0');
  t.equal(plan.bridge, trunk);
  t.equal(plan.portVid, 100);
  await applyVlanPlan(fakeOps(k), plan, allVlan);
  t.same(k.writes(), [
    `ip link add ${trunk} address ${bridgeMac(trunk)} mtu 1500 type bridge stp_state 0 forward_delay 0 vlan_filtering 1 vlan_default_pvid 0`,
    `sysctl -qw net/ipv6/conf/${trunk}/disable_ipv6=1`,
    `ip link set ${trunk} up`,
    `ip link set up0 master ${trunk}`,
    'bridge vlan add dev up0 vid 100',
    'ip link set up0 up',
  ]);
  k.calls = [];
  await applyVlanPlan(fakeOps(k), plan, allVlan);
  t.same(k.writes(), [], 'reapplying the plan changes nothing');

  k.calls = [];
  k.add(ROOT, 'lkpport0001', 'veth');
  await setPortVlan(fakeOps(k), 'lkpport0001', 100);
  t.same(k.writes(), ['bridge vlan add dev lkpport0001 vid 100 pvid untagged']);
  k.calls = [];
  await setPortVlan(fakeOps(k), 'lkpport0001', 200);
  t.same(
    k.writes(),
    ['bridge vlan add dev lkpport0001 vid 200 pvid untagged', 'bridge vlan del dev lkpport0001 vid 100'],
    'moving a port leaves it in exactly one VLAN',
  );
});

t.test('subinterface mode: golden argv for a VLAN network', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0');
  const plan = planVlanNetwork(names, 'subinterface', 'net-v', 'up0', 100, { mtu: 1400 });
  const br = names.bridge('net-v');
  const sub = names.vlanSubinterface('up0', 100);
  t.equal(plan.portVid, undefined);
  await applyVlanPlan(fakeOps(k), plan, { dot1q: true, vlanFiltering: false });
  t.same(k.writes(), [
    `ip link add link up0 name ${sub} type vlan id 100`,
    `ip link add ${br} address ${bridgeMac(br)} mtu 1400 type bridge stp_state 0 forward_delay 0`,
    `sysctl -qw net/ipv6/conf/${br}/disable_ipv6=1`,
    `ip link set ${br} up`,
    `ip link set ${sub} master ${br}`,
    'ip link set up0 up',
    `ip link set ${sub} up`,
  ]);
});

t.test('a kernel without the feature fails naming it, before any write', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0');
  const ops = fakeOps(k);
  await t.rejects(applyVlanPlan(ops, planVlanNetwork(names, 'filtering', 'n1', 'up0', 5), noVlan), {
    code: 'BERTH_ERR_KERNEL_FEATURE',
    message: /could not create VLAN network "n1": .*"bridge vlan_filtering"/,
  });
  await t.rejects(applyVlanPlan(ops, planVlanNetwork(names, 'subinterface', 'n1', 'up0', 5), noVlan), {
    code: 'BERTH_ERR_KERNEL_FEATURE',
    message: /"8021q"/,
  });
  t.same(k.writes(), []);
  t.throws(() => chooseVlanMode('auto', noVlan, 'n1'), { code: 'BERTH_ERR_KERNEL_FEATURE' });
  t.equal(chooseVlanMode('auto', allVlan, 'n1'), 'filtering');
  t.equal(chooseVlanMode('auto', { dot1q: true, vlanFiltering: false }, 'n1'), 'subinterface');
  t.throws(() => chooseVlanMode('subinterface', { dot1q: false, vlanFiltering: true }, 'n1'), /"8021q"/);
  t.throws(() => planVlanNetwork(names, 'filtering', 'n1', 'up0', 4095), /invalid VLAN ID 4095/);
});

t.test('endpoint: golden argv, idempotent, and rollback when a step fails', async (t) => {
  const spec = {
    network: 'net-e',
    bridge: names.bridge('net-e'),
    netns: names.endpointNetns('net-e'),
    veth: names.endpointVeth('net-e'),
    serviceIp: '10.20.0.2',
    prefixLen: 24,
    mtu: 1500,
  };
  const k = new FakeKernel();
  k.add(ROOT, spec.bridge, 'bridge');
  const ops = fakeOps(k);
  await ensureEndpoint(ops, spec);
  const ns = spec.netns;
  t.same(k.writes(), [
    `ip netns add ${ns}`,
    `ip link add ${spec.veth} mtu 1500 type veth peer name ep0 mtu 1500 netns ${ns}`,
    `sysctl -qw net/ipv6/conf/${spec.veth}/disable_ipv6=1`,
    `ip link set ${spec.veth} master ${spec.bridge}`,
    `ip link set ${spec.veth} up`,
    `ip -n ${ns} link set lo up`,
    `ip netns exec ${ns} sysctl -qw net/ipv4/conf/all/arp_ignore=1 net/ipv4/conf/all/arp_announce=2 net/ipv4/conf/ep0/arp_ignore=1 net/ipv4/conf/ep0/arp_announce=2 net/ipv6/conf/ep0/disable_ipv6=1`,
    `ip -n ${ns} link set ep0 up`,
    `ip -n ${ns} addr add 10.20.0.2/24 dev ep0`,
    `ip -n ${ns} addr add 169.254.169.254/32 dev ep0`,
    `ip -n ${ns} route replace default dev ep0 scope link`,
  ]);
  k.calls = [];
  await ensureEndpoint(ops, spec);
  t.same(k.writes(), [], 'second call changes nothing');

  // A fresh kernel where bringing ep0 up fails: the veth and namespace this call made are undone.
  const k2 = new FakeKernel();
  k2.add(ROOT, spec.bridge, 'bridge');
  k2.failOn = (a) => a === `ip -n ${ns} link set ep0 up`;
  await t.rejects(ensureEndpoint(fakeOps(k2), spec), {
    code: 'BERTH_ERR_HOST_OP',
    message: /could not bring up link "ep0": .*Operation not permitted/,
  });
  t.same(k2.writes().slice(-2), [`ip link del ${spec.veth}`, `ip netns del ${ns}`], 'undo runs newest first');
  t.notOk(k2.netns.has(ns));
  t.notOk(k2.links.get(ROOT)?.has(spec.veth));

  // When the namespace already existed, a failure only undoes what this call made.
  const k3 = new FakeKernel();
  k3.add(ROOT, spec.bridge, 'bridge');
  k3.netns.add(ns);
  k3.add(ns, 'lo', undefined, { flags: ['LOOPBACK'] });
  k3.failOn = (a) => a.includes('master');
  await t.rejects(ensureEndpoint(fakeOps(k3), spec), { code: 'BERTH_ERR_HOST_OP' });
  t.same(k3.writes().slice(-1), [`ip link del ${spec.veth}`]);
  t.ok(k3.netns.has(ns), 'a namespace this call did not create survives');

  await removeEndpoint(ops, spec);
  await removeEndpoint(ops, spec);
  t.notOk(k.netns.has(ns), 'remove twice is fine');
});

t.test('netns guest: golden argv with a pvid, and a half pair is rebuilt', async (t) => {
  const k = new FakeKernel();
  const br = names.trunkBridge('up0');
  k.add(ROOT, br, 'bridge');
  const spec = {
    netns: names.guestNetns('g1'),
    port: names.port('abcdef0123', 0),
    bridge: br,
    mac: '0a:b7:e7:00:00:05',
    mtu: 1500,
    vid: 7,
  };
  await ensureNetnsGuest(fakeOps(k), spec);
  t.same(k.writes(), [
    `ip netns add ${spec.netns}`,
    `ip link add ${spec.port} mtu 1500 type veth peer name eth0 mtu 1500 address 0a:b7:e7:00:00:05 netns ${spec.netns}`,
    `sysctl -qw net/ipv6/conf/${spec.port}/disable_ipv6=1`,
    `ip link set ${spec.port} master ${br}`,
    `bridge vlan add dev ${spec.port} vid 7 pvid untagged`,
    `ip link set ${spec.port} up`,
    `ip -n ${spec.netns} link set lo up`,
    `ip -n ${spec.netns} link set eth0 up`,
  ]);
  k.links.get(spec.netns)?.delete('eth0');
  k.calls = [];
  await ensureNetnsGuest(fakeOps(k), spec);
  t.same(k.writes().slice(0, 2), [
    `ip link del ${spec.port}`,
    `ip link add ${spec.port} mtu 1500 type veth peer name eth0 mtu 1500 address 0a:b7:e7:00:00:05 netns ${spec.netns}`,
  ]);
});

t.test('sweepOrphans removes owned leftovers only and gathers failures', async (t) => {
  const k = new FakeKernel();
  for (const n of ['lkb000001', 'lkb000002', 'lkeabcdef', 'eth0', 'lkxkeep', 'lkpfail00001'])
    k.add(ROOT, n, 'veth');
  for (const n of ['lk-ep-a', 'lk-g-old', 'zz-lk-keep']) k.netns.add(n);
  k.failOn = (a) => a === 'ip link del lkpfail00001';
  const err = await sweepOrphans(fakeOps(k), names, {
    links: ['lkb000001'],
    netns: ['lk-ep-a'],
  }).catch((e) => e);
  t.type(err, AggregateError);
  t.equal(err.errors.length, 1);
  t.match(
    err.message,
    /could not sweep 1 orphaned host object\(s\); first was: could not delete link "lkpfail00001"/,
  );
  t.same([...k.netns].sort(), ['lk-ep-a', 'zz-lk-keep']);
  t.same([...(k.links.get(ROOT)?.keys() ?? [])].sort(), ['eth0', 'lkb000001', 'lkpfail00001', 'lkxkeep']);
  k.failOn = undefined;
  const ok = await sweepOrphans(fakeOps(k), names, {
    links: ['lkb000001'],
    netns: ['lk-ep-a'],
  });
  t.same(ok, { removedLinks: ['lkpfail00001'], removedNetns: [] });
  t.ok(BerthError);
});

t.test('sweepOrphans removes resolver folders of owned namespaces that are gone', async (t) => {
  const k = new FakeKernel();
  k.netns.add('lk-g-live');
  for (const n of ['lk-g-live', 'lk-g-gone', 'zz-g-foreign']) await fakeEtc.ensure(n);
  await sweepOrphans(fakeOps(k), names, { links: [], netns: ['lk-g-live'] });
  const left = (await fakeEtc.list()).filter((n) => ['lk-g-live', 'lk-g-gone', 'zz-g-foreign'].includes(n));
  t.same(left.sort(), ['lk-g-live', 'zz-g-foreign'], 'the live one and the foreign one stay');
  for (const n of left) await fakeEtc.remove(n);
});

t.test('remove gathers failures; a failing undo is reported with the cause', async (t) => {
  const k = new FakeKernel();
  k.netns.add('lk-ep-x');
  k.add(ROOT, 'lkex', 'veth');
  k.failOn = (a) => a.startsWith('ip link del') || a.startsWith('ip netns del');
  const err = await removeEndpoint(fakeOps(k), { netns: 'lk-ep-x', veth: 'lkex' }).catch((e) => e);
  t.type(err, AggregateError);
  t.equal(err.errors.length, 2, 'both parts were tried');
  t.match(err.message, /could not remove veth "lkex", network namespace "lk-ep-x"/);

  const k2 = new FakeKernel();
  k2.add(ROOT, 'lkbx', 'bridge');
  k2.failOn = (a) => a === 'ip -n lk-g-x link set lo up' || a.startsWith('ip link del');
  await t.rejects(
    ensureNetnsGuest(fakeOps(k2), {
      netns: 'lk-g-x',
      port: 'lkpx',
      bridge: 'lkbx',
      mac: '0a:00:00:00:00:07',
      mtu: 1500,
    }),
    {
      message: /could not bring up link "lo".*\(and could not undo veth "lkpx": could not delete link "lkpx"/,
    },
  );
  t.notOk(k2.netns.has('lk-g-x'), 'the other undo steps still ran');
});

t.test('HostLinks binds one LinkOps and one prefix', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0');
  const links = new HostLinks(names, fakeOps(k));
  const br = names.bridge('h');
  await links.ensureBridge(br, { mtu: 1500 });
  const plan = links.planVlanNetwork('subinterface', 'h', 'up0', 3);
  t.equal(links.chooseVlanMode('subinterface', allVlan, 'h'), 'subinterface');
  await links.applyVlanPlan(plan, allVlan);
  const ep = {
    network: 'h',
    bridge: br,
    netns: 'lk-ep-h',
    veth: 'lkeh',
    serviceIp: '10.0.0.2',
    prefixLen: 24,
    mtu: 1500,
  };
  await links.ensureEndpoint(ep);
  const g = { netns: 'lk-g-h', port: 'lkph', bridge: br, mac: '0a:00:00:00:00:08', mtu: 1500 };
  await links.ensureNetnsGuest(g);
  t.same((await links.listOwned()).netns.sort(), ['lk-ep-h', 'lk-g-h']);
  await links.setPortVlan('lkph', 9);
  await links.removeNetnsGuest(g);
  await links.removeEndpoint(ep);
  t.same(await links.sweepOrphans({ links: [], netns: [] }), {
    removedLinks: [br, names.vlanSubinterface('up0', 3)],
    removedNetns: [],
  });
  await links.removeBridge(br);
  k.failOn = (a) => a.includes('vlan');
  t.same(await links.detectVlanSupport(), { dot1q: false, vlanFiltering: false });
});

t.test('the real adapter speaks plain iproute2 argv', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'lkpm');
  k.netns.add('lk-g-m');
  const ops = fakeOps(k);
  await ops.moveToNetns('lkpm', 'lk-g-m', 'eth0');
  await ops.addAddress('eth0', '10.0.0.5/24', 'lk-g-m');
  await ops.addNetns('lk-g-m');
  t.match(readFileSync(join(fakeEtc.root, 'lk-g-m', 'resolv.conf'), 'utf8'), /own resolver file/);
  await ops.deleteNetns('lk-g-m');
  t.notOk(existsSync(join(fakeEtc.root, 'lk-g-m')), 'the folder goes with the namespace');
  await ops.deleteNetns('lk-g-none');
  await ops.deleteLink('lk-none');
  t.same(k.calls, [
    'ip link set lkpm netns lk-g-m name eth0',
    'ip -n lk-g-m addr add 10.0.0.5/24 dev eth0',
    'ip netns add lk-g-m',
    'ip netns del lk-g-m',
    'ip netns del lk-g-none',
    'ip link del lk-none',
  ]);
  await t.rejects(ops.writeSysctl({ 'net/../../etc': '1' }), /bad sysctl key/);
});
