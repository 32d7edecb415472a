// Flat uplink rows: a flat provider network whose uplink is a veth, with the
// far end in a namespace that stands for the physical network behind the NIC
// (a router at the gateway address, and whoever else is out there). The uplink
// is an "uplink" class port in the guard (neither a guest nor an endpoint
// port): legitimate traffic between local guests and the far side passes,
// while berth's DHCP and metadata stay local and the far side can claim no
// local guest's address nor serve DHCP to guests. Drops are audited as
// guard.drop with class uplink.
import type { Test } from 'tap';
import type { Network } from '../../agent/api/types.js';
import { discoverFrom } from '../helpers/dhcp_lab.js';
import { inNetns, type Lab, neighbourMac, sh } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { capture, edgeDrops, endpointMac, frames, rose } from './edge-lab.js';
import { auditCursor, guardDropRecord, sawGuardDrop, tryCurl } from './observe.js';
import { attack, see } from './result.js';

const METADATA_IP = '169.254.169.254';

export interface FarSide {
  /** The namespace behind the uplink; its eth0 is the uplink's peer. */
  netns: string;
  /** The uplink: the veth end on the host, a port of the network's bridge. */
  uplink: string;
  mac: string;
  /** The far side's own address: the network's gateway, which berth never hands out. */
  ip: string;
}

/**
 * A flat network on a fresh uplink veth. The far namespace is named without
 * `<prefix>-`, which berth's orphan sweep owns, so a reconcile pass leaves it.
 */
