// The security-group diff, validation, mode detection and flow cuts, as
// logic around their seams (the real kernel path is test/netns/secgroups-*).
import t from 'tap';
import { CommandError, type CommandRunner } from '../../base/command.js';
import { BerthError } from '../../base/errors.js';
import { Names } from '../../hostnet/names.js';
import { cutCommands, cutFlowsWith } from '../../hostnet/secgroups/conntrack.js';
import { BRIDGE_NF_CALL_IPTABLES, detectSgMode, type SgKernel } from '../../hostnet/secgroups/detect.js';
import { emptyObserved, type ObservedSg } from '../../hostnet/secgroups/observe.js';
import { planSecGroups } from '../../hostnet/secgroups/plan.js';
import {
  baseChains,
  fingerprintOf,
  portChain,
  portCounters,
  portRules,
  skeletonFingerprint,
  zoneOf,
} from '../../hostnet/secgroups/render.js';
import {
  memberElement,
  type SgMode,
  type SgPort,
  type SgRule,
  type SgSet,
} from '../../hostnet/secgroups/state.js';
import { validateSecGroups } from '../../hostnet/secgroups/validate.js';

const names = new Names('sg');
const MODE: SgMode = 'br-netfilter';
const port = (ifname: string, rules = [RULE]): SgPort => ({
  ifname,
  bridge: 'sgb1',
  mac: '02:00:00:00:00:01',
  ip: '10.1.0.10',
  instance: 'i1',
  endpointPorts: ['sge1'],
  rules,
});
const RULE: SgRule = {
  id: 'sr-a',
  group: 'g',
  proto: 'tcp' as const,
  ports: { from: 80, to: 80 },
  from: { set: 's_web' },
};
const RULE2: SgRule = { id: 'sr-b', group: 'g', proto: 'icmp' as const, from: { cidr: '10.0.0.0/8' } };
/** A member on port `sgp<n>` with MAC ...:0n and address 10.1.0.n. */
const member = (n: number) => ({ ip: `10.1.0.${n}`, mac: `02:00:00:00:01:0${n}`, port: `sgp${n}` });
const SET: SgSet = { name: 's_web', source: 'role:web', members: [member(2), member(3)] };

/** What the host holds after applying these ports and sets whole. */
function applied(ports: SgPort[], sets: SgSet[]): ObservedSg {
  const o = emptyObserved();
  for (const c of baseChains(MODE)) o.baseChains.set(c, skeletonFingerprint(names, MODE));
  for (const p of ports) {
    o.chains.set(p.ifname, fingerprintOf(portRules(names, MODE, p)));
    o.dispatch.set(p.ifname, portChain(p.ifname));
    o.guarded.add(p.ifname);
    for (const c of portCounters(p)) o.counters.set(c, { packets: 0, bytes: 0 });
    o.zones.set(p.bridge, zoneOf(p.bridge));
    o.bridges.add(p.bridge);
  }
  for (const s of sets) o.sets.set(s.name, new Set(s.members.map(memberElement)));
  o.counters.set('pickup', { packets: 0, bytes: 0 });
  return o;
}

t.test('nothing differs: no script', async (t) => {
  t.equal(planSecGroups(names, MODE, applied([port('sgp1')], [SET]), [port('sgp1')], [SET]), undefined);
});

t.test('no table, a foreign skeleton, or the other mode: the tables are written whole', async (t) => {
  t.equal(planSecGroups(names, MODE, undefined, [port('sgp1')], [SET])?.whole, true);
  const o = applied([port('sgp1')], [SET]);
  o.baseChains.set('inet forward', '');
  t.equal(planSecGroups(names, MODE, o, [port('sgp1')], [SET])?.whole, true, 'a flushed base chain');
  t.equal(
    planSecGroups(names, 'bridge-ct', applied([port('sgp1')], [SET]), [port('sgp1')], [SET])?.whole,
    true,
  );
});

t.test('a member change is element adds and deletes only', async (t) => {
  const plan = planSecGroups(
    names,
    MODE,
    applied([port('sgp1')], [SET]),
    [port('sgp1')],
    [{ ...SET, members: [member(3), member(4)] }],
  );
  t.same(plan?.script.trim().split('\n'), [
    'add element bridge sg_sg s_web { 10.1.0.4 . 02:00:00:00:01:04 . "sgp4" }',
    'delete element bridge sg_sg s_web { 10.1.0.2 . 02:00:00:00:01:02 . "sgp2" }',
  ]);
  const moved = planSecGroups(
    names,
    MODE,
    applied([port('sgp1')], [SET]),
    [port('sgp1')],
    [{ ...SET, members: [member(2), { ...member(3), port: 'uplink0' }] }],
  );
  t.same(
    moved?.script.trim().split('\n'),
    [
      'add element bridge sg_sg s_web { 10.1.0.3 . 02:00:00:00:01:03 . "uplink0" }',
      'delete element bridge sg_sg s_web { 10.1.0.3 . 02:00:00:00:01:03 . "sgp3" }',
    ],
    'a member that moved to another host is re-bound to the uplink, as elements',
  );
});

