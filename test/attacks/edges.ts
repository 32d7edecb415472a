// Edge rows (issue 12): what a port that is neither a guest port nor the
// endpoint (an uplink, a trunk, or a veth an operator plugs in by hand) can
// do to a network's endpoint and guests. Each row plugs a foreign namespace
// into the bridge behind berthd's back and attacks from there with scapy or
// real servers; the guard's port classes refuse it, a guest or a capture shows
// the effect never happened, and the network's edge counters count the drops
// (each row returns the counters that rose, for the audit checks paired with them).
import { setTimeout as sleep } from 'node:timers/promises';
import { udhcpcOnce, udhcpcScript } from '../helpers/dhcp_lab.js';
import { inNetns, neighbourMac, sh } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { background, capture, edgeDrops, endpointMac, foreign, frames, rose } from './edge-lab.js';
import { auditCursor, guardDropRecord, sawGuardDrop, tryCurl } from './observe.js';
import { attack, see } from './result.js';

const METADATA_IP = '169.254.169.254';

export const arpPayloadFromForeign = attack(
  "Foreign port: ARP naming a guest's MAC, then metadata",
  "an ARP request whose payload names the victim's MAC never reaches the endpoint (edge-to-endpoint drops counted), the endpoint holds no entry tying the attacker's IP to the victim's MAC, and the foreign namespace's metadata request gets no answer; the drop is audited (guard.drop, class foreign); the victim's own request is answered (control)",
  async (t, { lab, subnet }) => {
    await lab.network('ea', subnet());
    const victim = await mdGuest(lab, 'ea-victim', 'ea');
    const evil = await foreign(t, lab, 'ea', 'ea', 201);
    const net = await lab.show('ea');
    const epMac = await endpointMac(lab, 'ea');
    const before = await edgeDrops(lab, 'ea');
    const cursor = await auditCursor(lab);
    const sent =
      (await frames(evil.netns, ['arp', epMac, victim.mac, evil.ip, net.service_ip, '5'])) +
      (await frames(evil.netns, ['arp', 'ff:ff:ff:ff:ff:ff', victim.mac, evil.ip, net.service_ip, '5']));
    // The attacker's HTTP request goes straight to the endpoint's MAC, so only the guard stands in its way.
    await inNetns(evil.netns, ['ip', 'route', 'add', METADATA_IP, 'dev', 'eth0']);
    await inNetns(evil.netns, ['ip', 'neigh', 'replace', METADATA_IP, 'lladdr', epMac, 'dev', 'eth0']);
    const stolen = await tryCurl(evil.netns, '/latest/meta-data/instance-id');
    const own = await tryCurl(victim.netns, '/latest/meta-data/instance-id');
    const entry = await neighbourMac(net.endpoint, evil.ip);
    const drops = rose(before, await edgeDrops(lab, 'ea'));
    return [
      see(
        own.status === 200 && own.body === victim.id,
        `control: the victim's own request answered ${own.status} ${own.body}`,
      ),
      see(
        (drops['edge-to-endpoint'] ?? 0) >= sent,
        `${sent} ARP requests sent; edge-to-endpoint drops: ${drops['edge-to-endpoint'] ?? 0}`,
        drops,
      ),
      see(entry !== victim.mac, `the endpoint's entry for ${evil.ip}: ${entry ?? 'none'}`),
      see(stolen.status === 0, `the foreign namespace's metadata request: ${stolen.status || 'no answer'}`),
      sawGuardDrop(
        await guardDropRecord(lab, cursor, evil.port, 'edge-to-endpoint'),
        'edge-to-endpoint',
        'foreign',
      ),
    ];
  },
);

/** An HTTP server on :80 that answers "rogue" to everything and prints one line per request. */
const ROGUE_HTTP = `
import http.server as h
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        print("hit", self.path, flush=True)
        b = b"rogue"
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
h.ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
`;

