// Rows about identities over time and space: an address freed by a delete is
// not handed to the next guest (quarantine), and two networks with the same
// subnet keep their guests, and their metadata, apart.
import type { PoolUsage } from '../../agent/api/types.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { tryCurl } from './observe.js';
import { attack, see } from './result.js';

const ID = '/latest/meta-data/instance-id';

export const ipReusedAfterDelete = attack(
  'An IP reused after delete (quarantine)',
  "a deleted guest's IP and MAC go into quarantine: on a full network the next create is refused rather than given the freed IP",
  async (_t, { lab, subnet }) => {
    // A /29 fills up after a handful of guests, so the freed address is the only candidate left.
    const net = await lab.network('qr', subnet().replace(/\/24$/, '/29'));
    const names = Array.from({ length: net.ips.free }, (_, i) => `qr-${i}`);
    const made = await Promise.all(names.map((n) => lab.guest(n, 'qr', { address: false })));
    const full = (await lab.show('qr')).ips;
    const gone = made[0];
    if (!gone) throw new Error('the /29 network has no free addresses');
    const poolBefore = await lab.d.client.pool();
    const del = await lab.ctl(['instance', 'delete', gone.name]);
    if (del.code !== 0) throw new Error(`instance delete ${gone.name}: ${del.stderr}`);
    const after = (await lab.show('qr')).ips;
    const poolAfter = await lab.d.client.pool();
    const next = await lab.ctl(['instance', 'create', 'qr-next', '--network', 'qr', '--runtime', 'netns']);
    const quarantinedMacs = (p: PoolUsage) => p.pools.reduce((n, x) => n + x.quarantined, 0);
    return [
      see(
        full.free === 0 && full.assigned === made.length,
        `control: ${made.length} guests fill the network (${full.free} free)`,
      ),
      see(
        after.quarantined === 1 && after.free === 0,
        `after deleting ${gone.name} (${gone.ip}): ${after.quarantined} IP in quarantine, ${after.free} free`,
      ),
      see(
        quarantinedMacs(poolAfter) === quarantinedMacs(poolBefore) + 1,
        `MACs in quarantine: ${quarantinedMacs(poolBefore)} before, ${quarantinedMacs(poolAfter)} after`,
      ),
      see(
        next.code !== 0 &&
          /quarantine/.test(next.stdout + next.stderr) &&
          !(next.stdout + next.stderr).includes(`"${gone.ip}"`),
        `the next create: exit ${next.code}, ${next.stderr.trim()}`,
      ),
    ];
  },
);

export const overlappingSubnets = attack(
  'Overlapping subnets across networks',
  "the same subnet on two networks: guests with the same IP each get their own metadata; neither network reaches the other's guests",
  async (_t, { lab, subnet }) => {
    const cidr = subnet();
    await Promise.all([lab.network('ova', cidr), lab.network('ovb', cidr)]);
    // a1 and b1 first, so each takes its network's first address; a2 then holds one b1's network lacks.
    const [a1, b1] = await Promise.all([mdGuest(lab, 'ova-1', 'ova'), mdGuest(lab, 'ovb-1', 'ovb')]);
    const a2 = await mdGuest(lab, 'ova-2', 'ova');
    const [ida, idb] = await Promise.all([tryCurl(a1.netns, ID), tryCurl(b1.netns, ID)]);
    const [within, across] = await Promise.all([lab.ping('ova-1', a2.ip), lab.noPing('ovb-1', a2.ip)]);
    return [
      see(a1.ip === b1.ip, `a1 and b1 both have ${a1.ip}`),
      see(
        ida.body === a1.id && idb.body === b1.id,
        `metadata: a1 gets ${ida.body === a1.id ? 'its own id' : ida.body}, b1 gets ${idb.body === b1.id ? 'its own id' : idb.body}`,
      ),
      see(within, `control: a1 reaches a2 (${within ? 'yes' : 'no'})`),
      see(across, `b1 reaches a2: ${across ? 'no' : 'YES'}`),
    ];
  },
);
