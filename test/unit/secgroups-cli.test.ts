// berthctl secgroup and instance --secgroup/update, through the real admin
// API on a temporary unix socket, with a peer whose uid/gid the test sets
// (the kernel's answer is test/e2e/secgroups-join.test.ts's business): human
// tables, --json, exit codes, join_gids deciding who may join and leave, and
// every change and refusal in the audit log with the caller.
import { globalAgent } from 'node:http';
import t from 'tap';
import type { PeerCred, PeerCredentials } from '../../agent/api/peer-credentials.js';
import { FakeSecGroupDriver } from '../fakes/fake-sg-driver.js';
import { startAdminCli } from '../helpers/admin_cli.js';

const SHA = 'cd'.repeat(32);

t.test('secgroups through berthctl', async (t) => {
  const sg = new FakeSecGroupDriver();
  let peer: PeerCred = { pid: 4242, uid: 0, gid: 0 };
  let groups: number[] = [];
  const peers: PeerCredentials = { of: async () => peer };
  const { audit, cli } = await startAdminCli(t, {
    prefix: 'sbc',
    sgDriver: sg,
    extra: () => ({ peers, peerGroups: async (pid: number) => (pid === peer.pid ? groups : []) }),
  });
  const as = (uid: number, gid: number, supplementary: number[] = []) => {
    // A peer is named once per connection (as the kernel does), and in-process
    // clients share the keep-alive agent: another caller needs new connections.
    globalAgent.destroy();
    peer = { pid: 4242, uid, gid };
    groups = supplementary;
  };

  const json = async (...args: string[]) => {
    const r = await cli(...args, '--json');
    t.equal(r.code, 0, `${args.join(' ')}: ${r.out}${r.err}`);
    return JSON.parse(r.out);
  };

  t.equal((await cli('network', 'create', 'n', '--subnet', '10.6.0.0/24')).code, 0);
  const made = await cli('secgroup', 'create', 'db', '--description', 'databases', '--join-gid', '1001');
  t.equal(made.code, 0, made.err);
  t.equal(made.out, 'secgroup db created');
  t.match(await json('secgroup', 'create', 'db', '--description', 'databases', '--join-gid', '1001'), {
    name: 'db',
    join_gids: [1001],
    rules: [],
  });
  const clash = await cli('secgroup', 'create', 'db', '--json');
  t.equal(clash.code, 1, 'another definition under the name is refused');
  t.match(JSON.parse(clash.out), { error: { code: 'BERTH_ERR_ALREADY_EXISTS', field: 'name' } });
  t.equal((await cli('secgroup', 'create', 'web')).code, 0);
  t.equal((await cli('secgroup', 'create', 'Bad_Name')).code, 1, 'schema refuses the name');
  t.equal((await cli('secgroup', 'create', 'x', '--join-gid', 'wheel')).code, 2, 'a gid is a number');

  const added = await cli(
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
  t.equal(added.code, 0, added.err);
  const id = /^rule (sr-[0-9a-f]{8}) in db: tcp 3306 from role:webapp$/.exec(added.out)?.[1];
  t.ok(id, added.out);
  t.match(
    await json(
      'secgroup',
      'rule',
      'add',
      'db',
      '--proto',
      'tcp',
      '--port',
      '3306-3306',
      '--from',
      'role:webapp',
    ),
    {
      id,
    },
  );
  t.equal((await cli('secgroup', 'rule', 'add', 'db', '--proto', 'any', '--from', 'group:web')).code, 0);
  const img = await json('secgroup', 'rule', 'add', 'web', '--proto', 'icmp', '--from', `image:${SHA}`);
  const badCidr = await cli(
    'secgroup',
    'rule',
    'add',
    'db',
    '--proto',
    'tcp',
    '--from',
    '10.6.0.9/24',
    '--json',
  );
  t.equal(badCidr.code, 1);
  t.match(JSON.parse(badCidr.out), {
    error: {
      code: 'BERTH_ERR_INVALID_ARGUMENT',
      field: 'from',
      message: /has host bits set; write 10.6.0.0\/24/,
    },
  });
  t.equal((await cli('secgroup', 'rule', 'add', 'db', '--proto', 'gre', '--from', 'role:a')).code, 2);
  t.equal((await cli('secgroup', 'rule', 'add', 'db', '--proto', 'tcp')).code, 2, '--from is required');

  const list = await cli('secgroup', 'list');
  t.match(list.out, /^NAME\s+RULES\s+JOIN GIDS\s+DESCRIPTION\ndb\s+2\s+1001\s+databases\nweb\s+1\s+-\s+-$/);
  const show = await cli('secgroup', 'show', 'db');
  t.match(show.out, /join gids\s+1001/);
  t.match(
    show.out,
    new RegExp(
      `RULE\\s+PROTO\\s+PORT\\s+FROM\\n${id}\\s+tcp\\s+3306\\s+role:webapp\\nsr-[0-9a-f]{8}\\s+any\\s+-\\s+group:web`,
    ),
  );
  t.match(await json('secgroup', 'list'), [{ name: 'db' }, { name: 'web', rules: [{ id: img.id }] }]);

  // Joining: db needs gid 1001; web is open to any caller on the socket.
  as(1000, 1000);
  const refused = await cli(
    'instance',
    'create',
    'web1',
    '--network',
    'n',
    '--secgroup',
    'web',
    '--secgroup',
    'db',
    '--json',
  );
  t.equal(refused.code, 1, refused.out);
  t.match(JSON.parse(refused.out), {
    error: {
      code: 'BERTH_ERR_FORBIDDEN',
      message:
        'could not add instance "web1" to secgroup "db": joining it needs root or gid 1001; the caller is uid 1000 gid 1000',
    },
  });
  t.equal((await cli('instance', 'list', '--json')).out, '[]', 'nothing was created');
  const unknown = await cli('instance', 'create', 'web1', '--network', 'n', '--secgroup', 'nope', '--json');
  t.match(JSON.parse(unknown.out), { error: { code: 'BERTH_ERR_NOT_FOUND', field: 'secgroups.0' } });
  const web1 = await json(
    'instance',
    'create',
    'web1',
    '--network',
    'n',
    '--secgroup',
    'web',
    '--secgroup',
    'web',
  );
  t.same(web1.secgroups, ['web'], 'an open group; a name twice counts once');
  as(1000, 100, [100, 1001]);
  const db1 = await json('instance', 'create', 'db1', '--network', 'n', '--secgroup', 'db');
  t.same(db1.secgroups, ['db'], 'a supplementary group in join_gids may join');
  t.match((await cli('instance', 'show', 'db1')).out, /secgroups\s+db/);
  t.match((await cli('instance', 'show', 'web1')).out, /secgroups\s+web/);
  t.match(
    (await cli('instance', 'list')).out,
    /SECGROUPS\n(.|\n)*db1 .* db\n/,
    'instance list has a SECGROUPS column',
  );
  const enforced = sg.applies.at(-1)?.ports.map((p) => p.instance) ?? [];
  t.ok(enforced.includes(db1.id), 'the create waited for the enforcer: its port is in the last apply');

  // Counters per member port: the group's own rules, and what the port refused.
  const dbPort = db1.nics[0].port as string;
  sg.counterValues = [
    { ifname: dbPort, rule: id as string, packets: 12, bytes: 840 },
    { ifname: dbPort, rule: 'drop', packets: 3, bytes: 180 },
    { ifname: 'zzz-other', rule: 'drop', packets: 99, bytes: 99 },
  ];
  const shown = await json('secgroup', 'show', 'db');
  t.same(
    shown.ports.map((p: { instance: string; port: string }) => [p.instance, p.port]),
    [['db1', dbPort]],
    "only the group's members' ports; web1 is in web alone",
  );
  t.match(shown.ports[0], { dropped: { packets: 3, bytes: 180 }, invalid: { packets: 0, bytes: 0 } });
  t.same(
    shown.ports[0].rules.map((r: { id: string; packets: number }) => [r.id === id, r.packets]).sort(),
    [
      [false, 0],
      [true, 12],
    ],
    "both of db's rules: the counted one, and the unused one at 0",
  );
  const shownText = (await cli('secgroup', 'show', 'db')).out;
  t.match(shownText, new RegExp(`db1\\s+${dbPort}\\s+${id} accepted\\s+12\\s+840`));
  t.match(shownText, new RegExp(`db1\\s+${dbPort}\\s+dropped\\s+3\\s+180`));
  t.match((await cli('secgroup', 'show', 'web')).out, /web1\s+\S+\s+dropped\s+0\s+0/);

  // Update: replace the list; leaving db needs the gid too.
  as(1000, 1000);
  const leave = await cli('instance', 'update', 'db1', '--no-secgroups');
  t.equal(leave.code, 1);
  t.match(leave.err, /could not remove instance "db1" from secgroup "db": leaving it needs root or gid 1001/);
  const join2 = await cli('instance', 'update', 'web1', '--secgroup', 'web', '--secgroup', 'db');
  t.equal(join2.code, 1, 'joining db by update is checked as on create');
  const same = await cli('instance', 'update', 'db1', '--secgroup', 'db');
  t.equal(same.code, 0, 'the same list again is a no-op, whoever asks');
  t.equal(same.out, 'instance db1 secgroups: db');
  t.equal((await cli('instance', 'update', 'db1')).code, 2, 'nothing to update is usage');
  t.equal((await cli('instance', 'update', 'db1', '--secgroup', 'db', '--no-secgroups')).code, 2);

  const inUse = await cli('secgroup', 'delete', 'db', '--json');
  t.match(JSON.parse(inUse.out), {
    error: {
      code: 'BERTH_ERR_CONFLICT',
      message: /could not delete secgroup "db": instances are in it \(db1\)/,
    },
  });
  const webUsed = await cli('secgroup', 'delete', 'web');
  t.match(webUsed.err, /instances are in it \(web1\)/);

  as(0, 0);
  t.same((await json('instance', 'update', 'db1', '--no-secgroups')).secgroups, undefined, 'root may leave');
  t.equal((await cli('instance', 'update', 'web1', '--no-secgroups')).out, 'instance web1 secgroups: none');
  t.match((await cli('instance', 'show', 'web1')).out, /secgroups\s+none/);
  const stillRef = await cli('secgroup', 'delete', 'web');
  t.match(stillRef.err, /rules of other groups admit it as a source \(db:sr-[0-9a-f]{8}\)/);
  const ruleDel = await json('secgroup', 'rule', 'delete', 'db', id as string);
  t.match(ruleDel, { deleted: { id, proto: 'tcp', from: 'role:webapp' } });
  const again = await cli('secgroup', 'rule', 'delete', 'db', id as string);
  t.equal(again.code, 1);
  t.match(again.err, `could not find rule "${id}" in secgroup "db": no such rule`);
  const groupRule = (await json('secgroup', 'show', 'db')).rules[0].id;
  t.equal(
    (await cli('secgroup', 'rule', 'delete', 'db', groupRule)).out,
    `rule ${groupRule} deleted from db`,
  );
  t.equal((await cli('secgroup', 'delete', 'web')).out, 'secgroup web deleted');
  t.same(await json('secgroup', 'delete', 'db'), { deleted: 'db' });
  t.equal((await cli('secgroup', 'list')).out, 'NAME  RULES  JOIN GIDS  DESCRIPTION');

  // The audit log: every change with its caller, every refusal with its code and caller.
  const allowed = (await audit.query({ outcome: 'allowed' })).filter((r) =>
    /secgroup|instance\.(create|update)/.test(r.event),
  );
  t.same(
    allowed.map((r) => [r.event, r.peer?.uid, r.peer?.gid]),
    [
      ['admin.secgroup.create', 0, 0],
      ['admin.secgroup.create', 0, 0],
      ['admin.secgroup.create', 0, 0],
      ['admin.secgroup.rule.add', 0, 0],
      ['admin.secgroup.rule.add', 0, 0],
      ['admin.secgroup.rule.add', 0, 0],
      ['admin.secgroup.rule.add', 0, 0],
      ['admin.instance.create', 1000, 1000],
      ['admin.instance.create', 1000, 100],
      ['admin.instance.update', 1000, 1000],
      ['admin.instance.update', 0, 0],
      ['admin.instance.update', 0, 0],
      ['admin.secgroup.rule.delete', 0, 0],
      ['admin.secgroup.rule.delete', 0, 0],
      ['admin.secgroup.delete', 0, 0],
      ['admin.secgroup.delete', 0, 0],
    ],
  );
  t.match(allowed[0], { detail: { secgroup: 'db', join_gids: [1001] } });
  t.match(allowed[3], {
    detail: { secgroup: 'db', rule: { id, proto: 'tcp', ports: { from: 3306, to: 3306 } } },
  });
  // What each update changed: the same list again changed nothing.
  t.match(allowed[9], { instance: db1.id, detail: { changed: [] } });
  t.match(allowed[10], {
    instance: db1.id,
    detail: { changed: ['secgroups'], secgroups: { from: ['db'], to: [] } },
  });
  const refusals = (await audit.query({ outcome: 'refused' })).map((r) => [
    r.detail?.change,
    r.detail?.code,
    r.peer?.uid,
    r.peer?.gid,
  ]);
  t.same(refusals, [
    ['admin.secgroup.create', 'BERTH_ERR_ALREADY_EXISTS', 0, 0],
    ['admin.secgroup.create', 'BERTH_ERR_INVALID_ARGUMENT', 0, 0],
    ['admin.secgroup.rule.add', 'BERTH_ERR_INVALID_ARGUMENT', 0, 0],
    ['admin.instance.create', 'BERTH_ERR_FORBIDDEN', 1000, 1000],
    ['admin.instance.create', 'BERTH_ERR_NOT_FOUND', 1000, 1000],
    ['admin.instance.update', 'BERTH_ERR_FORBIDDEN', 1000, 1000],
    ['admin.instance.update', 'BERTH_ERR_FORBIDDEN', 1000, 1000],
    ['admin.secgroup.delete', 'BERTH_ERR_CONFLICT', 1000, 1000],
    ['admin.secgroup.delete', 'BERTH_ERR_CONFLICT', 1000, 1000],
    ['admin.secgroup.delete', 'BERTH_ERR_CONFLICT', 0, 0],
    ['admin.secgroup.rule.delete', 'BERTH_ERR_NOT_FOUND', 0, 0],
  ]);
});
