// Flat uplink plans against the in-memory kernel: the argv they write, that a
// second apply writes nothing, that an uplink taken out of its bridge is put
// back, that every refusal happens before any write, and the one-uplink-one-
// bridge rule across berth's networks.
import t from 'tap';
import { bridgeMac } from '../../hostnet/links/bridge.js';
import {
  findUplinkClash,
  planFlatNetwork,
  releaseUplink,
  type UplinkUse,
  uplinkBridge,
  uplinkClashError,
} from '../../hostnet/links/flat.js';
import { applySteps } from '../../hostnet/links/steps.js';
import { planVlanNetwork } from '../../hostnet/links/vlan.js';
import { Names } from '../../hostnet/names.js';
import { FakeKernel, fakeOps, ROOT } from '../helpers/fake_kernel.js';

const names = new Names('lf');

t.test('flat plan: golden argv, then a second apply writes nothing', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0', undefined, { mtu: 9000 });
  const plan = planFlatNetwork(names, 'prov', 'up0', { mtu: 1500 });
  const br = names.bridge('prov');
  t.match(plan, { mode: 'flat', network: 'prov', uplink: 'up0', bridge: br, portVid: undefined });
  t.equal(uplinkBridge(plan), br, "the uplink becomes a port of the network's own bridge");
  await applySteps(fakeOps(k), plan.steps);
  t.same(k.writes(), [
    `ip link add ${br} address ${bridgeMac(br)} mtu 1500 type bridge stp_state 0 forward_delay 0`,
    `sysctl -qw net/ipv6/conf/${br}/disable_ipv6=1`,
    `ip link set ${br} up`,
    `ip link set up0 master ${br}`,
    'ip link set up0 up',
  ]);
  k.calls = [];
  await applySteps(fakeOps(k), plan.steps);
  t.same(k.writes(), [], 'reapplying the plan changes nothing');
  t.ok(k.calls.length > 0, 'but it did read');
});

t.test('an uplink taken out of its bridge (nomaster) is put back, and only that is written', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0');
  const plan = planFlatNetwork(names, 'prov', 'up0');
  await applySteps(fakeOps(k), plan.steps);
  delete k.ns(ROOT).get('up0')?.master;
  k.calls = [];
  await applySteps(fakeOps(k), plan.steps);
  t.same(k.writes(), [`ip link set up0 master ${plan.bridge}`]);
});

t.test('the bridge MTU is restated when enslaving the uplink raised it', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0', undefined, { mtu: 9000 });
  const plan = planFlatNetwork(names, 'prov', 'up0', { mtu: 1500 });
  await applySteps(fakeOps(k), plan.steps);
  // What the kernel does when the bridge's only port has a larger MTU.
  (k.ns(ROOT).get(plan.bridge) as { mtu: number }).mtu = 9000;
  k.calls = [];
  await applySteps(fakeOps(k), plan.steps);
  t.same(k.writes(), [`ip link set ${plan.bridge} mtu 1500`]);
});

t.test('refusals name the field and the reason, and come before any write', async (t) => {
  const cases: {
    name: string;
    setup: (k: FakeKernel) => void;
    mtu?: number;
    want: { code: string; field: string; message: RegExp };
  }[] = [
    {
      name: 'missing uplink',
      setup: () => {},
      want: {
        code: 'BERTH_ERR_INVALID_ARGUMENT',
        field: 'uplink',
        message: /^could not create network "prov": uplink "up0" does not exist on this host$/,
      },
    },
    {
      name: "another bridge's port",
      setup: (k) => {
        k.add(ROOT, 'br-lan', 'bridge');
        k.add(ROOT, 'up0', undefined, { master: 'br-lan' });
      },
      want: {
        code: 'BERTH_ERR_CONFLICT',
        field: 'uplink',
        message:
          /^could not create network "prov": uplink "up0" is already a port of bridge "br-lan"; berth does not take it away/,
      },
    },
    {
      name: 'a bridge as the uplink',
      setup: (k) => {
        k.add(ROOT, 'up0', 'bridge');
      },
      want: { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'uplink', message: /uplink "up0" is a bridge/ },
    },
    {
      name: 'an MTU below the network',
      setup: (k) => {
        k.add(ROOT, 'up0', undefined, { mtu: 1400 });
      },
      want: {
        code: 'BERTH_ERR_INVALID_ARGUMENT',
        field: 'mtu',
        message: /uplink "up0" has MTU 1400, below the network's MTU 1500; .*--mtu 1400 or lower/,
      },
    },
  ];
  for (const c of cases) {
    const k = new FakeKernel();
    c.setup(k);
    k.calls = [];
    const plan = planFlatNetwork(names, 'prov', 'up0', { mtu: c.mtu ?? 1500 });
    await t.rejects(applySteps(fakeOps(k), plan.steps), c.want, c.name);
    t.same(k.writes(), [], `${c.name}: nothing written`);
    t.notOk(k.ns(ROOT).has(plan.bridge), `${c.name}: no bridge made`);
  }
});

