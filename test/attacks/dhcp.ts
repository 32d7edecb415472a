// DHCP rows: a guest claiming another guest's MAC in chaddr, a DECLINE or
// RELEASE forged in a guest's name, and a starvation flood of made-up
// chaddrs. The guard drops the first two at a guest's own port; the flood is
// also sent from an unguarded port, whose frames the guard's port classes
// keep from the endpoint (edge-to-endpoint), so the server's own defences
// (unknown MACs never touch the store, refusal records capped per port) are
// only the second line now.
import { setTimeout as sleep } from 'node:timers/promises';
import { Names } from '../../hostnet/names.js';
import { discoverFrom, udhcpcOnce, udhcpcScript } from '../helpers/dhcp_lab.js';
import { rogue } from '../helpers/hostnet_lab.js';
import { probe } from './guest-probe.js';
import { auditCursor, auditSince } from './observe.js';
import { attack, see } from './result.js';

export const dhcpForeignChaddr = attack(
  'DHCP with a foreign chaddr',
  "no answer to a DISCOVER carrying another guest's MAC; dhcp-chaddr drops counted; no lease for that MAC",
  async (_t, { lab, subnet }) => {
    await lab.network('fc', subnet());
    const [a, b] = await Promise.all([
      lab.guest('fc-a', 'fc', { address: false }),
      lab.guest('fc-b', 'fc', { address: false }),
    ]);
    // Side by side: each counts only the answers to its own xid.
    const [control, spoof] = await Promise.all([
      discoverFrom(a.netns, a.mac, a.mac),
      discoverFrom(a.netns, a.mac, b.mac),
    ]);
    const drops = await lab.drops('fc', a.port, 'dhcp-chaddr');
    const { leases } = await lab.d.client.leases('fc');
    const forB = leases.filter((l) => l.mac === b.mac);
    return [
      see(
        control.answers === 1 && control.types[0] === 2,
        `control: with its own chaddr, ${control.answers} answer (OFFER)`,
      ),
      see(spoof.answers === 0, `with B's MAC as chaddr: ${spoof.answers} answers`),
      see(drops >= 1, `dhcp-chaddr drops on A's port: ${drops}`),
      see(forB.length === 0, `leases for B's MAC: ${forB.length}`),
    ];
  },
);

interface Flood {
  sent: number;
  answers: number;
}

function flood(netns: string, count: number, seconds: number): Promise<Flood> {
  return probe<Flood>(netns, ['dhcpflood', 'eth0', String(count), String(seconds), '1']);
}

const FLOOD = 3000;
const FLOOD_SECONDS = 3;

export const dhcpStarvation = attack(
  'DHCP starvation',
  'thousands of DISCOVERs with random chaddrs get no answer and no lease (dropped at a guarded port as dhcp-chaddr, at the endpoint as edge-to-endpoint from an unguarded one, so no refusal record is even needed); a real guest asking meanwhile gets its lease',
  async (t, { lab, subnet }) => {
    const cidr = subnet();
    const net = await lab.network('st', cidr);
    const [real, flooder] = await Promise.all([
      lab.guest('st-real', 'st', { address: false }),
      lab.guest('st-flood', 'st', { address: false }),
    ]);
    const loose = await rogue(t, lab.prefix, 'st', net.bridge, {
      mac: '02:5e:00:00:00:01',
      ip: cidr.replace(/0\/24$/, '202'),
      prefixLen: 24,
    });
    const script = await udhcpcScript(t);
    const cursor = await auditCursor(lab);
    const floods = Promise.all([
      flood(flooder.netns, FLOOD, FLOOD_SECONDS),
      flood(loose.netns, FLOOD, FLOOD_SECONDS),
    ]);
    // The real guest asks once the flood is under way (scapy takes a second to import).
    for (let i = 0; i < 50 && (await lab.drops('st', flooder.port, 'dhcp-chaddr')) === 0; i++)
      await sleep(100);
    const started = Date.now();
    const served = await udhcpcOnce(lab, 'st-real', script);
    const servedIn = Date.now() - started;
    const [guarded, unguarded] = await floods;
    await sleep(1500); // the server writes its per-port summaries once a second
    const drops = await lab.drops('st', flooder.port, 'dhcp-chaddr');
    const edge = await lab.drops('st', new Names(lab.prefix).endpointVeth('st'), 'edge-to-endpoint');
    const { leases } = await lab.d.client.leases('st');
    const records = (await auditSince(lab, cursor)).filter((r) => r.network === 'st');
    const written = records.filter(
      (r) => r.event === 'dhcp.discover' && r.reason === 'mac-not-assigned',
    ).length;
    const summarised = records
      .filter((r) => r.event === 'dhcp.suppressed')
      .reduce((n, r) => n + Number((r.detail as { count?: number } | undefined)?.count ?? 0), 0);
    return [
      see(
        served.code === 0 && served.got.ip === real.ip,
        `the real guest during the flood: ${served.got.ip ? `lease ${served.got.ip}` : 'NO lease'} in ${servedIn} ms`,
      ),
      see(
        guarded.answers === 0 && unguarded.answers === 0,
        `answers to the ${guarded.sent + unguarded.sent} flood DISCOVERs: ${guarded.answers + unguarded.answers}`,
      ),
      see(drops >= guarded.sent, `dhcp-chaddr drops on the guarded flooder's port: ${drops}`),
      see(
        leases.length === 1 && leases[0]?.mac === real.mac,
        `leases on the network: ${leases.length} (${leases.map((l) => l.mac).join(', ')})`,
      ),
      see(
        edge >= unguarded.sent && written === 0 && summarised === 0,
        `from the unguarded port: ${edge} edge-to-endpoint drops, ${written + summarised} refusals the server had to record`,
        { 'dhcp-chaddr': drops, 'edge-to-endpoint': edge },
      ),
    ];
  },
);
