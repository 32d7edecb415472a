// Acceptance (hostnet): GET /v1/networks/:name/resolve?ip= answers who the host
// observes behind an IP (endpoint neighbour -> bridge FDB -> port -> instance),
// and refuses a MAC seen on a port that is not its own.
import t, { type Test } from 'tap';
import { type Guest, inNetns, isRoot, type Lab, rogue, sh, startLab } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

async function resolvesAs(t: Test, lab: Lab, network: string, g: Guest): Promise<void> {
  const r = await lab.resolve(network, g.ip);
  t.same(r, { ok: true, mac: g.mac, port: g.port, instance: g.id }, `${g.ip} on ${network} is ${g.name}`);
}

t.test(
  'resolve names every guest that talked to the endpoint, and refuses a MAC on the wrong port',
  async (t) => {
    const lab = await startLab(t);
    const net = await lab.network('a', '10.67.0.0/24');
    const guests = await Promise.all(['g1', 'g2', 'g3'].map((n) => lab.guest(n, 'a')));
    const pinged = await Promise.all(guests.map((g) => lab.ping(g.name, net.service_ip)));
    t.same(pinged, [true, true, true], 'every guest reached the endpoint');
    for (const g of guests) await resolvesAs(t, lab, 'a', g);

    t.match(
      await lab.resolve('a', '10.67.0.150'),
      { ok: false, reason: 'ip-not-assigned' },
      'an IP nobody was assigned',
    );

    // g2's MAC shows up behind a port that is not g2's: a namespace berthd never made,
    // on a veth that carries no berth port name, so no guard rule stops it.
    const g2 = guests[1] as Guest;
    const thief = await rogue(t, lab.prefix, 'mw', net.bridge, {
      mac: g2.mac,
      ip: '10.67.0.201',
      prefixLen: 24,
    });
    const sent = await inNetns(thief.netns, [
      'ping',
      '-n',
      '-q',
      '-c',
      '2',
      '-i',
      '0.2',
      '-W',
      '1',
      net.service_ip,
    ]);
    // The endpoint answers g2's MAC, and berth pinned g2's MAC to g2's port (static sticky).
    t.not(sent.code, 0, "the endpoint's answers to g2's MAC never reach the thief's port");
    const fdb = await sh('bridge', ['fdb', 'show', 'br', net.bridge]);
    t.match(
      fdb,
      new RegExp(`${g2.mac} dev ${g2.port} sticky master ${net.bridge} static`),
      'g2 stays pinned',
    );
    t.notMatch(fdb, new RegExp(`${g2.mac} dev ${thief.port}`), "g2's MAC never moved to the thief's port");
    t.match(
      await lab.resolve('a', '10.67.0.201'),
      { ok: false, reason: 'ip-not-assigned' },
      'an IP nobody was assigned is refused, whatever MAC the thief used',
    );
    await resolvesAs(t, lab, 'a', g2);

    // A MAC nobody was assigned, on a port nobody owns.
    const stranger = await rogue(t, lab.prefix, 'po', net.bridge, {
      mac: '02:00:00:00:0f:01',
      ip: '10.67.0.202',
      prefixLen: 24,
    });
    const sent2 = await inNetns(stranger.netns, ['ping', '-n', '-q', '-c', '1', '-W', '1', net.service_ip]);
    t.not(sent2.code, 0, 'the guard keeps a port nobody owns from the endpoint');
    t.match(
      await lab.resolve('a', '10.67.0.202'),
      { ok: false, reason: 'ip-not-assigned' },
      'a stranger behind an IP nobody was assigned is ip-not-assigned',
    );
    for (const g of [guests[0], guests[2]] as Guest[]) await resolvesAs(t, lab, 'a', g);
  },
);

t.test('two networks with the same subnet and guest IPs: each guest resolves to itself', async (t) => {
  const lab = await startLab(t);
  const netA = await lab.network('a', '10.68.0.0/24');
  const netB = await lab.network('b', '10.68.0.0/24');
  t.equal(netA.service_ip, netB.service_ip, 'the endpoints share a service IP too');
  const a = await Promise.all(['a1', 'a2'].map((n) => lab.guest(n, 'a')));
  const b = await Promise.all(['b1', 'b2'].map((n) => lab.guest(n, 'b')));
  t.same(a.map((g) => g.ip).sort(), b.map((g) => g.ip).sort(), 'the same IPs on both networks');
  const pinged = await Promise.all([...a, ...b].map((g) => lab.ping(g.name, netA.service_ip)));
  t.same(pinged, [true, true, true, true], 'every guest reached its own endpoint');
  for (const g of a) await resolvesAs(t, lab, 'a', g);
  for (const g of b) await resolvesAs(t, lab, 'b', g);
});
