// The security-group renderer as text: a golden bridge-ct script for one
// port, the br-netfilter skeleton's mark handling, and what changes (and
// what does not) when rules or members change.
import t from 'tap';
import { Names } from '../../hostnet/names.js';
import {
  CT_MARK_MASK,
  fingerprintOf,
  portRules,
  renderSecGroups,
  skeletonCommands,
  skeletonFingerprint,
  zoneOf,
} from '../../hostnet/secgroups/render.js';
import type { SgPort, SgSet } from '../../hostnet/secgroups/state.js';

const names = new Names('sg');
const port: SgPort = {
  ifname: 'sgp1',
  bridge: 'sgb1',
  mac: '02:00:00:00:00:01',
  ip: '10.1.0.10',
  instance: 'i1',
  endpointPorts: ['sge1'],
  rules: [
    { id: 'sr-b', group: 'g', proto: 'tcp', ports: { from: 3306, to: 3306 }, from: { set: 's_web' } },
    { id: 'sr-a', group: 'g', proto: 'icmp', from: { cidr: '10.0.0.0/8' } },
  ],
};
const sets: SgSet[] = [
  {
    name: 's_web',
    source: 'role:web',
    members: [
      { ip: '10.1.0.3', mac: '02:00:00:00:01:03', port: 'sgp3' },
      { ip: '10.1.0.2', mac: '02:00:00:00:01:02', port: 'uplink0' },
    ],
  },
];

const GOLDEN = `add table bridge sg_sg
delete table bridge sg_sg
add table inet sg_sg
delete table inet sg_sg
add table bridge sg_sg
add map bridge sg_sg ports { type ifname : verdict; }
add chain bridge sg_sg forward { type filter hook forward priority 100; policy accept; }
add set bridge sg_sg guarded { type ifname; }
add counter bridge sg_sg pickup
add rule bridge sg_sg forward iifname @guarded ether type ip ct state new tcp flags & (fin | syn | rst | ack) != syn counter name "pickup" drop
add rule bridge sg_sg forward oifname vmap @ports comment "berth sg ff5478307d11"
add map bridge sg_sg zones { typeof meta ibrname : ct zone; }
add map bridge sg_sg tzones { typeof meta ibrname . vlan id : ct zone; }
add map bridge sg_sg pzones { typeof meta ibrname . meta ibrpvid : ct zone; }
add chain bridge sg_sg raw { type filter hook prerouting priority -300; policy accept; }
add rule bridge sg_sg raw ct zone set meta ibrname map @zones
add rule bridge sg_sg raw ether type 8021q ct zone set meta ibrname . vlan id map @tzones
add rule bridge sg_sg raw ether type != 8021q ct zone set meta ibrname . meta ibrpvid map @pzones comment "berth sg ff5478307d11"
add set bridge sg_sg s_web { type ipv4_addr . ether_addr . ifname; comment "role:web"; }
add element bridge sg_sg s_web { 10.1.0.2 . 02:00:00:00:01:02 . "uplink0", 10.1.0.3 . 02:00:00:00:01:03 . "sgp3" }
add counter bridge sg_sg sgp1.sr-a
add counter bridge sg_sg sgp1.sr-b
add counter bridge sg_sg sgp1.invalid
add counter bridge sg_sg sgp1.drop
add chain bridge sg_sg port_sgp1
flush chain bridge sg_sg port_sgp1
add rule bridge sg_sg port_sgp1 iifname { "sge1" } accept
add rule bridge sg_sg port_sgp1 ether type arp accept
add rule bridge sg_sg port_sgp1 ether type ip6 icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
add rule bridge sg_sg port_sgp1 ether type != ip counter name "sgp1.drop" limit rate 10/second burst 20 packets log prefix "berth secgroup sgp1 " group __GROUP__ drop
add rule bridge sg_sg port_sgp1 ether type != ip drop
add rule bridge sg_sg port_sgp1 ether type ip ct state related accept
add rule bridge sg_sg port_sgp1 ether type ip ct state established ct direction reply accept
add rule bridge sg_sg port_sgp1 ether type ip ct state invalid counter name "sgp1.invalid" drop
add rule bridge sg_sg port_sgp1 ether type ip ip saddr 10.0.0.0/8 ip protocol icmp counter name "sgp1.sr-a" accept
add rule bridge sg_sg port_sgp1 ether type ip ip saddr . ether saddr . iifname @s_web tcp dport 3306 counter name "sgp1.sr-b" accept
add rule bridge sg_sg port_sgp1 counter name "sgp1.drop" limit rate 10/second burst 20 packets log prefix "berth secgroup sgp1 " group __GROUP__ drop
add rule bridge sg_sg port_sgp1 drop comment "berth sg f515325a806e"
add element bridge sg_sg ports { "sgp1" : jump port_sgp1 }
add element bridge sg_sg guarded { "sgp1" }
add element bridge sg_sg zones { "sgb1" : 22724 }
`;

