// Acceptance (hostnet): the guard that berthd installs for netns guests drops
// a changed MAC, a foreign source IP and a gratuitous ARP for another guest's
// IP, and `berthctl network show --json` counts each drop by port and reason.
import t from 'tap';
import { Names } from '../../hostnet/names.js';
import {
  FRAMES,
  fdbPort,
  inNetns,
  isRoot,
  neighbourMac,
  PYTHON,
  rogue,
  startLab,
} from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

t.test('a guest that changes its MAC loses all traffic; mac-spoof counts', async (t) => {
  const lab = await startLab(t);
  const net = await lab.network('a', '10.64.0.0/24');
  const [g1, g2] = await Promise.all([lab.guest('g1', 'a'), lab.guest('g2', 'a')]);
  t.ok(await lab.ping('g1', g2.ip), 'before: g1 reaches g2');
  t.ok(await lab.ping('g1', net.service_ip), 'before: g1 reaches the endpoint');
  t.equal(await lab.drops('a', g1.port, 'mac-spoof'), 0, 'no mac-spoof drops yet');

  const fake = '0a:b7:e7:ee:ee:01';
  await lab.execOk('g1', ['ip', 'link', 'set', 'dev', 'eth0', 'address', fake]);
  const [toPeer, toEndpoint, fromPeer] = await Promise.all([
    lab.noPing('g1', g2.ip),
    lab.noPing('g1', net.service_ip),
    lab.noPing('g2', g1.ip),
  ]);
  t.ok(toPeer, 'after: g1 no longer reaches g2');
  t.ok(toEndpoint, 'after: g1 no longer reaches the endpoint');
  t.ok(fromPeer, 'after: g2 gets no answer from g1');
  const n = await lab.show('a');
  const drop = n.guard_drops.find((d) => d.port === g1.port && d.reason === 'mac-spoof');
  t.ok(drop && drop.packets > 0, `mac-spoof drops on ${g1.port}: ${drop?.packets}`);
  t.ok(drop && drop.bytes > 0, 'with bytes');
  // Dropped before learning: the bridge never put the fake MAC in its FDB.
  t.equal(await fdbPort(net.bridge, fake), undefined, 'the bridge never learned the fake MAC');
  t.equal(await lab.drops('a', g2.port, 'mac-spoof'), 0, 'the honest guest has no drops');

  await lab.execOk('g1', ['ip', 'link', 'set', 'dev', 'eth0', 'address', g1.mac]);
  t.ok(await lab.ping('g1', g2.ip), 'with its own MAC back, g1 reaches g2 again');
});

t.test('a guest that uses a foreign source IP loses that traffic; ip-spoof counts', async (t) => {
  const lab = await startLab(t);
  const net = await lab.network('a', '10.65.0.0/24');
  const [g1, g2] = await Promise.all([lab.guest('g1', 'a'), lab.guest('g2', 'a')]);
  // Neighbours resolved with the honest address first, so the spoofed pings reach the IP rules.
  t.ok(await lab.ping('g1', net.service_ip), 'g1 reaches the endpoint from its own IP');
  t.ok(await lab.ping('g1', g2.ip), 'g1 reaches g2 from its own IP');
  const foreign = '10.65.0.200';
  await lab.execOk('g1', ['ip', 'addr', 'add', `${foreign}/24`, 'dev', 'eth0']);
  const [toEndpoint, toPeer] = await Promise.all([
    lab.noPing('g1', net.service_ip, { source: foreign }),
    lab.noPing('g1', g2.ip, { source: foreign }),
  ]);
  t.ok(toEndpoint, 'from a second address: no answer from the endpoint');
  t.ok(toPeer, 'nor from g2');
  const ipSpoof = await lab.drops('a', g1.port, 'ip-spoof');
  t.ok(ipSpoof >= 2, `ip-spoof drops counted for g1: ${ipSpoof}`);
  t.equal(await lab.drops('a', g1.port, 'mac-spoof'), 0, 'the MAC stayed honest');
  t.ok(await lab.ping('g1', g2.ip), 'traffic from its own IP still flows');
});

t.test('a gratuitous ARP for another guest IP is dropped; arp-spoof counts', async (t) => {
  const lab = await startLab(t);
  const net = await lab.network('a', '10.66.0.0/24');
  const [victim, attacker, third] = await Promise.all([
    lab.guest('victim', 'a'),
    lab.guest('attacker', 'a'),
    lab.guest('third', 'a'),
  ]);
  t.ok(await lab.ping('third', victim.ip), 'third talks to the victim');
  t.equal(
    await neighbourMac(third.netns, victim.ip),
    victim.mac,
    "third's neighbour entry: the victim's MAC",
  );
  // Past the neighbour locktime (1 s), so an unguarded claim would replace the entry.
  await new Promise((r) => setTimeout(r, 1200));

  // scapy from inside the attacker, sent with its own (assigned) MAC: only the ARP sender IP lies.
  const sent = await lab.exec('attacker', [PYTHON, FRAMES, 'eth0', `garp=${victim.ip}`]);
  t.equal(sent.code, 0, `scapy ran in the attacker: ${sent.stderr}`);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(
    await neighbourMac(third.netns, victim.ip),
    victim.mac,
    "third still maps the victim's IP to the victim",
  );
  const arp = await lab.drops('a', attacker.port, 'arp-spoof');
  t.ok(arp >= 3, `arp-spoof drops on the attacker's port: ${arp}`);
  t.equal(await lab.drops('a', attacker.port, 'mac-spoof'), 0, 'the frame carried the real MAC');

  // From a foreign port (no berth port name) the claim of a local guest's IP is refused too, while
  // a claim of an address no local guest holds does move the entry: the assertions above can fail.
  const free = '10.66.0.150';
  await inNetns(third.netns, [
    'ip',
    'neigh',
    'replace',
    free,
    'lladdr',
    '02:00:00:00:0e:99',
    'dev',
    'eth0',
    'nud',
    'stale',
  ]);
  await new Promise((r) => setTimeout(r, 1200));
  const evil = '02:00:00:00:0e:01';
  const r = await rogue(t, lab.prefix, 'arp', net.bridge, { mac: evil, ip: '10.66.0.201', prefixLen: 24 });
  const ctrl = await inNetns(r.netns, [PYTHON, FRAMES, 'eth0', `garp=${victim.ip}`, `garp=${free}`]);
  t.equal(ctrl.code, 0, `scapy ran in the rogue namespace: ${ctrl.stdout}`);
  let seen: string | undefined;
  for (let i = 0; i < 20 && seen !== evil; i++) {
    await new Promise((r) => setTimeout(r, 50));
    seen = await neighbourMac(third.netns, free);
  }
  t.equal(seen, evil, "from a foreign port, a claim of no local guest's address does move the entry");
  t.equal(
    await neighbourMac(third.netns, victim.ip),
    victim.mac,
    "from a foreign port, the claim of the victim's IP does not",
  );
  const endpoint = new Names(lab.prefix).endpointVeth('a');
  const claims = await lab.drops('a', endpoint, 'edge-guest-claim');
  t.ok(claims >= 3, `edge-guest-claim drops on the network: ${claims}`);
});
