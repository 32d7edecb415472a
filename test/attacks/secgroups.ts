// Security-group rows: a source's identity cannot be borrowed (the guard
// makes the address in a set stand for the identity that holds it), and a
// connection a rule admitted does not outlive the rule.
import { PYTHON } from '../helpers/hostnet_lab.js';
import { addTcpRule, lostWithin, sgFlow, sgGuest, sgProbe } from '../helpers/sg_lab.js';
import { attack, see } from './result.js';

/** A connection to ip:port from a given source address inside the guest (exit 0: it echoed). */
const FROM = `import socket,sys
s=socket.socket(); s.settimeout(1); s.bind((sys.argv[1],0))
try:
    s.connect((sys.argv[2],int(sys.argv[3]))); s.sendall(b"x\\n"); sys.exit(0 if s.recv(9) else 1)
except OSError:
    sys.exit(1)`;

export const spoofedRoleSource = attack(
  'Security groups: a spoofed role source',
  "a guest outside role:webapp cannot reach a webapp-only port by taking a webapp's IP (ip-spoof drops) or its MAC and IP (mac-spoof drops); its own attempt is refused and audited (secgroup.drop); the real webapp gets in (control)",
  async (t, { lab, subnet }) => {
    const net = await lab.network('sr', subnet());
    await lab.json(['secgroup', 'create', 'sr-db']);
    await addTcpRule(lab, 'sr-db', 3306, 'role:webapp');
    const db = await sgGuest(lab, 'sr-db', net.name, ['--role', 'database', '--secgroup', 'sr-db']);
    const web = await sgGuest(lab, 'sr-web', net.name, ['--role', 'webapp']);
    const evil = await sgGuest(lab, 'sr-evil', net.name, ['--role', 'batch']);
    await sgFlow(t, db.netns, ['serve', '3306'], 'ready');
    const control = await sgProbe(lab, web.name, db.ip, 3306);
    const plain = await sgProbe(lab, evil.name, db.ip, 3306);
    // Drop records are folded (one per port and second) before they are written.
    const refusals = async () =>
      (await lab.d.client.audit({ limit: 5000 })).records.filter(
        (r) => r.event === 'secgroup.drop' && r.ip === evil.ip && r.instance === db.name,
      );
    // The drop log is best effort (rate-limited NFLOG): refused again until one is on record.
    let audited = await refusals();
    for (let i = 0; i < 10 && audited.length === 0; i++) {
      await sgProbe(lab, evil.name, db.ip, 3306);
      audited = await refusals();
    }
    await lab.execOk(evil.name, ['ip', 'addr', 'add', `${web.ip}/32`, 'dev', 'eth0']);
    const withIp = await lab.exec(evil.name, [PYTHON, '-c', FROM, web.ip, db.ip, '3306']);
    const ipDrops = await lab.drops(net.name, evil.port, 'ip-spoof');
    await lab.execOk(evil.name, ['ip', 'link', 'set', 'eth0', 'address', web.mac]);
    const withMac = await lab.exec(evil.name, [PYTHON, '-c', FROM, web.ip, db.ip, '3306']);
    const macDrops = await lab.drops(net.name, evil.port, 'mac-spoof');
    return [
      see(control, `control: the webapp reaches the database's 3306 (${control ? 'yes' : 'no'})`),
      see(!plain, `the batch guest from its own address: ${plain ? 'CONNECTED' : 'refused'}`),
      see(
        withIp.code !== 0,
        `from the webapp's IP ${web.ip}: ${withIp.code === 0 ? 'CONNECTED' : 'no connection'}`,
      ),
      see(ipDrops > 0, `ip-spoof drops on its port: ${ipDrops}`),
      see(
        withMac.code !== 0,
        `with the webapp's MAC and IP: ${withMac.code === 0 ? 'CONNECTED' : 'no connection'}`,
      ),
      see(macDrops > 0, `mac-spoof drops on its port: ${macDrops}`),
      see(
        audited.length > 0,
        `audit: ${audited.length} secgroup.drop record(s) for ${evil.ip} → ${db.name}:3306`,
      ),
    ];
  },
);

export const connectionOutlivesRule = attack(
  'Security groups: a connection opened before its rule was removed',
  'a TCP connection a rule admitted ends when the rule is deleted (its conntrack entries are cut, and a mid-stream packet is not picked up as new); a new connection is refused; a connection another rule still admits keeps flowing',
  async (t, { lab, subnet }) => {
    const net = await lab.network('sc', subnet());
    await lab.json(['secgroup', 'create', 'sc-db']);
    const sql = await addTcpRule(lab, 'sc-db', 3306, 'role:webapp');
    await addTcpRule(lab, 'sc-db', 22, 'role:webapp');
    const db = await sgGuest(lab, 'sc-db', net.name, ['--role', 'database', '--secgroup', 'sc-db']);
    const web = await sgGuest(lab, 'sc-web', net.name, ['--role', 'webapp']);
    await sgFlow(t, db.netns, ['serve', '3306', '22'], 'ready');
    const held = await sgFlow(t, web.netns, ['hold', db.ip, '3306'], 'ok 3');
    const kept = await sgFlow(t, web.netns, ['hold', db.ip, '22'], 'ok 3');
    await lab.json(['secgroup', 'rule', 'delete', 'sc-db', sql.id]);
    const ended = await lostWithin(held, 3000);
    const again = await sgProbe(lab, web.name, db.ip, 3306);
    const keptBefore = kept.lines.length;
    await new Promise((r) => setTimeout(r, 800));
    const keptAlive = !kept.lines.includes('lost') && kept.lines.length > keptBefore;
    return [
      see(true, 'control: both connections echoed before the change (ok 3 each)'),
      see(ended, `the 3306 connection after its rule was deleted: ${ended ? 'ended' : 'STILL FLOWING'}`),
      see(!again, `a new connection to 3306: ${again ? 'CONNECTED' : 'refused'}`),
      see(keptAlive, `the :22 connection (its rule kept): ${keptAlive ? 'still echoing' : 'ENDED'}`),
    ];
  },
);
