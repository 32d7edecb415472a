// Groups, rules and sources resolved into ports and address sets; which flows
// must end when that changes. The enforcement itself is tested with real
// traffic in test/netns/secgroups-*.test.ts.
import pino from 'pino';
import t from 'tap';
import type { SecGroup } from '../../agent/api/types.js';
import {
  compileSecGroups,
  flowCuts,
  type SgLocalPort,
  type SgMember,
  setName,
} from '../../agent/secgroups/compile.js';
import { SecGroupEnforcer } from '../../agent/secgroups/enforcer.js';
import type { SgSet } from '../../hostnet/secgroups/state.js';
import { FakeSecGroupDriver } from '../fakes/fake-sg-driver.js';

const now = '2026-12-03T00:00:00.000Z';
const group = (name: string, rules: SecGroup['rules']): SecGroup => ({
  name,
  rules,
  created_at: now,
  updated_at: now,
});
const db = group('db', [
  { id: 'sr-00000001', proto: 'tcp', ports: { from: 3306, to: 3306 }, from: 'role:webapp' },
  { id: 'sr-00000002', proto: 'icmp', from: '192.0.2.0/24' },
]);
const web = group('web', [
  { id: 'sr-00000003', proto: 'tcp', ports: { from: 80, to: 443 }, from: 'group:db' },
]);

const members: SgMember[] = [
  {
    id: 'i-1',
    name: 'dbserver',
    role: 'database',
    secgroups: ['db'],
    nics: [{ network: 'a', ip: '10.0.0.2', mac: '0a:00:00:00:00:01' }],
  },
  {
    id: 'i-2',
    name: 'web1',
    role: 'webapp',
    nics: [{ network: 'a', ip: '10.0.0.3', mac: '0a:00:00:00:00:02' }],
  },
  // Same role on another network: never in network a's sets.
  {
    id: 'i-3',
    name: 'web2',
    role: 'webapp',
    nics: [{ network: 'b', ip: '10.0.0.3', mac: '0a:00:00:00:00:03' }],
  },
  // Another host's guest (a directory entry), same network.
  {
    id: 'i-4',
    name: 'web3',
    role: 'webapp',
    nics: [{ network: 'a', ip: '10.0.0.9', mac: '0a:00:00:00:00:04' }],
  },
];
const port = (instance: string, ifname: string, ip: string, network = 'a'): SgLocalPort => ({
  instance,
  network,
  ifname,
  bridge: `br-${network}`,
  mac: '0a:00:00:00:00:01',
  ip,
  endpointPorts: [`ep-${network}`],
});

/** Network a's uplink port: where another host's guests arrive. */
const UPLINKS = new Map([['a', 'up-a']]);
const ipsOf = (set: SgSet | undefined) => set?.members.map((m) => m.ip);

t.test('sources resolve to the addresses of the identities they name, per network', async (t) => {
  const s = compileSecGroups(
    [db, web],
    members,
    [port('i-1', 'p1', '10.0.0.2'), port('i-2', 'p2', '10.0.0.3')],
    UPLINKS,
  );
  t.equal(s.ports.length, 1, 'only the port in a group is enforced; i-2 keeps today’s behaviour');
  const p = s.ports[0];
  t.equal(p?.ifname, 'p1');
  t.same(
    p?.rules.map((r) => [r.id, r.group, r.proto, r.ports, r.from]),
    [
      ['sr-00000001', 'db', 'tcp', { from: 3306, to: 3306 }, { set: setName('role:webapp', 'a') }],
      ['sr-00000002', 'db', 'icmp', undefined, { cidr: '192.0.2.0/24' }],
    ],
  );
  t.same(s.sets, [
    {
      name: setName('role:webapp', 'a'),
      source: 'role:webapp on a',
      members: [
        { ip: '10.0.0.3', mac: '0a:00:00:00:00:02', port: 'p2' },
        { ip: '10.0.0.9', mac: '0a:00:00:00:00:04', port: 'up-a' },
      ],
    },
  ]);
  t.same(p?.endpointPorts, ['ep-a'], 'the platform’s own port rides along');
  t.notOk(p && 'vlan' in p, 'no VLAN on a plain bridge');
});

t.test("a member counts only from where it is: its own port, or the uplink for another host's", async (t) => {
  const local = [port('i-1', 'p1', '10.0.0.2'), port('i-2', 'p2', '10.0.0.3')];
  const bound = (uplinks?: Map<string, string>) =>
    compileSecGroups([db], members, local, uplinks).sets[0]?.members.map((m) => `${m.ip} ${m.port}`);
  t.same(bound(UPLINKS), ['10.0.0.3 p2', '10.0.0.9 up-a']);
  t.same(
    bound(),
    ['10.0.0.3 p2'],
    "no uplink: another host's guest cannot reach this bridge, so it is in no set",
  );
  t.same(bound(new Map([['b', 'up-b']])), ['10.0.0.3 p2'], "another network's uplink is not this network's");
});

t.test("a trunk port's VLAN rides along (its conntrack zone is per VLAN)", async (t) => {
  const s = compileSecGroups([db, web], members, [{ ...port('i-1', 'p1', '10.0.0.2'), vlan: 100 }]);
  t.equal(s.ports[0]?.vlan, 100);
});

