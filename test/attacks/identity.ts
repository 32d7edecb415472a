// Rows about who the metadata service thinks is calling: a namespace on a
// port berth does not own, and a guest's MAC showing up on another port. The
// caller is the observed MAC on its observed bridge port, never a header.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { fdbPort, inNetns, type Lab, rogue } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { auditCursor, auditSince, tryCurl } from './observe.js';
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
  '403 port-not-owned, audited with the MAC and port observed; a guest on an owned port is served',
  async (t, { lab, subnet }) => {
    const cidr = subnet();
    const net = await lab.network('up', cidr);
    const owned = await mdGuest(lab, 'up-a', 'up');
    const control = await tryCurl(owned.netns, ID);
    const mac = '02:66:00:00:00:01';
    const r = await stranger(t, lab, 'up', net.bridge, mac, cidr.replace(/0\/24$/, '200'));
    const cursor = await auditCursor(lab);
    const got = await tryCurl(r.netns, ID);
    const rec = (await auditSince(lab, cursor, 'metadata.request')).find((x) => x.mac === mac);
    return [
      see(
        control.status === 200 && control.body === owned.id,
        `control: the owned guest gets ${control.status} ${control.body}`,
      ),
      see(
        got.status === 403 && /port-not-owned/.test(got.body),
        `stranger: ${got.status} ${got.body.trim()}`,
      ),
      see(
        rec?.reason === 'port-not-owned' && rec.port === r.port,
        `audit: ${rec ? `${rec.reason} on port ${rec.port}` : 'no record'}`,
      ),
    ];
  },
);

export const macMoved = attack(
  'The MAC moved to another port',
  "a guarded guest cannot send another guest's MAC (mac-spoof drop, the FDB keeps the owner's port); from an unguarded port the clone gets 403 mac-wrong-port, audited; the owner is served again",
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
    const cursor = await auditCursor(lab);
    const cloned = await tryCurl(clone.netns, ID);
    const rec = (await auditSince(lab, cursor, 'metadata.request')).find((x) => x.port === clone.port);

    // The owner's next frames move its MAC back to its own port.
    let back = await tryCurl(owner.netns, ID);
    for (let i = 0; i < 10 && back.status !== 200; i++) {
      await sleep(200);
      back = await tryCurl(owner.netns, ID);
    }
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
      see(
        cloned.status === 403 && /mac-wrong-port/.test(cloned.body),
        `unguarded clone: ${cloned.status} ${cloned.body.trim()}`,
      ),
      see(
        rec?.reason === 'mac-wrong-port' && rec.mac === owner.mac,
        `audit: ${rec ? `${rec.reason}, MAC ${rec.mac} on port ${rec.port}` : 'no record'}`,
      ),
      see(
        back.status === 200 && back.body === owner.id,
        `the owner, speaking again, gets ${back.status} ${back.body}`,
      ),
    ];
  },
);
