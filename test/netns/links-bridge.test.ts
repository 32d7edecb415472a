// ensureBridge and VLAN detection against the real kernel.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { osCommandRunner } from '../../base/command.js';
import { bridgeMac, ensureBridge, removeBridge } from '../../hostnet/links/bridge.js';
import { IpLinkOps } from '../../hostnet/links/ip-link-ops.js';
import {
  applyVlanPlan,
  chooseVlanMode,
  detectVlanSupport,
  planVlanNetwork,
} from '../../hostnet/links/vlan.js';
import { Names } from '../../hostnet/names.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (real bridges and veths)');
  process.exit(0);
}

// A sub-prefix of this helper's "lk", so parallel link tests never sweep or reuse each other's objects.
const names = new Names('lkr');
const ops = new IpLinkOps();
const sh = (...argv: string[]) => osCommandRunner.run(argv);
const sys = async (path: string) => (await readFile(`/sys/class/net/${path}`, 'utf8')).trim();

t.test('ensureBridge twice: same ifindex, STP off, pinned MAC, no address', async (t) => {
  const br = names.bridge('flat');
  const port = `${names.prefix}pjoin0`;
  t.teardown(async () => {
    await ops.deleteLink(port);
    await ops.deleteLink(br);
  });
  const first = await ensureBridge(ops, br, { mtu: 1450 });
  const second = await ensureBridge(ops, br, { mtu: 1450 });
  t.equal(second.ifindex, first.ifindex, 'not recreated');
  t.equal(await sys(`${br}/ifindex`), String(first.ifindex));
  t.equal(await sys(`${br}/bridge/stp_state`), '0');
  t.equal(await sys(`${br}/bridge/forward_delay`), '0');
  t.equal(await sys(`${br}/address`), bridgeMac(br));
  t.equal(await sys(`${br}/mtu`), '1450');
  t.equal(second.up, true, 'administratively up');
  const { stdout } = await sh('ip', '-j', 'addr', 'show', 'dev', br);
  const addrs = (JSON.parse(stdout) as { addr_info: unknown[] }[])[0]?.addr_info;
  t.same(addrs, [], 'no IPv4 and no IPv6 (not even link-local) on a tenant bridge');
  t.equal((await readFile(`/proc/sys/net/ipv6/conf/${br}/disable_ipv6`, 'utf8')).trim(), '1');

  // A port with a lower MAC would become the bridge MAC if it were not pinned.
  await sh(
    'ip',
    'link',
    'add',
    port,
    'address',
    '02:00:00:00:00:01',
    'type',
    'veth',
    'peer',
    'name',
    `${port}x`,
  );
  await sh('ip', 'link', 'set', port, 'master', br, 'up');
  t.equal(await sys(`${br}/address`), bridgeMac(br), 'the MAC does not follow a joining port');
  const third = await ensureBridge(ops, br, { mtu: 1450 });
  t.equal(third.ifindex, first.ifindex);

  // Someone adds an address by hand: the next ensure takes it away again.
  await sh('ip', 'addr', 'add', '10.99.0.1/24', 'dev', br);
  const fourth = await ensureBridge(ops, br, { mtu: 1450 });
  t.same(fourth.ipv4, []);
  t.equal(fourth.ifindex, first.ifindex);
});