t.test("berth's own interfaces are never an uplink", async (t) => {
  for (const own of [
    names.port('abcdef12', 0),
    names.endpointVeth('x'),
    names.bridge('x'),
    names.trunkBridge('e'),
  ])
    t.throws(() => planFlatNetwork(names, 'prov', own), {
      code: 'BERTH_ERR_INVALID_ARGUMENT',
      field: 'uplink',
      message: new RegExp(`uplink "${own}" is one of berth's own interfaces`),
    });
  t.doesNotThrow(
    () => planFlatNetwork(names, 'prov', 'lfxu0'),
    'a name with the prefix but no owned kind is fine',
  );
});

t.test('removal takes the uplink out of this bridge only, and never deletes or downs it', async (t) => {
  const k = new FakeKernel();
  k.add(ROOT, 'up0', undefined, { flags: ['UP'] });
  const plan = planFlatNetwork(names, 'prov', 'up0');
  await applySteps(fakeOps(k), plan.steps);
  k.calls = [];
  await releaseUplink(fakeOps(k), 'up0', plan.bridge);
  t.same(k.writes(), ['ip link set up0 nomaster']);
  t.ok(k.ns(ROOT).get('up0')?.flags.includes('UP'), 'still there and up');
  k.calls = [];
  await releaseUplink(fakeOps(k), 'up0', plan.bridge);
  (k.ns(ROOT).get('up0') as { master?: string }).master = 'br-lan';
  await releaseUplink(fakeOps(k), 'up0', plan.bridge);
  await releaseUplink(fakeOps(k), 'gone0', plan.bridge);
  t.same(k.writes(), [], "released twice, someone else's bridge, or missing: nothing written");
});

t.test('one uplink, one bridge: which networks clash', async (t) => {
  const use = (network: string, uplink: string, mode: UplinkUse['mode'], vid = 10): UplinkUse => {
    const plan =
      mode === 'flat'
        ? planFlatNetwork(names, network, uplink)
        : planVlanNetwork(names, mode, network, uplink, vid);
    return { network, uplink, bridge: uplinkBridge(plan), mode };
  };
  const a = use('a', 'eth1', 'flat');
  const rows: [string, UplinkUse, UplinkUse[], string | undefined][] = [
    ['flat vs flat on one uplink', use('b', 'eth1', 'flat'), [a], 'a'],
    ['flat vs flat on another uplink', use('b', 'eth2', 'flat'), [a], undefined],
    ['flat vs a filtering trunk', use('b', 'eth1', 'flat'), [use('v', 'eth1', 'filtering')], 'v'],
    ['a filtering trunk vs flat', use('v', 'eth1', 'filtering'), [a], 'a'],
    [
      'flat vs subinterface VLAN (tagged frames go to eth1.vid first)',
      use('b', 'eth1', 'flat'),
      [use('s', 'eth1', 'subinterface')],
      undefined,
    ],
    ['subinterface VLAN vs flat', use('s', 'eth1', 'subinterface'), [a], undefined],
    [
      'two filtering VLANs share the trunk',
      use('v', 'eth1', 'filtering', 10),
      [use('w', 'eth1', 'filtering', 20)],
      undefined,
    ],
    ['a network never clashes with itself', use('a', 'eth1', 'flat'), [a], undefined],
  ];
  for (const [what, mine, others, want] of rows) t.equal(findUplinkClash(mine, others)?.network, want, what);
  const err = uplinkClashError(use('b', 'eth1', 'flat'), a);
  t.match(err, {
    code: 'BERTH_ERR_CONFLICT',
    field: 'uplink',
    message: `could not create network "b": uplink "eth1" is already used by flat network "a" (a port of its bridge "${names.bridge('a')}"); this network would need it in its own bridge, and an interface can be a port of one bridge only`,
  });
  t.match(
    uplinkClashError(use('b', 'eth1', 'flat'), use('v', 'eth1', 'filtering')).message,
    /the VLAN trunk of network "v" \(filtering mode/,
  );
});
