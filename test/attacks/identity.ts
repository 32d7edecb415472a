// Rows about who the metadata service thinks is calling: a namespace on a
// port berth does not own, a guest's MAC showing up on another port, and ARP
// lies about a guest. The caller is X only when its source IP is X's assigned
// IP, the endpoint's entry for it is berth's PERMANENT one with X's MAC, and
// the FDB pins X's MAC on X's port: never a header, never a learned entry.
import type { Test } from 'tap';
import { fdbPort, inNetns, type Lab, rogue, sh } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { probe } from './guest-probe.js';
import { auditCursor, guardDropRecord, sawGuardDrop, tryCurl } from './observe.js';
import { attack, see } from './result.js';

const ID = '/latest/meta-data/instance-id';

/** A namespace on an unowned bridge port, addressed in the subnet and routed to 169.254.169.254. */
async function stranger(t: Test, lab: Lab, tag: string, bridge: string, mac: string, ip: string) {
  const r = await rogue(t, lab.prefix, tag, bridge, { mac, ip, prefixLen: 24 });
  await inNetns(r.netns, ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
  return r;
}

export const metadataUnknownPort = attack(
  'Metadata from an unknown port',
  "no answer: the guard keeps a port that is not a guest's from the endpoint (edge-to-endpoint), and audits the drop (guard.drop, class foreign) with the MAC observed; a guest on an owned port is served",
  async (t, { lab, subnet }) => {
    const cidr = subnet();
    const net = await lab.network('up', cidr);
    const owned = await mdGuest(lab, 'up-a', 'up');
    const control = await tryCurl(owned.netns, ID);
    const mac = '02:66:00:00:00:01';
    const r = await stranger(t, lab, 'up', net.bridge, mac, cidr.replace(/0\/24$/, '200'));
    const cursor = await auditCursor(lab);
    const got = await tryCurl(r.netns, ID);
    const rec = await guardDropRecord(lab, cursor, r.port, 'edge-to-endpoint');
    const drop = sawGuardDrop(rec, 'edge-to-endpoint', 'foreign');
    return [
      see(
        control.status === 200 && control.body === owned.id,
        `control: the owned guest gets ${control.status} ${control.body}`,
      ),
      see(got.status === 0, `stranger: ${got.status ? `HTTP ${got.status}` : 'no answer'}`),
      see(drop.ok && rec?.mac === mac, drop.saw),
    ];
  },
);

export const macMoved = attack(
  'The MAC moved to another port',
  "a guarded guest cannot send another guest's MAC (mac-spoof drop, the FDB keeps the owner's port); from an unguarded port the clone gets no answer (the owner's MAC stays pinned, static sticky, on the owner's port); the owner is served throughout",
  async (t, { lab, subnet }) => {
    const cidr = subnet();
    const net = await lab.network('mv', cidr);
    const [owner, thief] = await Promise.all([
      mdGuest(lab, 'mv-owner', 'mv'),
      mdGuest(lab, 'mv-thief', 'mv'),
    ]);
    const control = await tryCurl(owner.netns, ID);

    await lab.execOk('mv-thief', ['ip', 'link', 'set', 'dev', 'eth0', 'address', owner.mac]);
    const stolen = await tryCurl(thief.netns, ID);
    const drops = await lab.drops('mv', thief.port, 'mac-spoof');
    const fdb = await fdbPort(net.bridge, owner.mac);

    const clone = await stranger(t, lab, 'mv', net.bridge, owner.mac, cidr.replace(/0\/24$/, '201'));
    const cloned = await tryCurl(clone.netns, ID);
    const pinned = await fdbPort(net.bridge, owner.mac);
    const back = await tryCurl(owner.netns, ID);
    return [
      see(control.status === 200, `control: the owner gets ${control.status}`),
      see(
        stolen.status === 0,
        `guarded thief with the owner's MAC: ${stolen.status ? `HTTP ${stolen.status}` : 'no answer'}`,
      ),
      see(drops > 0, `mac-spoof drops on the thief's port: ${drops}`),
      see(
        fdb === owner.port,
        `FDB puts the owner's MAC on ${fdb === owner.port ? "the owner's port" : (fdb ?? 'no port')}`,
      ),
      see(cloned.status === 0, `unguarded clone: ${cloned.status ? `HTTP ${cloned.status}` : 'no answer'}`),
      see(
        pinned === owner.port,
        `after the clone spoke, the FDB puts the owner's MAC on ${pinned === owner.port ? "the owner's port" : (pinned ?? 'no port')}`,
      ),
      see(back.status === 200 && back.body === owner.id, `the owner gets ${back.status} ${back.body}`),
    ];
  },
);

export const guestMacFromForeignPort = attack(
  "A guest's MAC as frame source from a foreign port",
  "the FDB keeps the guest's MAC pinned (static sticky) on the guest's port; resolve still names the guest; the guest is served",
  async (t, { lab, subnet }) => {
    const cidr = subnet();
    const net = await lab.network('sk', cidr);
    const victim = await mdGuest(lab, 'sk-v', 'sk');
    const r = await stranger(t, lab, 'sk', net.bridge, '02:6b:00:00:00:01', cidr.replace(/0\/24$/, '200'));
    await probe(r.netns, ['macsrc', 'eth0', victim.mac, net.service_ip, '20']);
    const fdb = await sh('bridge', ['fdb', 'show', 'br', net.bridge]);
    const line = fdb.split('\n').find((l) => l.startsWith(`${victim.mac} `)) ?? 'none';
    const resolved = await lab.resolve('sk', victim.ip);
    const served = await tryCurl(victim.netns, ID);
    return [
      see(
        line.includes(`dev ${victim.port} `) && /sticky/.test(line) && /static/.test(line),
        `after 20 frames with its MAC from the foreign port, the FDB says: ${line.trim()}`,
      ),
      see(
        resolved.ok && resolved.instance === victim.id && resolved.port === victim.port,
        `resolve: ${resolved.ok ? `${resolved.instance} on ${resolved.port}` : resolved.reason}`,
      ),
      see(served.status === 200 && served.body === victim.id, `the guest is served: ${served.status}`),
    ];
  },
);