t.test('a name taken by a non-bridge is refused, not replaced', async (t) => {
  const name = `${names.prefix}bveth0`;
  t.teardown(() => ops.deleteLink(name));
  await sh('ip', 'link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}x`);
  await t.rejects(ensureBridge(ops, name, { mtu: 1500 }), {
    code: 'BERTH_ERR_CONFLICT',
    message: `"${name}" already exists but is not a bridge (it is a veth)`,
  });
  await t.rejects(removeBridge(ops, name), { code: 'BERTH_ERR_CONFLICT' });
  t.ok(await ops.getLink(name), 'still there');
  await removeBridge(ops, `${names.prefix}bnone0`);
});

/** Asks the kernel directly, without berth's code: the answer detectVlanSupport must match. */
async function kernelCan(): Promise<{ dot1q: boolean; vlanFiltering: boolean }> {
  const br = `${names.prefix}kprb`;
  const sub = `${names.prefix}kprbv`;
  await sh('ip', 'link', 'add', br, 'type', 'bridge');
  try {
    const vlanFiltering = await sh('ip', 'link', 'set', br, 'type', 'bridge', 'vlan_filtering', '1')
      .then(async () => (await sys(`${br}/bridge/vlan_filtering`)) === '1')
      .catch(() => false);
    const dot1q = await sh('ip', 'link', 'add', 'link', br, 'name', sub, 'type', 'vlan', 'id', '7')
      .then(() => true)
      .catch(() => false);
    return { dot1q, vlanFiltering };
  } finally {
    await sh('ip', 'link', 'del', sub).catch(() => undefined);
    await sh('ip', 'link', 'del', br).catch(() => undefined);
  }
}

// Both paths, whichever this kernel has: a mode the kernel lacks fails loudly and
// leaves nothing behind; a mode it has builds the tagged data path. The lab-host
// VMs (Debian's kernel, 8021q and vlan_filtering as modules) run the data path too.
t.test(
  'VLAN support is detected as the kernel answers, and each mode does what the kernel allows',
  async (t) => {
    const uplink = `${names.prefix}up0`;
    t.teardown(async () => {
      await ops.deleteLink(uplink);
      await ops.deleteLink(names.trunkBridge(uplink));
      await ops.deleteLink(names.bridge('vnet'));
    });
    const before = (await ops.listLinks()).map((l) => l.name);
    const support = await detectVlanSupport(ops, names);
    t.same(support, await kernelCan(), 'detection agrees with the kernel asked directly');
    const after = (await ops.listLinks()).map((l) => l.name);
    t.same(
      after.filter((n) => n.startsWith(names.prefix)),
      before.filter((n) => n.startsWith(names.prefix)),
      'probe removed',
    );

    await sh('ip', 'link', 'add', uplink, 'type', 'veth', 'peer', 'name', `${uplink}x`);
    for (const mode of ['filtering', 'subinterface'] as const) {
      const plan = planVlanNetwork(names, mode, 'vnet', uplink, 42);
      const has = mode === 'filtering' ? support.vlanFiltering : support.dot1q;
      if (!has) {
        t.comment(
          `this kernel lacks ${mode === 'filtering' ? 'bridge vlan_filtering' : '8021q'}: the refusal path`,
        );
        await t.rejects(applyVlanPlan(ops, plan, support), {
          code: 'BERTH_ERR_KERNEL_FEATURE',
          message: mode === 'filtering' ? /"bridge vlan_filtering"/ : /"8021q"/,
        });
        // Even with detection lied to, the kernel refuses; the error is a host error, never untagged success.
        await t.rejects(applyVlanPlan(ops, plan, { dot1q: true, vlanFiltering: true }), {
          code: 'BERTH_ERR_HOST_OP',
        });
        t.equal(
          (await ops.getLink(uplink))?.master,
          undefined,
          `${mode}: the uplink was never put on an untagged bridge`,
        );
        t.notOk(await ops.getLink(names.bridge('vnet')), `${mode}: no untagged bridge was left behind`);
        t.notOk(await ops.getLink(names.trunkBridge(uplink)), `${mode}: no trunk bridge was left behind`);
        continue;
      }
      t.comment(
        `this kernel has ${mode === 'filtering' ? 'bridge vlan_filtering' : '8021q'}: the tagged path`,
      );
      await applyVlanPlan(ops, plan, support);
      await applyVlanPlan(ops, plan, support); // twice: every step reads before it writes
      if (mode === 'filtering') {
        t.equal(await sys(`${plan.bridge}/bridge/vlan_filtering`), '1', 'the trunk bridge filters VLANs');
        t.equal((await ops.getLink(uplink))?.master, plan.bridge, 'the uplink is the trunk port');
        const vlans = JSON.parse((await sh('bridge', '-j', 'vlan', 'show', 'dev', uplink)).stdout) as {
          vlans: { vlan: number }[];
        }[];
        t.ok(
          vlans.some((v) => v.vlans.some((x) => x.vlan === 42)),
          'VID 42 is allowed on the uplink',
        );
        await ops.deleteLink(plan.bridge);
      } else {
        const sub = names.vlanSubinterface(uplink, 42);
        const link = await ops.getLink(sub);
        t.equal(link?.kind, 'vlan', 'the tagged subinterface exists');
        t.equal(link?.master, plan.bridge, 'on the network bridge');
        t.equal((await ops.getLink(uplink))?.master, undefined, 'the uplink itself stays off every bridge');
        await ops.deleteLink(sub);
        await ops.deleteLink(plan.bridge);
      }
    }
    if (!support.vlanFiltering && !support.dot1q)
      t.throws(() => chooseVlanMode('auto', support, 'vnet'), {
        code: 'BERTH_ERR_KERNEL_FEATURE',
        message: /neither "bridge vlan_filtering" nor "8021q"/,
      });
    else t.ok(chooseVlanMode('auto', support, 'vnet'), 'auto picks a mode the kernel has');
  },
);