t.test('a rule change rewrites that port chain alone, in one flush + re-add', async (t) => {
  const before = applied([port('sgp1', [RULE, RULE2]), port('sgp2')], [SET]);
  const plan = planSecGroups(names, MODE, before, [port('sgp1', [RULE]), port('sgp2')], [SET]);
  const lines = plan?.script.trim().split('\n') ?? [];
  t.ok(lines.includes('flush chain bridge sg_sg port_sgp1'));
  t.notOk(
    lines.some((l) => l.includes('port_sgp2')),
    'the other port is untouched',
  );
  t.ok(lines.at(-1) === 'delete counter bridge sg_sg sgp1.sr-b', 'the removed rule’s counter goes last');
  t.ok(
    lines.indexOf('flush chain bridge sg_sg port_sgp1') <
      lines.indexOf('delete counter bridge sg_sg sgp1.sr-b'),
    'after the rule that used it',
  );
});

t.test('a port removed: its element, chain and counters go; a new one is added before', async (t) => {
  const plan = planSecGroups(names, MODE, applied([port('sgp1')], [SET]), [port('sgp2')], [SET]);
  const lines = plan?.script.trim().split('\n') ?? [];
  const add = lines.indexOf('add element bridge sg_sg ports { "sgp2" : jump port_sgp2 }');
  const del = lines.indexOf('delete element bridge sg_sg ports { "sgp1" }');
  t.ok(add >= 0 && del > add, 'adds before deletes');
  t.ok(lines.includes('delete chain bridge sg_sg port_sgp1'));
  t.ok(lines.includes('delete element bridge sg_sg guarded { "sgp1" }'));
  t.ok(lines.includes('delete counter bridge sg_sg sgp1.drop'));
  t.notOk(lines.includes('delete counter bridge sg_sg pickup'), 'table counters stay');
});

t.test('the last port on a bridge takes its zone along; an unused set is deleted', async (t) => {
  const plan = planSecGroups(names, MODE, applied([port('sgp1')], [SET]), [], []);
  const lines = plan?.script.trim().split('\n') ?? [];
  t.ok(lines.includes('delete element inet sg_sg zones { "sgb1" }'));
  t.ok(lines.includes('delete element inet sg_sg bridges { "sgb1" }'));
  t.ok(lines.includes('delete set bridge sg_sg s_web'));
});

t.test('a wrong zone value is replaced', async (t) => {
  const o = applied([port('sgp1')], [SET]);
  o.zones.set('sgb1', 9);
  const lines = planSecGroups(names, MODE, o, [port('sgp1')], [SET])
    ?.script.trim()
    .split('\n');
  t.same(lines, [
    'delete element inet sg_sg zones { "sgb1" }',
    `add element inet sg_sg zones { "sgb1" : ${zoneOf('sgb1')} }`,
    'add element inet sg_sg bridges { "sgb1" }',
  ]);
});

