// Joining a security group needs permission, for real: berthd (dist/) under
// its unit's capabilities on its 0660 root:berth socket, berthctl run as
// root and as other uids (setpriv). The kernel names the caller (SO_PEERCRED
// for uid and gid, /proc/<pid>/status for supplementary groups); a group with
// --join-gid admits only root and callers holding that gid, for joining and
// for leaving, and every refusal is in the audit log with the caller.
import { chmod, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import t from 'tap';
import { groupId } from '../../agent/api/unix-socket.js';
import { type AsUser, berthctlAs, NOBODY } from '../helpers/as_user.js';
import { ROOT, removePrefixed, startBerthd } from '../helpers/berthd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (setpriv to other uids, bridges, namespaces)');
  process.exit(0);
}

/** The capabilities berthd's unit leaves it, as a setpriv --bounding-set. */
async function unitCaps(): Promise<string> {
  const unit = await readFile(join(ROOT, 'systemd/berthd.service'), 'utf8');
  const caps = /^CapabilityBoundingSet=(.+)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  if (caps.length === 0) throw new Error('berthd.service has no CapabilityBoundingSet');
  return `-all,${caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',')}`;
}

/** A gid no account has: only setpriv gives it, so only the test's callers hold it. */
const DBA = 47_815;

t.test(
  'join_gids: root and holders of the gid join and leave; other berth members are refused',
  async (t) => {
    const berth = await groupId('berth');
    if (berth === undefined) throw new Error('group berth is missing: run scripts/provision.sh');
    const prefix = `sb${Math.floor(Math.random() * 256)
      .toString(16)
      .padStart(2, '0')}`;
    t.teardown(() => removePrefixed(prefix));
    const d = await startBerthd(t, {
      prefix,
      wrap: ['setpriv', '--bounding-set', await unitCaps(), '--inh-caps=-all', '--'],
    });
    await chmod(dirname(d.socket), 0o711);
    const env = { BERTH_SOCKET: d.socket };
    const member: AsUser = { uid: NOBODY, gid: NOBODY, groups: [berth] };
    const dbaSupplementary: AsUser = { uid: NOBODY, gid: NOBODY, groups: [berth, DBA] };
    const dbaPrimary: AsUser = { uid: NOBODY, gid: DBA, groups: [berth] };
    const ctl = async (who: AsUser | undefined, ...args: string[]) => {
      const r = await berthctlAs(who, [...args, '--json'], env);
      return { ...r, json: r.stdout ? JSON.parse(r.stdout) : undefined };
    };

    t.equal((await ctl(undefined, 'network', 'create', 'n', '--subnet', '10.77.0.0/24')).code, 0);
    const made = await ctl(undefined, 'secgroup', 'create', 'db', '--join-gid', String(DBA));
    t.equal(made.code, 0, made.stderr);
    t.same(made.json.join_gids, [DBA]);
    const open = await ctl(member, 'secgroup', 'create', 'web');
    t.equal(open.code, 0, 'any berth member may create a group');
    const rule = await ctl(
      member,
      'secgroup',
      'rule',
      'add',
      'db',
      '--proto',
      'tcp',
      '--port',
      '3306',
      '--from',
      'role:webapp',
    );
    t.equal(rule.code, 0, rule.stderr);

    const refused = await ctl(
      member,
      'instance',
      'create',
      'web1',
      '--network',
      'n',
      '--secgroup',
      'web',
      '--secgroup',
      'db',
    );
    t.equal(refused.code, 1, 'a berth member without the gid may not join db');
    t.match(refused.json, {
      error: {
        code: 'BERTH_ERR_FORBIDDEN',
        message: `could not add instance "web1" to secgroup "db": joining it needs root or gid ${DBA}; the caller is uid ${NOBODY} gid ${NOBODY} (groups ${berth})`,
      },
    });
    t.same((await d.client.instances()).instances, [], 'nothing was created');
    const web1 = await ctl(member, 'instance', 'create', 'web1', '--network', 'n', '--secgroup', 'web');
    t.equal(web1.code, 0, web1.stderr);
    const db1 = await ctl(
      dbaSupplementary,
      'instance',
      'create',
      'db1',
      '--network',
      'n',
      '--secgroup',
      'db',
    );
    t.equal(db1.code, 0, `a supplementary group holding the gid: ${db1.stderr}`);
    t.same(db1.json.secgroups, ['db']);
    const join = await ctl(dbaPrimary, 'instance', 'update', 'web1', '--secgroup', 'web', '--secgroup', 'db');
    t.equal(join.code, 0, `the gid as primary group: ${join.stderr}`);
    t.same(join.json.secgroups, ['web', 'db']);

    const leave = await ctl(member, 'instance', 'update', 'db1', '--no-secgroups');
    t.equal(leave.code, 1, 'leaving db needs the gid too');
    t.equal(leave.json.error.code, 'BERTH_ERR_FORBIDDEN');
    t.same((await d.client.instance('db1')).secgroups, ['db'], 'still in db');
    const del = await ctl(undefined, 'secgroup', 'delete', 'db');
    t.equal(del.code, 1);
    t.match(del.json.error.message, /instances are in it \(db1, web1\)/);
    const rootLeave = await ctl(undefined, 'instance', 'update', 'db1', '--no-secgroups');
    t.equal(rootLeave.code, 0, 'root may');
    const show = await berthctlAs(undefined, ['instance', 'show', 'db1'], env);
    t.match(show.stdout, /secgroups\s+none/);

    const { records } = await d.client.audit();
    const row = (r: (typeof records)[number]) => [
      r.event,
      r.outcome,
      r.detail?.code,
      r.peer?.uid,
      r.peer?.gid,
    ];
    const sg = records.filter((r) =>
      /secgroup|instance\.(create|update)/.test(String(r.detail?.change ?? r.event)),
    );
    t.same(sg.map(row), [
      ['admin.secgroup.create', 'allowed', undefined, 0, 0],
      ['admin.secgroup.create', 'allowed', undefined, NOBODY, NOBODY],
      ['admin.secgroup.rule.add', 'allowed', undefined, NOBODY, NOBODY],
      ['admin.request', 'refused', 'BERTH_ERR_FORBIDDEN', NOBODY, NOBODY],
      ['admin.instance.create', 'allowed', undefined, NOBODY, NOBODY],
      ['admin.instance.create', 'allowed', undefined, NOBODY, NOBODY],
      ['admin.instance.update', 'allowed', undefined, NOBODY, DBA],
      ['admin.request', 'refused', 'BERTH_ERR_FORBIDDEN', NOBODY, NOBODY],
      ['admin.request', 'refused', 'BERTH_ERR_CONFLICT', 0, 0],
      ['admin.instance.update', 'allowed', undefined, 0, 0],
    ]);
    t.equal(
      records.find((r) => r.detail?.code === 'BERTH_ERR_FORBIDDEN')?.peer?.pid,
      refused.pid,
      'the refused caller by pid',
    );
  },
);
