// Rows the nft bridge guard refuses on the guest's own port: a changed MAC, a
// foreign source IP, and a gratuitous ARP claiming another guest's IP. Each
// is sent from inside a netns guest that berthd made; a peer or the endpoint
// shows the frame had no effect, and `network show` counts the drop.
import { setTimeout as sleep } from 'node:timers/promises';
import { Names } from '../../hostnet/names.js';
import { FRAMES, fdbPort, inNetns, neighbourMac, PYTHON, rogue } from '../helpers/hostnet_lab.js';
import { attack, see } from './result.js';

export const macSpoof = attack(
  'MAC spoof',
  'the guest loses all traffic; mac-spoof drops counted on its port; the bridge never learns the fake MAC',
  async (_t, { lab, subnet }) => {
    const net = await lab.network('ms', subnet());
    const [a, b] = await Promise.all([lab.guest('ms-a', 'ms'), lab.guest('ms-b', 'ms')]);
    const control = await lab.ping('ms-a', b.ip);
    const fake = '0a:b7:e7:ee:ee:01';
    await lab.execOk('ms-a', ['ip', 'link', 'set', 'dev', 'eth0', 'address', fake]);
    const [toPeer, toEndpoint] = await Promise.all([
      lab.noPing('ms-a', b.ip),
      lab.noPing('ms-a', net.service_ip),
    ]);
    const drops = await lab.drops('ms', a.port, 'mac-spoof');
    const learned = await fdbPort(net.bridge, fake);
    return [
      see(control, `control: with its own MAC, A reaches B (${control ? 'yes' : 'no'})`),
      see(
        toPeer && toEndpoint,
        `with ${fake}: echo to B and to the endpoint ${toPeer && toEndpoint ? 'unanswered' : 'ANSWERED'}`,
      ),
      see(drops > 0, `mac-spoof drops on A's port: ${drops}`),
      see(learned === undefined, `bridge FDB entry for ${fake}: ${learned ?? 'none'}`),
    ];
  },
);

export const ipSpoof = attack(
  'IP spoof',
  'packets from any source IP but the assigned one are dropped at the port; ip-spoof drops counted',
  async (_t, { lab, subnet }) => {
    const cidr = subnet();
    const net = await lab.network('is', cidr);
    const [a, b] = await Promise.all([lab.guest('is-a', 'is'), lab.guest('is-b', 'is')]);
    // Neighbours resolved from the honest address first, so the spoofed echoes reach the IP rules.
    const control = (await lab.ping('is-a', net.service_ip)) && (await lab.ping('is-a', b.ip));
    const foreign = cidr.replace(/0\/24$/, '200');
    await lab.execOk('is-a', ['ip', 'addr', 'add', `${foreign}/24`, 'dev', 'eth0']);
    const [toEndpoint, toPeer] = await Promise.all([
      lab.noPing('is-a', net.service_ip, { source: foreign }),
      lab.noPing('is-a', b.ip, { source: foreign }),
    ]);
    const drops = await lab.drops('is', a.port, 'ip-spoof');
    return [
      see(control, `control: from its own IP, A reaches the endpoint and B (${control ? 'yes' : 'no'})`),
      see(
        toEndpoint && toPeer,
        `from ${foreign}: echo to the endpoint and to B ${toEndpoint && toPeer ? 'unanswered' : 'ANSWERED'}`,
      ),
      see(drops >= 2, `ip-spoof drops on A's port: ${drops}`),
    ];
  },
);

export const garpForeignIp = attack(
  'Gratuitous ARP for another IP',
  "peers keep the victim's MAC for the victim's IP, whether the claim comes from a guest port (arp-spoof drops counted) or an unguarded port (edge-guest-claim drops counted); an unguarded port's claim of an address no local guest holds does move a peer's entry (control)",
  async (t, { lab, subnet }) => {
    const cidr = subnet();
    const net = await lab.network('ga', cidr);
    const [victim, attacker, third] = await Promise.all([
      lab.guest('ga-victim', 'ga'),
      lab.guest('ga-attacker', 'ga'),
      lab.guest('ga-third', 'ga'),
    ]);
    const learnt =
      (await lab.ping('ga-third', victim.ip)) && (await neighbourMac(third.netns, victim.ip)) === victim.mac;
    // An address no local guest holds, known to the third guest by an older MAC.
    const free = cidr.replace(/0\/24$/, '150');
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
    // Past the neighbour locktime (1 s), so an unguarded claim would replace the entry.
    await sleep(1200);
    await lab.execOk('ga-attacker', [PYTHON, FRAMES, 'eth0', `garp=${victim.ip}`]);
    await sleep(300);
    const after = await neighbourMac(third.netns, victim.ip);
    const drops = await lab.drops('ga', attacker.port, 'arp-spoof');

    const evil = '02:00:00:00:0e:01';
    const r = await rogue(t, lab.prefix, 'ga', net.bridge, {
      mac: evil,
      ip: cidr.replace(/0\/24$/, '201'),
      prefixLen: 24,
    });
    const endpoint = new Names(lab.prefix).endpointVeth('ga');
    await inNetns(r.netns, [PYTHON, FRAMES, 'eth0', `garp=${victim.ip}`, `garp=${free}`]);
    let poisoned: string | undefined;
    for (let i = 0; i < 20 && poisoned !== evil; i++) {
      await sleep(50);
      poisoned = await neighbourMac(third.netns, free);
    }
    const fromRogue = await neighbourMac(third.netns, victim.ip);
    const edgeDrops = await lab.drops('ga', endpoint, 'edge-guest-claim');
    return [
      see(learnt, `control: a third guest maps ${victim.ip} to the victim's MAC`),
      see(
        after === victim.mac,
        `after the attacker's gratuitous ARP the third guest maps it to ${after ?? 'nothing'}`,
      ),
      see(drops >= 3, `arp-spoof drops on the attacker's port: ${drops}`),
      see(
        fromRogue === victim.mac,
        `after the same claim from an unguarded port the third guest maps it to ${fromRogue ?? 'nothing'}`,
      ),
      see(edgeDrops >= 3, `edge-guest-claim drops on the network: ${edgeDrops}`),
      see(
        poisoned === evil,
        `control: the unguarded port's claim of ${free} (no local guest's) moves the entry to ${poisoned ?? 'nothing'}`,
      ),
    ];
  },
);
