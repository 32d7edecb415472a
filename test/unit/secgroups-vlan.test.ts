// Security groups on a VLAN-filtering trunk bridge: one bridge carries many
// networks (one per VLAN) whose subnets may overlap, so connection state is
// zoned per (bridge, VLAN). Logic around the seams; the kernel path is
// test/labhost/secgroups-bridge-ct.test.ts (Debian's kernel in a lab host).
import t from 'tap';
import type { CommandRunner } from '../../base/command.js';
import type { NftApplier } from '../../hostnet/guard/nft.js';
import { Names } from '../../hostnet/names.js';
import { NftSecGroupDriver } from '../../hostnet/secgroups/nft-driver.js';
import { modelOf, observeSg } from '../../hostnet/secgroups/observe.js';
import { planSecGroups } from '../../hostnet/secgroups/plan.js';
import { renderSecGroups, zoneOf } from '../../hostnet/secgroups/render.js';
import type { SgPort, SgSet } from '../../hostnet/secgroups/state.js';
import { validateSecGroups } from '../../hostnet/secgroups/validate.js';

const names = new Names('sg');
const SET: SgSet = {
  name: 's_web',
  source: 'role:web',
  members: [{ ip: '10.1.0.2', mac: '02:00:00:00:01:02', port: 'sgp2' }],
};
const port = (ifname: string, bridge: string, vlan?: number): SgPort => ({
  ifname,
  bridge,
  ...(vlan !== undefined ? { vlan } : {}),
  mac: '02:00:00:00:00:01',
  ip: '10.1.0.21',
  instance: ifname,
  endpointPorts: [],
  rules: [{ id: 'sr-a', group: 'g', proto: 'udp', ports: { from: 53, to: 53 }, from: { set: 's_web' } }],
});
const TRUNK = [port('sgp1', 'sgtr', 100), port('sgp2', 'sgtr', 200), port('sgp3', 'sgflat')];

t.test('zones are per (bridge, VLAN), stable, and apart from the bridge zone', async (t) => {
  const zones = [zoneOf('sgtr'), zoneOf('sgtr', 100), zoneOf('sgtr', 200)];
  t.equal(new Set(zones).size, 3);
  t.equal(zoneOf('sgtr', 100), zoneOf('sgtr', 100));
  for (const z of zones) t.ok(z >= 1 && z <= 65535);
});

t.test('bridge-ct: the raw chain zones tagged frames by tag, untagged ones by pvid', async (t) => {
  const script = renderSecGroups(names, 'bridge-ct', TRUNK, [SET]);
  const lines = script.trim().split('\n');
  t.ok(lines.includes('add map bridge sg_sg tzones { typeof meta ibrname . vlan id : ct zone; }'));
  t.ok(lines.includes('add map bridge sg_sg pzones { typeof meta ibrname . meta ibrpvid : ct zone; }'));
  const raw = lines.filter((l) => l.startsWith('add rule bridge sg_sg raw '));
  t.match(raw[0], /ct zone set meta ibrname map @zones/, 'the bridge zone first');
  t.match(
    raw[1],
    /^add rule bridge sg_sg raw ether type 8021q ct zone set meta ibrname \. vlan id map @tzones/,
  );
  t.match(raw[2], /ether type != 8021q ct zone set meta ibrname \. meta ibrpvid map @pzones/);
  const vlanElems = `{ "sgtr" . 100 : ${zoneOf('sgtr', 100)}, "sgtr" . 200 : ${zoneOf('sgtr', 200)} }`;
  t.ok(lines.includes(`add element bridge sg_sg tzones ${vlanElems}`), 'both VLANs by tag');
  t.ok(lines.includes(`add element bridge sg_sg pzones ${vlanElems}`), 'both VLANs by pvid');
  t.ok(lines.includes(`add element bridge sg_sg zones { "sgflat" : ${zoneOf('sgflat')} }`));
  t.notOk(script.includes('"sgtr" :'), 'the trunk bridge is left out of the bridge-name map');
});

