// Acceptance (hostnet): GET /v1/networks/:name/resolve?ip= answers who the host
// observes behind an IP (endpoint neighbour -> bridge FDB -> port -> instance),
// and refuses a MAC seen on a port that is not its own.
import t, { type Test } from 'tap';
import { type Guest, inNetns, isRoot, type Lab, rogue, startLab } from '../helpers/hostnet_lab.js';

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
      { ok: false, reason: 'no-neighbour' },
      'an IP nobody used',
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
    t.equal(sent.code, 0, `the thief reached the endpoint: ${sent.stdout}`);
    t.same(
      await lab.resolve('a', '10.67.0.201'),
      { ok: false, reason: 'mac-wrong-port', mac: g2.mac, port: thief.port },
      "g2's MAC on the thief's port is refused as mac-wrong-port",
    );
    t.match(
      await lab.resolve('a', g2.ip),
      { ok: false, reason: 'mac-wrong-port', port: thief.port },
      "while its MAC sits on the thief's port, even g2's own IP is refused",
    );
    // The thief leaves (its own IPv6 chatter would keep dragging the MAC back), g2 speaks again
    // and the bridge moves its MAC home; the FDB event may trail the ping by a moment.
    await inNetns(thief.netns, ['ip', 'link', 'set', 'eth0', 'down']);
    t.ok(await lab.ping('g2', net.service_ip), 'g2 speaks again; the bridge moves its MAC home');
    for (let i = 0; i < 20 && !(await lab.resolve('a', g2.ip)).ok; i++)
      await new Promise((r) => setTimeout(r, 100));
    await resolvesAs(t, lab, 'a', g2);

    // A MAC nobody was assigned, on a port nobody owns.
    const stranger = await rogue(t, lab.prefix, 'po', net.bridge, {
      mac: '02:00:00:00:0f:01',
      ip: '10.67.0.202',
      prefixLen: 24,
    });
    const sent2 = await inNetns(stranger.netns, ['ping', '-n', '-q', '-c', '1', '-W', '1', net.service_ip]);
    t.equal(sent2.code, 0, `the stranger reached the endpoint: ${sent2.stdout}`);
    t.same(
      await lab.resolve('a', '10.67.0.202'),
      { ok: false, reason: 'port-not-owned', mac: '02:00:00:00:0f:01', port: stranger.port },
      'an unknown MAC on a foreign port is port-not-owned',
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