export const rogueMetadata = attack(
  'Foreign port: rogue metadata service',
  "a foreign namespace holding 169.254.169.254 and the service address, claiming both by ARP replies and serving HTTP, answers none of the guest's metadata requests (edge-service-claim drops counted); berth answers all with the guest's own instance-id; every drop kind is audited (guard.drop, class foreign)",
  async (t, { lab, subnet }) => {
    await lab.network('em', subnet());
    const guest = await mdGuest(lab, 'em-guest', 'em');
    const evil = await foreign(t, lab, 'em', 'em', 202);
    const net = await lab.show('em');
    for (const ip of [METADATA_IP, net.service_ip])
      await inNetns(evil.netns, ['ip', 'addr', 'add', `${ip}/32`, 'dev', 'eth0']);
    const server = background(t, evil.netns, ['/usr/bin/python3', '-c', ROGUE_HTTP]);
    const before = await edgeDrops(lab, 'em');
    const cursor = await auditCursor(lab);
    const claims = frames(evil.netns, ['claim', '4', guest.mac, METADATA_IP, net.service_ip]);
    await sleep(500);
    const answers: string[] = [];
    for (let i = 0; i < 5; i++) {
      await inNetns(guest.netns, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
      const r = await tryCurl(guest.netns, '/latest/meta-data/instance-id', [], 3);
      answers.push(r.status === 200 ? r.body : `status ${r.status}`);
      await sleep(300);
    }
    const claimed = await claims;
    const mapped = await neighbourMac(guest.netns, METADATA_IP);
    const drops = rose(before, await edgeDrops(lab, 'em'));
    const hits = server
      .out()
      .split('\n')
      .filter((l) => l.startsWith('hit')).length;
    return [
      see(
        answers.every((a) => a === guest.id),
        `the guest's 5 metadata requests answered: ${answers.join(', ')}`,
      ),
      see(hits === 0, `requests that reached the rogue server: ${hits}`),
      see(
        mapped !== evil.mac,
        `the guest maps ${METADATA_IP} to ${mapped ?? 'nothing'} (the rogue is ${evil.mac})`,
      ),
      see(
        (drops['edge-service-claim'] ?? 0) > 0,
        `${claimed} claims sent; edge-service-claim drops: ${drops['edge-service-claim'] ?? 0}`,
        drops,
      ),
      sawGuardDrop(
        await guardDropRecord(lab, cursor, evil.port, 'edge-service-claim'),
        'edge-service-claim',
        'foreign',
      ),
    ];
  },
);

export const rogueDhcpServer = attack(
  'Foreign port: rogue DHCP server',
  "with busybox udhcpd on a foreign port and forged OFFERs/ACKs/DHCPv6 replies sent unasked, from source ports 67 and 1067, the guest's udhcpc gets berth's lease every time and sees no server frame from the rogue (edge-dhcp-server drops counted); another foreign namespace does get the rogue's lease (control); every drop kind is audited (guard.drop, class foreign)",
  async (t, { lab, subnet }) => {
    const cidr = subnet();
    await lab.network('ed', cidr);
    const guest = await lab.guest('ed-guest', 'ed', { address: false });
    const evil = await foreign(t, lab, 'ed', 'ed', 203);
    const bystander = await foreign(t, lab, 'ed', 'edb', 204);
    const net = await lab.show('ed');
    const base = cidr.replace(/0\/24$/, '');
    const conf = `/tmp/${lab.prefix}-udhcpd-ed.conf`;
    await sh('sh', [
      '-c',
      `printf 'interface eth0\\nstart ${base}150\\nend ${base}160\\nlease_file /tmp/${lab.prefix}-udhcpd-ed.leases\\noption router ${evil.ip}\\noption subnet 255.255.255.0\\n' > ${conf}; touch /tmp/${lab.prefix}-udhcpd-ed.leases`,
    ]);
    t.teardown(() => sh('rm', ['-f', conf, `/tmp/${lab.prefix}-udhcpd-ed.leases`]).catch(() => undefined));
    background(t, evil.netns, ['busybox', 'udhcpd', '-f', conf]);
    await sleep(300);
    const script = await udhcpcScript(t);
    const control = await inNetns(bystander.netns, [
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
      '-s',
      script,
    ]);
    const rogueLease = /ip=(\S+)/.exec(control.stdout)?.[1];
    const before = await edgeDrops(lab, 'ed');
    const cursor = await auditCursor(lab);
    const blast = frames(evil.netns, ['dhcpserver', '20', guest.mac, guest.mac, `${base}155`]);
    const leases: string[] = [];
    let seen: string[] = [];
    seen = await capture(
      t,
      guest.netns,
      `ether src ${evil.mac} and udp and (dst port 68 or dst port 546)`,
      async () => {
        for (let i = 0; i < 3; i++) {
          const r = await udhcpcOnce(lab, 'ed-guest', script);
          leases.push(`${r.got.ip ?? 'none'} from ${r.got.serverid ?? '?'}`);
        }
        await blast;
      },
    );
    const sent = await blast;
    const drops = rose(before, await edgeDrops(lab, 'ed'));
    const want = `${guest.ip} from ${net.service_ip}`;
    return [
      see(
        rogueLease !== undefined,
        `control: the bystander foreign namespace got ${rogueLease ?? 'no'} lease from the rogue`,
      ),
      see(
        leases.every((l) => l === want),
        `the guest's leases: ${leases.join(', ')}`,
      ),
      see(seen.length === 0, `server frames from the rogue seen by the guest: ${seen.length}`),
      see(
        (drops['edge-dhcp-server'] ?? 0) >= sent,
        `${sent} forged server frames sent; edge-dhcp-server drops: ${drops['edge-dhcp-server'] ?? 0}`,
        drops,
      ),
      sawGuardDrop(
        await guardDropRecord(lab, cursor, evil.port, 'edge-dhcp-server'),
        'edge-dhcp-server',
        'foreign',
      ),
    ];
  },
);

export const declineFromForeign = attack(
  "Foreign port: DHCP DECLINE/RELEASE in a guest's name",
  "DECLINEs and RELEASEs carrying the victim's chaddr from a foreign port never reach the endpoint (edge-to-endpoint drops counted); the victim's lease stays bound and it renews the same address; every drop kind is audited (guard.drop, class foreign)",
  async (t, { lab, subnet }) => {
    await lab.network('ex', subnet());
    const victim = await lab.guest('ex-victim', 'ex', { address: false });
    const script = await udhcpcScript(t);
    const first = await udhcpcOnce(lab, 'ex-victim', script);
    const evil = await foreign(t, lab, 'ex', 'ex', 205);
    const net = await lab.show('ex');
    const epMac = await endpointMac(lab, 'ex');
    const before = await edgeDrops(lab, 'ex');
    const cursor = await auditCursor(lab);
    const sent = await frames(evil.netns, ['decline', '5', epMac, victim.mac, victim.ip, net.service_ip]);
    await sleep(300);
    const { leases } = await lab.d.client.leases('ex');
    const lease = leases.find((l) => l.mac === victim.mac);
    const renewed = await udhcpcOnce(lab, 'ex-victim', script);
    const drops = rose(before, await edgeDrops(lab, 'ex'));
    return [
      see(first.got.ip === victim.ip, `control: the victim's first lease ${first.got.ip ?? 'none'}`),
      see(
        (drops['edge-to-endpoint'] ?? 0) >= sent,
        `${sent} forged DECLINE/RELEASE frames sent; edge-to-endpoint drops: ${drops['edge-to-endpoint'] ?? 0}`,
        drops,
      ),
      see(lease?.state === 'bound', `the victim's lease afterwards: ${lease?.state ?? 'none'}`),
      see(renewed.got.ip === victim.ip, `the victim renews: ${renewed.got.ip ?? 'no lease'}`),
      sawGuardDrop(
        await guardDropRecord(lab, cursor, evil.port, 'edge-to-endpoint'),
        'edge-to-endpoint',
        'foreign',
      ),
    ];
  },
);

export const endpointStaysLocal = attack(
  'Endpoint frames leave only to guest ports',
  "while guests ARP for the service addresses, read metadata and take a lease whose answers the endpoint broadcasts (udhcpc -B sets the broadcast flag), a capture on a foreign port shows no frame from the endpoint's MAC (endpoint-egress drops counted); it does show the guests' own broadcasts (control)",
  async (t, { lab, subnet }) => {
    await lab.network('ee', subnet());
    const [a, b] = await Promise.all([mdGuest(lab, 'ee-a', 'ee'), mdGuest(lab, 'ee-b', 'ee')]);
    const evil = await foreign(t, lab, 'ee', 'ee', 206);
    const net = await lab.show('ee');
    const epMac = await endpointMac(lab, 'ee');
    const before = await edgeDrops(lab, 'ee');
    const results: boolean[] = [];
    const seen = await capture(t, evil.netns, `ether src ${epMac} or ether src ${a.mac}`, async () => {
      for (const g of [a, b]) {
        await inNetns(g.netns, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
        results.push(await lab.ping(g.name, net.service_ip));
        results.push((await tryCurl(g.netns, '/latest/meta-data/instance-id')).body === g.id);
      }
      // The endpoint never ARPs for a guest (its entries are berth's PERMANENT ones), but a client
      // that sets the broadcast flag gets its OFFER and ACK by broadcast, flooded to every port.
      const lease = await udhcpcOnce(lab, a.name, await udhcpcScript(t), ['-B']);
      results.push(lease.got.ip === a.ip);
    });
    const fromEndpoint = seen.filter((l) => l.includes(`${epMac} >`)).length;
    const fromGuest = seen.filter((l) => l.includes(`${a.mac} >`)).length;
    const drops = rose(before, await edgeDrops(lab, 'ee'));
    return [
      see(
        results.every(Boolean),
        `control: pings and metadata reads ${results.filter(Boolean).length}/${results.length} answered`,
      ),
      see(fromGuest > 0, `control: the foreign port saw ${fromGuest} frames from a guest`),
      see(fromEndpoint === 0, `frames from the endpoint's MAC seen on the foreign port: ${fromEndpoint}`),
      see(
        (drops['endpoint-egress'] ?? 0) > 0,
        `endpoint-egress drops: ${drops['endpoint-egress'] ?? 0}`,
        drops,
      ),
    ];
  },
);

export const EDGE_ROWS = [
  arpPayloadFromForeign,
  rogueMetadata,
  rogueDhcpServer,
  declineFromForeign,
  endpointStaysLocal,
];
