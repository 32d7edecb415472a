// An endpoint namespace and netns guests on real bridges: the guests reach
// each other, the service address and 169.254.169.254, and nothing on a
// second bridge, even with the same subnet.
import t from 'tap';
import { osCommandRunner } from '../../base/command.js';
import { ensureBridge } from '../../hostnet/links/bridge.js';
import { ensureEndpoint, removeEndpoint } from '../../hostnet/links/endpoint.js';
import { IpLinkOps } from '../../hostnet/links/ip-link-ops.js';
import { ensureNetnsGuest, removeNetnsGuest } from '../../hostnet/links/netns-guest.js';
import { Names } from '../../hostnet/names.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (real bridges, veths and network namespaces)');
  process.exit(0);
}

// A sub-prefix of this helper's "lk", so parallel link tests never sweep or reuse each other's objects.
const names = new Names('lkn');
const ops = new IpLinkOps();
const sh = (...argv: string[]) => osCommandRunner.run(argv);
const ping = (ns: string, ip: string) =>
  ops.execInNetns(ns, ['ping', '-c', '1', '-W', '1', ip]).then(
    () => true,
    () => false,
  );

const netA = 'lkneta';
const netB = 'lknetb';
const brA = names.bridge(netA);
const brB = names.bridge(netB);
const ep = {
  network: netA,
  bridge: brA,
  netns: names.endpointNetns(netA),
  veth: names.endpointVeth(netA),
  serviceIp: '10.61.0.2',
  prefixLen: 24,
  mtu: 1500,
};
const guest = (net: string, bridge: string, n: number) => ({
  netns: names.guestNetns(`${net}-g${n}`),
  port: names.port(`${net.slice(-1)}${n}`.padEnd(8, '0'), 0),
  bridge,
  mac: `02:00:00:61:00:${n.toString(16).padStart(2, '0')}`,
  mtu: 1500,
  ip: `10.61.0.${n}`,
});
const g1 = guest(netA, brA, 11);
const g2 = guest(netA, brA, 12);
const g3 = guest(netB, brB, 13);
const g4 = guest(netB, brB, 14);

t.teardown(async () => {
  for (const g of [g1, g2, g3, g4]) await removeNetnsGuest(ops, g).catch(() => {});
  await removeEndpoint(ops, ep).catch(() => {});
  await ops.deleteLink(brA).catch(() => {});
  await ops.deleteLink(brB).catch(() => {});
});

t.test('endpoint and guests plug in, twice without change', async (t) => {
  await ensureBridge(ops, brA, { mtu: 1500 });
  await ensureBridge(ops, brB, { mtu: 1500 });
  await ensureEndpoint(ops, ep);
  for (const g of [g1, g2, g3, g4]) await ensureNetnsGuest(ops, g);
  const before = await Promise.all([ep.veth, g1.port, g2.port, g3.port, g4.port].map((n) => ops.getLink(n)));
  await ensureEndpoint(ops, ep);
  for (const g of [g1, g2, g3, g4]) await ensureNetnsGuest(ops, g);
  const after = await Promise.all([ep.veth, g1.port, g2.port, g3.port, g4.port].map((n) => ops.getLink(n)));
  t.same(
    after.map((l) => l?.ifindex),
    before.map((l) => l?.ifindex),
    'the second ensure recreated nothing',
  );
  for (const l of after) {
    t.equal(l?.up, true, `${l?.name} up`);
    t.same(l?.ipv4, [], `${l?.name} has no address on the host`);
  }
  t.equal(after[0]?.master, brA);
  t.equal(after[3]?.master, brB);

  const inner = await ops.getLink('ep0', ep.netns);
  t.same(inner?.ipv4.map((a) => `${a.address}/${a.prefixLen}`).sort(), [
    '10.61.0.2/24',
    '169.254.169.254/32',
  ]);
  const eth0 = await ops.getLink('eth0', g1.netns);
  t.equal(eth0?.mac, g1.mac, 'the guest wears its assigned MAC');
  t.same(eth0?.ipv4, [], 'and no address until it asks for one');
  t.equal(eth0?.up, true);
  t.same(await ops.readSysctl(['net/ipv4/conf/all/arp_ignore', 'net/ipv4/conf/all/arp_announce'], ep.netns), [
    '1',
    '2',
  ]);
  const routes = await ops.listRoutes(ep.netns);
  t.ok(
    routes.some((r) => r.dst === 'default' && r.dev === 'ep0'),
    'replies leave on ep0',
  );
  // A DHCP server answers 255.255.255.255; with only connected routes the kernel says ENETUNREACH.
  const send = [
    'import socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    's.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)',
    "s.sendto(b'x', ('255.255.255.255', 68))",
  ].join('\n');
  await t.resolves(
    ops.execInNetns(ep.netns, ['/usr/bin/python3', '-c', send]),
    'a broadcast reply finds its way out',
  );
});

