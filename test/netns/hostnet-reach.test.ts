// Acceptance (hostnet): netns guests made with berthctl reach each other and
// their network's endpoint, and nothing on another network, even one with
// the same subnet and the same guest IPs.
import t from 'tap';
import { isRoot, neighbourMac, startLab } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

t.test('two guests on one network reach each other and the endpoint service IP', async (t) => {
  const lab = await startLab(t);
  const net = await lab.network('a', '10.61.0.0/24');
  t.match(net.service_ip, /^10\.61\.0\.\d+$/, 'the endpoint has a service IP inside the subnet');
  const [g1, g2] = await Promise.all([lab.guest('g1', 'a'), lab.guest('g2', 'a')]);
  t.not(g1.mac, g2.mac, 'distinct MACs');
  t.not(g1.ip, g2.ip, 'distinct IPs');
  // eth0 carries the assigned MAC, read from the kernel rather than from berthd.
  const link = JSON.parse(await lab.execOk('g1', ['ip', '-j', 'link', 'show', 'dev', 'eth0'])) as {
    address: string;
  }[];
  t.equal(link[0]?.address, g1.mac, "g1's eth0 has its assigned MAC");
  t.ok(await lab.ping('g1', g2.ip), 'g1 pings g2');
  t.ok(await lab.ping('g2', g1.ip), 'g2 pings g1');
  t.ok(await lab.ping('g1', net.service_ip), 'g1 pings the endpoint');
  t.ok(await lab.ping('g2', net.service_ip), 'g2 pings the endpoint');
  t.equal(await neighbourMac(g2.netns, g1.ip), g1.mac, "g2 learned g1's real MAC");
  const after = await lab.show('a');
  t.same(
    after.guard_drops.filter((d) => d.packets > 0),
    [],
    'honest traffic is never dropped by the guard',
  );
  t.match(after.ips, { assigned: 2 });
});

t.test('a guest on another bridge with the same subnet cannot reach the first network', async (t) => {
  const lab = await startLab(t);
  const netA = await lab.network('a', '10.62.0.0/24');
  const netB = await lab.network('b', '10.62.0.0/24');
  t.not(netA.bridge, netB.bridge, 'each network has its own bridge');
  const a1 = await lab.guest('a1', 'a');
  const a2 = await lab.guest('a2', 'a');
  const b1 = await lab.guest('b1', 'b');
  t.equal(b1.ip, a1.ip, 'same subnet, same pool: b1 gets the IP a1 has on the other network');
  t.ok(await lab.ping('b1', netB.service_ip), "b1 reaches its own network's endpoint (the path works)");
  t.ok(await lab.ping('a1', a2.ip), 'a1 reaches a2 (network a works)');
  t.ok(await lab.noPing('b1', a2.ip), "b1 cannot reach a2's IP");
  t.not(await neighbourMac(b1.netns, a2.ip), a2.mac, "b1 never learned a2's MAC");
  t.not(await neighbourMac(a2.netns, b1.ip), b1.mac, 'a2 never heard from b1');
  // The endpoint b1 reaches is b's: a's endpoint never saw b1's MAC.
  const epA = netA.endpoint;
  t.not(await neighbourMac(epA, b1.ip), b1.mac, "a's endpoint never heard from b1");
  t.equal(await neighbourMac(netB.endpoint, b1.ip), b1.mac, "b's endpoint did");
});