t.test('validation leaves out what could break out of its token, and says why', async (t) => {
  const v = validateSecGroups({
    sets: [
      SET,
      { name: 's_x }; flush ruleset; #', source: 'x', members: [] },
      { name: 's_y', source: 'y', members: [{ ...member(2), ip: '::1' }] },
      { name: 's_z', source: 'z', members: [{ ...member(2), mac: '02:00:00:00:01:02 } accept' }] },
      { name: 's_w', source: 'w', members: [{ ...member(2), port: 'p" } accept' }] },
    ],
    ports: [
      port('sgp1'),
      { ...port('sgp2'), rules: [{ ...RULE2, from: { cidr: '10.0.0.0/8 } accept' } }] },
      { ...port('sgp3'), rules: [{ ...RULE, from: { set: 's_missing' } }] },
      { ...port('sgp4'), endpointPorts: ['x" accept'] },
      { ...port('sgp5'), rules: [{ ...RULE, ports: { from: 90, to: 80 } }] },
      { ...port('sgp6'), rules: [{ ...RULE2, ports: { from: 1, to: 2 } }] },
      port('sgp1'),
    ],
  });
  t.same(
    v.ports.map((p) => p.ifname),
    ['sgp1'],
  );
  t.same(
    v.sets.map((s) => s.name),
    ['s_web'],
  );
  t.equal(v.errors.length, 10);
  for (const e of v.errors) t.match(e, /^could not apply security-group (set|port) "/);
  t.match(v.errors.join('\n'), 'set "s_missing" is not in the state');
});

function fakeKernel(o: { bridgeCt: boolean; inetCt: boolean; sysctl: string | undefined }) {
  const writes: string[] = [];
  const scripts: string[] = [];
  const kernel: SgKernel = {
    async nft(script) {
      scripts.push(script);
      const family = script.startsWith('add table bridge') ? 'bridge' : 'inet';
      if (family === 'bridge' ? !o.bridgeCt : !o.inetCt)
        throw new Error('Error: Could not process rule: Protocol error');
    },
    async modprobe() {},
    async readSysctl(path) {
      return path === BRIDGE_NF_CALL_IPTABLES ? o.sysctl : undefined;
    },
    async writeSysctl(path, value) {
      writes.push(`${path}=${value}`);
    },
  };
  return { kernel, writes, scripts };
}

t.test(
  'detection prefers bridge-ct, else br-netfilter (setting the sysctl), else says what is missing',
  async (t) => {
    const a = fakeKernel({ bridgeCt: true, inetCt: true, sysctl: '0' });
    t.same(await detectSgMode(a.kernel, 'sg'), { mode: 'bridge-ct', notes: [] });
    t.same(a.writes, []);
    t.match(
      a.scripts[0],
      'ct zone set meta ibrname map',
      'bridge-ct is chosen only if its zone rule is accepted too',
    );
    t.match(a.scripts[0], /delete table bridge sg_sgprobe\n$/, 'the probe never outlives its transaction');
    const b = fakeKernel({ bridgeCt: false, inetCt: true, sysctl: '0' });
    const d = await detectSgMode(b.kernel, 'sg');
    t.equal(d.mode, 'br-netfilter');
    t.same(b.writes, [`${BRIDGE_NF_CALL_IPTABLES}=1`]);
    t.match(d.notes[0], 'bridge-ct unavailable');
    t.match(d.notes[1], 'bridge-nf-call-iptables to 1');
    const c = fakeKernel({ bridgeCt: false, inetCt: true, sysctl: '1' });
    t.equal((await detectSgMode(c.kernel, 'sg')).notes.length, 1, 'already 1: nothing changed');
    t.same(c.writes, []);
    const e = fakeKernel({ bridgeCt: false, inetCt: true, sysctl: undefined });
    const err = await detectSgMode(e.kernel, 'sg').catch((x: unknown) => x);
    t.ok(err instanceof BerthError);
    t.equal((err as BerthError).code, 'BERTH_ERR_HOST_OP');
    t.match((err as Error).message, /nf_conntrack_bridge .* and br_netfilter/);
  },
);

t.test('flow cuts: both directions, in the zone; nothing to delete is no failure', async (t) => {
  t.same(cutCommands({ src: '10.0.0.2', dst: '10.0.0.3' }, 7), [
    ['conntrack', '-D', '-f', 'ipv4', '-s', '10.0.0.2', '-d', '10.0.0.3', '-w', '7'],
    ['conntrack', '-D', '-f', 'ipv4', '-s', '10.0.0.3', '-d', '10.0.0.2', '-w', '7'],
  ]);
  const ran: string[][] = [];
  const runner: CommandRunner = {
    async run(argv) {
      ran.push(argv);
      if (argv.includes('10.0.0.9'))
        throw new CommandError(argv, 1, 'conntrack v1.4.7 (conntrack-tools): Operation not permitted\n');
      throw new CommandError(
        argv,
        1,
        'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n',
      );
    },
  };
  const errors = await cutFlowsWith(
    runner,
    [
      { src: '10.0.0.2', dst: '10.0.0.3' },
      { src: '10.0.0.9', dst: '10.0.0.3' },
    ],
    () => [],
  );
  t.equal(ran.length, 4);
  t.notOk(ran[0]?.includes('-w'), 'no zone known: every zone');
  t.equal(errors.length, 2);
  t.match(errors[0], /^10\.0\.0\.9 -> 10\.0\.0\.3: .*Operation not permitted/);

  // Overlapping subnets: the destination is a guarded port on two bridges, so both zones are cut.
  ran.length = 0;
  await cutFlowsWith(runner, [{ src: '10.0.0.2', dst: '10.0.0.3' }], () => [7, 9]);
  t.same(
    ran.map((argv) => `${argv[5]}>${argv[7]}@${argv[9]}`),
    ['10.0.0.2>10.0.0.3@7', '10.0.0.3>10.0.0.2@7', '10.0.0.2>10.0.0.3@9', '10.0.0.3>10.0.0.2@9'],
    'both directions in each zone',
  );
});