t.test('guests reach each other and the endpoint; the other bridge stays apart', async (t) => {
  for (const g of [g1, g2, g3, g4]) {
    await sh('ip', '-n', g.netns, 'addr', 'add', `${g.ip}/24`, 'dev', 'eth0');
    await sh('ip', '-n', g.netns, 'route', 'add', '169.254.169.254', 'dev', 'eth0');
  }
  t.ok(await ping(g1.netns, g2.ip), 'guest to guest on one bridge');
  t.ok(await ping(g2.netns, ep.serviceIp), 'guest to the service address');
  t.ok(await ping(g1.netns, '169.254.169.254'), 'guest to the metadata address');
  t.ok(await ping(g3.netns, g4.ip), 'the second bridge works within itself');
  t.notOk(await ping(g3.netns, g1.ip), 'a guest on another bridge cannot reach the first one');
  t.notOk(await ping(g3.netns, ep.serviceIp), 'nor its endpoint, though the subnet is the same');

  // arp_ignore=1: the endpoint answers ARP for its own addresses only.
  const { stdout } = await sh('ip', '-n', g1.netns, '-j', 'neigh', 'show', 'dev', 'eth0');
  const epMac = (await ops.getLink('ep0', ep.netns))?.mac;
  const neigh = JSON.parse(stdout) as { dst: string; lladdr?: string }[];
  t.equal(neigh.find((n) => n.dst === '169.254.169.254')?.lladdr, epMac, 'metadata address resolves to ep0');
  t.notOk(await ping(g1.netns, '10.61.0.99'), 'an address nobody holds stays unreachable');
});

t.test('a half-removed guest is rebuilt, and remove tolerates missing parts', async (t) => {
  await sh('ip', '-n', g2.netns, 'link', 'del', 'eth0');
  await ensureNetnsGuest(ops, g2);
  const eth0 = await ops.getLink('eth0', g2.netns);
  t.equal(eth0?.mac, g2.mac);
  t.equal((await ops.getLink(g2.port))?.master, brA);
  await removeNetnsGuest(ops, g2);
  await removeNetnsGuest(ops, g2);
  t.notOk((await ops.listNetns()).includes(g2.netns));
  t.notOk(await ops.getLink(g2.port));
  await removeEndpoint(ops, ep);
  await removeEndpoint(ops, ep);
  t.notOk((await ops.listNetns()).includes(ep.netns));
});

t.test('a failed guest plug rolls back what it made', async (t) => {
  const bad = { ...guest(netA, `${names.prefix}bnobridge`, 21) };
  t.teardown(() => removeNetnsGuest(ops, bad).catch(() => {}));
  await t.rejects(ensureNetnsGuest(ops, bad), {
    code: 'BERTH_ERR_HOST_OP',
    message: new RegExp(`could not enslave link "${bad.port}"`),
  });
  t.notOk((await ops.listNetns()).includes(bad.netns), 'namespace undone');
  t.notOk(await ops.getLink(bad.port), 'veth undone');
});

t.test('execInNetns runs inside the guest', async (t) => {
  const { stdout } = await ops.execInNetns(g1.netns, ['cat', '/sys/class/net/eth0/address']);
  t.equal(stdout.trim(), g1.mac);
  await t.rejects(ops.execInNetns(g1.netns, ['false']), { code: 'BERTH_ERR_HOST_OP' });
});