t.test('group:, instance: and image: sources; a vanished group closes the port', async (t) => {
  const ms: SgMember[] = [
    ...members,
    {
      id: 'i-5',
      name: 'front',
      secgroups: ['web'],
      image_sha256: 'ab'.repeat(32),
      nics: [{ network: 'a', ip: '10.0.0.5', mac: '0a:00:00:00:00:05' }],
    },
  ];
  const g = group('mix', [
    { id: 'sr-0000000a', proto: 'any', from: 'instance:web1' },
    { id: 'sr-0000000b', proto: 'udp', ports: { from: 53, to: 53 }, from: `image:${'ab'.repeat(32)}` },
  ]);
  const s = compileSecGroups(
    [web, g],
    ms.map((m) => (m.id === 'i-1' ? { ...m, secgroups: ['web', 'mix', 'gone'] } : m)),
    [port('i-1', 'p1', '10.0.0.2')],
    UPLINKS,
  );
  const sets = new Map(s.sets.map((x) => [x.source, ipsOf(x)]));
  t.same(sets.get('group:db on a'), [], 'nobody is in db any more');
  t.same(sets.get('instance:web1 on a'), ['10.0.0.3']);
  t.same(sets.get(`image:${'ab'.repeat(32)} on a`), ['10.0.0.5']);
  t.equal(s.ports[0]?.rules.length, 3, 'rules of mix and web; gone adds none');
  const closed = compileSecGroups(
    [],
    [{ ...members[0], secgroups: ['gone'] } as SgMember],
    [port('i-1', 'p1', '10.0.0.2')],
  );
  t.same(closed.ports[0]?.rules, [], 'a member of a group that no longer exists receives nothing');
});

t.test('a member change is a set change: set names do not move', async (t) => {
  const before = compileSecGroups([db], members, [port('i-1', 'p1', '10.0.0.2')], UPLINKS);
  const after = compileSecGroups([db], members.slice(0, 2), [port('i-1', 'p1', '10.0.0.2')], UPLINKS);
  t.same(
    before.sets.map((s) => s.name),
    after.sets.map((s) => s.name),
  );
  t.same(before.ports, after.ports, 'no rule changes');
  t.same(
    flowCuts(before, after),
    [{ src: '10.0.0.9', dst: '10.0.0.2' }],
    'the member that left loses its flows',
  );
});

t.test(
  'flow cuts: removed rules and narrowed rules; nothing for additions or newly grouped ports',
  async (t) => {
    const local = [port('i-1', 'p1', '10.0.0.2')];
    const base = compileSecGroups([db], members, local, UPLINKS);
    const narrowed = group('db', [db.rules[1] as SecGroup['rules'][number]]);
    t.same(
      flowCuts(base, compileSecGroups([narrowed], members, local, UPLINKS)),
      [
        { src: '10.0.0.3', dst: '10.0.0.2' },
        { src: '10.0.0.9', dst: '10.0.0.2' },
      ],
      'the webapp rule went: both webapps lose their flows',
    );
    const wider = group('db', [...db.rules, { id: 'sr-0000000c', proto: 'tcp', from: '0.0.0.0/0' }]);
    t.same(
      flowCuts(base, compileSecGroups([wider], members, local, UPLINKS)),
      [],
      'adding a rule cuts nothing',
    );
    t.same(
      flowCuts({ ports: [], sets: [] }, base),
      [],
      'a port newly in a group: its rules judge every packet anyway',
    );
    t.same(flowCuts(base, { ports: [], sets: [] }), [], 'a port leaving every group opens; nothing to cut');
  },
);

t.test(
  'the enforcer coalesces pokes, leaves a host without groups alone, and cuts after applying',
  async (t) => {
    const driver = new FakeSecGroupDriver();
    let groups: SecGroup[] = [];
    let ms: SgMember[] = members.map(({ secgroups: _, ...m }) => m);
    const e = new SecGroupEnforcer({
      driver,
      groups: () => groups,
      members: () => ms,
      localPorts: () => [port('i-1', 'p1', '10.0.0.2')],
      uplinks: () => UPLINKS,
      log: pino({ level: 'silent' }),
      coalesceMs: 5,
    });
    t.teardown(() => e.stop());
    await e.flush();
    t.equal(driver.applies.length, 0, 'no group anywhere: the kernel is not touched');
    t.equal(e.mode, undefined, 'not even probed');
    groups = [db];
    ms = members;
    for (let i = 0; i < 10; i++) e.poke(`change ${i}`);
    await new Promise((r) => setTimeout(r, 50));
    await e.flush();
    t.equal(driver.applies.length, 2, 'ten pokes: one apply (plus the flush)');
    t.equal(e.mode, 'br-netfilter');
    t.equal(driver.watches, 1, 'the tables are watched once something is enforced');
    ms = members.slice(0, 2);
    await e.flush();
    t.same(driver.cuts.at(-1), [{ src: '10.0.0.9', dst: '10.0.0.2' }]);
    driver.fail = 1;
    ms = members.slice(0, 1);
    await e.flush();
    t.match(e.lastErrors[0], /boom/, 'a failed apply is reported');
    t.same(ipsOf(e.state().sets[0]), ['10.0.0.3'], 'and the last applied state stays what the host has');
  },
);