t.test('plan: the model is a fixed point; a VLAN change moves the zone elements', async (t) => {
  const model = modelOf(names, 'bridge-ct', TRUNK, [SET]);
  t.equal(planSecGroups(names, 'bridge-ct', model, TRUNK, [SET]), undefined, 'nothing differs');
  const moved = [port('sgp1', 'sgtr', 300), TRUNK[1] as SgPort, TRUNK[2] as SgPort];
  const lines = planSecGroups(names, 'bridge-ct', model, moved, [SET])?.script.trim().split('\n') ?? [];
  t.same(lines, [
    `add element bridge sg_sg tzones { "sgtr" . 300 : ${zoneOf('sgtr', 300)} }`,
    `add element bridge sg_sg pzones { "sgtr" . 300 : ${zoneOf('sgtr', 300)} }`,
    'delete element bridge sg_sg tzones { "sgtr" . 100 }',
    'delete element bridge sg_sg pzones { "sgtr" . 100 }',
  ]);
  model.pvidZones.set('sgtr/200', 7);
  const fixed = planSecGroups(names, 'bridge-ct', model, TRUNK, [SET])?.script.trim().split('\n') ?? [];
  t.same(
    fixed,
    [
      'delete element bridge sg_sg pzones { "sgtr" . 200 }',
      `add element bridge sg_sg tzones { "sgtr" . 200 : ${zoneOf('sgtr', 200)} }`,
      `add element bridge sg_sg pzones { "sgtr" . 200 : ${zoneOf('sgtr', 200)} }`,
    ],
    'a wrong value is deleted first, then put right',
  );
});

t.test('observe reads the concatenated keys back', async (t) => {
  const listing = {
    nftables: [
      { map: { family: 'bridge', name: 'tzones', elem: [[{ concat: ['sgtr', 100] }, 41]] } },
      { map: { family: 'bridge', name: 'pzones', elem: [[{ concat: ['sgtr', 100] }, 42]] } },
      { map: { family: 'bridge', name: 'zones', elem: [['sgflat', 43]] } },
    ],
  };
  const seen = observeSg(listing);
  t.same([...seen.tagZones], [['sgtr/100', 41]]);
  t.same([...seen.pvidZones], [['sgtr/100', 42]]);
  t.same([...seen.zones], [['sgflat', 43]]);
});

t.test('br-netfilter cannot zone per VLAN: such a port is left out, with the cause', async (t) => {
  const state = { ports: TRUNK, sets: [SET] };
  const v = validateSecGroups(state, 'br-netfilter');
  t.same(
    v.ports.map((p) => p.ifname),
    ['sgp3'],
    'the flat port is still guarded',
  );
  t.equal(v.errors.length, 2);
  t.match(
    v.errors[0],
    /^could not apply security-group port "sgp1": security groups on a VLAN-filtering bridge need nf_conntrack_bridge \(conntrack zones per VLAN\); this kernel has only br_netfilter$/,
  );
  t.same(validateSecGroups(state, 'bridge-ct').errors, [], 'bridge-ct takes them');
  const bad = validateSecGroups({
    ports: [port('sgp4', 'sgtr', 0), port('sgp5', 'sgtr', 4095)],
    sets: [SET],
  });
  t.same(bad.ports, []);
  t.match(bad.errors.join('\n'), /VLAN 0 is not 1-4094[\s\S]*VLAN 4095 is not 1-4094/);
});

t.test('the driver: br-netfilter apply reports the refusal; cutFlows cuts in the VLAN zone', async (t) => {
  const nft: NftApplier = {
    run: async () => undefined,
    listTable: async () => undefined,
    list: async () => undefined,
  };
  const ran: string[][] = [];
  const runner: CommandRunner = {
    run: async (argv) => {
      ran.push(argv);
      return { stdout: '', stderr: '' };
    },
  };
  const brnf = new NftSecGroupDriver(names, { nft, runner, mode: 'br-netfilter' });
  const r = await brnf.apply({ ports: TRUNK, sets: [SET] });
  t.equal(r.errors.length, 2, 'apply reports both VLAN ports (the enforcer refuses the create)');

  const ct = new NftSecGroupDriver(names, { nft, runner, mode: 'bridge-ct' });
  t.same((await ct.apply({ ports: TRUNK, sets: [SET] })).errors, []);
  // The same address is guarded in VLAN 100, VLAN 200 and on the flat bridge: three zones.
  await ct.cutFlows([{ src: '10.1.0.2', dst: '10.1.0.21' }]);
  const zones = [...new Set(ran.map((argv) => Number(argv[argv.indexOf('-w') + 1])))].sort((a, b) => a - b);
  t.same(
    zones,
    [zoneOf('sgtr', 100), zoneOf('sgtr', 200), zoneOf('sgflat')].sort((a, b) => a - b),
  );
});