t.test('bridge-ct: the whole script for one port', async (t) => {
  t.equal(
    renderSecGroups(names, 'bridge-ct', [port], sets),
    GOLDEN.replaceAll('__GROUP__', String(names.logGroup())),
  );
});

t.test('bridge-ct: established is accepted only in the reply direction, before any rule', async (t) => {
  const rules = portRules(names, 'bridge-ct', port);
  const reply = rules.indexOf('ether type ip ct state established ct direction reply accept');
  const firstRule = rules.findIndex((r) => r.includes('counter name "sgp1.sr-'));
  t.ok(reply > 0 && reply < firstRule);
  t.notOk(
    rules.some((r) => /ct state established accept/.test(r)),
    'no direction-blind established accept',
  );
  t.match(
    rules.at(-2),
    /^counter name "sgp1.drop" limit rate 10\/second burst 20 packets log prefix "berth secgroup sgp1 " group \d+ drop$/,
  );
  t.match(rules.at(-1), /^drop comment "berth sg [0-9a-f]{12}"$/);
});

t.test('br-netfilter: conntrack verdicts travel in meta mark bits, other bits kept', async (t) => {
  const skel = skeletonCommands(names, 'br-netfilter').join('\n');
  t.match(skel, 'add table inet sg_sg');
  t.match(skel, `meta mark set meta mark & 0x${(~CT_MARK_MASK >>> 0).toString(16)}`);
  t.match(skel, 'add rule inet sg_sg raw ct zone set iifname map @zones');
  t.match(skel, 'add chain bridge sg_sg forward { type filter hook forward priority 100;');
  t.notMatch(skel, /bridge sg_sg [^\n]* ct /, 'no ct expression in the bridge family');
  const rules = portRules(names, 'br-netfilter', port).join('\n');
  t.match(rules, 'ether type ip meta mark & 0x02000000 == 0x02000000 accept');
  t.match(rules, 'ether type ip meta mark & 0x04000000 == 0x04000000 counter name "sgp1.invalid" drop');
  t.notMatch(rules, / ct /);
  t.not(skeletonFingerprint(names, 'br-netfilter'), skeletonFingerprint(names, 'bridge-ct'));
});

t.test('a member change leaves the port chain as it was; a rule change does not', async (t) => {
  const fp = (p: SgPort) => fingerprintOf(portRules(names, 'br-netfilter', p));
  t.equal(fp(port), fp({ ...port }), 'stable');
  t.not(fp(port), fp({ ...port, rules: port.rules.slice(1) }), 'a rule removed changes the chain');
  t.equal(fp(port), fp({ ...port, rules: [...port.rules].reverse() }), 'rule order does not matter');
  const a = renderSecGroups(names, 'br-netfilter', [port], sets);
  const b = renderSecGroups(
    names,
    'br-netfilter',
    [port],
    [{ ...(sets[0] as SgSet), members: [{ ip: '10.1.0.9', mac: '02:00:00:00:01:09', port: 'sgp9' }] }],
  );
  const chain = (s: string) => s.split('\n').filter((l) => l.includes('port_sgp1'));
  t.same(chain(a), chain(b));
});

t.test('tcp, udp, port ranges and any', async (t) => {
  const rules = portRules(names, 'bridge-ct', {
    ...port,
    rules: [
      { id: 'sr-1', group: 'g', proto: 'udp', ports: { from: 53, to: 54 }, from: { cidr: '10.2.0.0/16' } },
      { id: 'sr-2', group: 'g', proto: 'tcp', from: { set: 's_web' } },
      { id: 'sr-3', group: 'g', proto: 'any', from: { cidr: '192.0.2.7' } },
    ],
  }).join('\n');
  t.match(rules, 'ip saddr 10.2.0.0/16 udp dport 53-54 counter name "sgp1.sr-1" accept');
  t.match(rules, 'ip saddr . ether saddr . iifname @s_web ip protocol tcp counter name "sgp1.sr-2" accept');
  t.match(rules, 'ip saddr 192.0.2.7 counter name "sgp1.sr-3" accept');
});

t.test('zones are stable per bridge and never 0', async (t) => {
  t.equal(zoneOf('sgb1'), zoneOf('sgb1'));
  for (const br of ['a', 'b', 'bthb123456', 'x'.repeat(15)]) t.ok(zoneOf(br) >= 1 && zoneOf(br) <= 65535);
});