export async function flatNetwork(
  t: Test,
  lab: Lab,
  name: string,
  subnet: string,
  tag: string,
): Promise<{ net: Network; far: FarSide }> {
  const uplink = `${lab.prefix}xu${tag}`;
  const netns = `${lab.prefix}x-far${tag}`;
  const ip = subnet.replace(/0\/24$/, '1');
  const mac = `02:5e:0f:01:00:${tag.charCodeAt(0).toString(16).padStart(2, '0')}`;
  t.teardown(async () => {
    await sh('ip', ['netns', 'delete', netns]).catch(() => undefined);
    await sh('ip', ['link', 'delete', uplink]).catch(() => undefined);
  });
  await sh('ip', ['netns', 'add', netns]);
  await sh('ip', ['link', 'add', uplink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'address', mac, 'up']);
  await sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['-n', netns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  const net = await lab.json<Network>([
    'network',
    'create',
    name,
    '--subnet',
    subnet,
    '--gateway',
    ip,
    '--uplink',
    uplink,
  ]);
  return { net, far: { netns, uplink, mac, ip } };
}

/** True when `count` echoes from the far side to ip are all answered. */
async function farPing(far: FarSide, ip: string, extra: string[] = [], count = 2): Promise<boolean> {
  const r = await inNetns(far.netns, [
    'ping',
    '-n',
    '-q',
    '-c',
    String(count),
    '-i',
    '0.2',
    '-W',
    '1',
    ...extra,
    ip,
  ]);
  return r.code === 0 && new RegExp(`${count} received`).test(r.stdout);
}

export const uplinkStaysOutOfServices = attack(
  'Flat uplink: a stranger behind the uplink asks for DHCP and metadata',
  "a local guest and the far side's router (at the gateway address, which berth never hands out) ping each other both ways (control); a stranger's DHCPDISCOVER from behind the uplink gets no OFFER, as itself or posing with the guest's MAC, its metadata request (to the endpoint's MAC) no answer, and the service address no ping reply (edge-to-endpoint drops counted); a capture behind the uplink sees no frame from the endpoint while the guest takes a broadcast lease and reads metadata; the drop is audited (guard.drop, class uplink)",
  async (t, { lab, subnet }) => {
    const { net, far } = await flatNetwork(t, lab, 'fa', subnet(), 'a');
    const guest = await mdGuest(lab, 'fa-guest', 'fa');
    const epMac = await endpointMac(lab, 'fa');
    const there = await lab.ping(guest.name, far.ip);
    const back = await farPing(far, guest.ip);
    const before = await edgeDrops(lab, 'fa');
    const cursor = await auditCursor(lab);
    const offer = await discoverFrom(far.netns, far.mac, far.mac);
    // The strongest try: the guest's own MAC as frame source and chaddr (its FDB entry is sticky to its port).
    const posing = await discoverFrom(far.netns, guest.mac, guest.mac);
    await inNetns(far.netns, ['ip', 'route', 'add', METADATA_IP, 'dev', 'eth0']);
    await inNetns(far.netns, ['ip', 'neigh', 'replace', METADATA_IP, 'lladdr', epMac, 'dev', 'eth0']);
    const stolen = await tryCurl(far.netns, '/latest/meta-data/instance-id');
    const service = await farPing(far, net.service_ip, [], 1);
    const own: boolean[] = [];
    const seen = await capture(t, far.netns, `ether src ${epMac}`, async () => {
      own.push((await tryCurl(guest.netns, '/latest/meta-data/instance-id')).body === guest.id);
      const lease = await inNetns(guest.netns, [
        'busybox',
        'udhcpc',
        '-i',
        'eth0',
        '-n',
        '-q',
        '-t',
        '3',
        '-T',
        '1',
        '-B',
        '-s',
        '/bin/true',
      ]);
      own.push(lease.code === 0);
    });
    const drops = rose(before, await edgeDrops(lab, 'fa'));
    return [
      see(
        there && back,
        `control: guest -> far side ${there ? 'answered' : 'LOST'}, far side -> guest ${back ? 'answered' : 'LOST'}`,
      ),
      see(
        own.every(Boolean),
        `control: the guest's own metadata read and broadcast lease ${own.filter(Boolean).length}/${own.length}`,
      ),
      see(
        offer.answers === 0 && posing.answers === 0,
        `the stranger's DHCPDISCOVERs got ${offer.answers} answers as itself and ${posing.answers} posing with the guest's MAC`,
      ),
      see(stolen.status === 0, `the stranger's metadata request: ${stolen.status || 'no answer'}`),
      see(
        !service,
        `the stranger's ping to the service address ${net.service_ip}: ${service ? 'ANSWERED' : 'no reply'}`,
      ),
      see(seen.length === 0, `frames from the endpoint's MAC seen behind the uplink: ${seen.length}`),
      see(
        (drops['edge-to-endpoint'] ?? 0) > 0,
        `edge-to-endpoint drops: ${drops['edge-to-endpoint'] ?? 0}`,
        drops,
      ),
      sawGuardDrop(
        await guardDropRecord(lab, cursor, far.uplink, 'edge-to-endpoint'),
        'edge-to-endpoint',
        'uplink',
      ),
    ];
  },
);

export const uplinkClaimsGuest = attack(
  "Flat uplink: frames claiming a local guest's address, and a rogue DHCP server",
  "from behind the uplink, ARP replies claiming guest A's IP and pings to guest B from A's IP never reach B (its neighbour entry for A stays unpoisoned, a capture sees none; edge-guest-claim drops counted), nor do forged DHCP OFFERs/ACKs (edge-dhcp-server drops counted); the far side's own pings to B are answered (control); audited (guard.drop, class uplink)",
  async (t, { lab, subnet }) => {
    const { far } = await flatNetwork(t, lab, 'fb', subnet(), 'b');
    const a = await lab.guest('fb-a', 'fb');
    const b = await lab.guest('fb-b', 'fb');
    const honest = await farPing(far, b.ip);
    const before = await edgeDrops(lab, 'fb');
    const cursor = await auditCursor(lab);
    await inNetns(far.netns, ['ip', 'addr', 'add', `${a.ip}/32`, 'dev', 'eth0']);
    await inNetns(far.netns, ['ip', 'neigh', 'replace', b.ip, 'lladdr', b.mac, 'dev', 'eth0']);
    let claims = 0;
    let forged = 0;
    const spoofed = await capture(
      t,
      b.netns,
      // Only frames that claim A's address (ARP sender A, IP from A) or serve DHCP: the far
      // side's own ARP replies for its own address (B revalidating it, under load) are honest.
      `ether src ${far.mac} and ((arp and arp[14:4] = 0x${ipHex(a.ip)}) or (ip and src host ${a.ip}) or udp port 68)`,
      async () => {
        claims = await frames(far.netns, ['claim', '1', b.mac, a.ip]);
        await farPing(far, b.ip, ['-I', a.ip], 3);
        forged = await frames(far.netns, ['dhcpserver', '3', b.mac, b.mac, a.ip]);
      },
    );
    const entry = await neighbourMac(b.netns, a.ip);
    const drops = rose(before, await edgeDrops(lab, 'fb'));
    return [
      see(honest, `control: the far side's pings to B from its own address ${honest ? 'answered' : 'LOST'}`),
      see(
        spoofed.length === 0,
        `claims, spoofed pings and DHCP server frames from the far side seen by B: ${spoofed.length}`,
      ),
      see(
        entry !== far.mac,
        `B's neighbour entry for A's ${a.ip}: ${entry ?? 'none'} (the far side is ${far.mac})`,
      ),
      see(
        (drops['edge-guest-claim'] ?? 0) >= claims + 3,
        `${claims} ARP claims and 3 spoofed pings sent; edge-guest-claim drops: ${drops['edge-guest-claim'] ?? 0}`,
        drops,
      ),
      see(
        (drops['edge-dhcp-server'] ?? 0) >= forged,
        `${forged} forged DHCP server frames sent; edge-dhcp-server drops: ${drops['edge-dhcp-server'] ?? 0}`,
        drops,
      ),
      sawGuardDrop(
        await guardDropRecord(lab, cursor, far.uplink, 'edge-guest-claim'),
        'edge-guest-claim',
        'uplink',
      ),
    ];
  },
);

export const UPLINK_ROWS = [uplinkStaysOutOfServices, uplinkClaimsGuest];

/** An IPv4 address as 8 hex digits, for a pcap byte match. */
function ipHex(ip: string): string {
  return ip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('');
}
