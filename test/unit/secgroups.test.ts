// The security-group service over a real MemoryStore: validation names the
// field and says why, creates and rule adds are idempotent, rule ids are
// stable, a group in use is not deleted, two writers on one group both land,
// and the join permission decides by uid 0 or a gid in join_gids.
import t from 'tap';
import type { SecGroupRuleAdd } from '../../agent/api/types.js';
import { authorizeMembership, mayJoin } from '../../agent/services/secgroup-join.js';
import { canonicalRule, ruleId } from '../../agent/services/secgroup-rules.js';
import { SECGROUP_PREFIX, type SecGroupChange, SecGroupService } from '../../agent/services/secgroups.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { BerthError } from '../../base/errors.js';

const SHA = 'ab'.repeat(32);

function service(store = new MemoryStore(), members: Record<string, string[]> = {}) {
  return new SecGroupService({
    store,
    membersOf: (g) => members[g] ?? [],
    now: () => new Date('2026-12-03T12:00:00Z'),
  });
}

t.test('rules: canonical form, or a refusal naming the field', async (t) => {
  const ctx = { groupExists: (g: string) => g === 'web' };
  const ok: [SecGroupRuleAdd, object][] = [
    [
      { proto: 'tcp', port: '3306', from: 'role:webapp' },
      { ports: { from: 3306, to: 3306 }, from: 'role:webapp' },
    ],
    [
      { proto: 'udp', port: '1000-2000', from: 'group:web' },
      { ports: { from: 1000, to: 2000 }, from: 'group:web' },
    ],
    [{ proto: 'icmp', from: 'instance:i-0a1b2c3d' }, { from: 'instance:i-0a1b2c3d' }],
    [{ proto: 'any', from: `image:${SHA.toUpperCase()}` }, { from: `image:${SHA}` }],
    [{ proto: 'tcp', from: '10.1.0.0/16' }, { from: '10.1.0.0/16' }],
    [{ proto: 'tcp', from: '10.1.2.3' }, { from: '10.1.2.3/32' }],
    [{ proto: 'tcp', from: '0.0.0.0/0' }, { from: '0.0.0.0/0' }],
  ];
  for (const [input, want] of ok) {
    const r = canonicalRule(input, ctx);
    t.match(r, { proto: input.proto, ...want }, JSON.stringify(input));
    t.match(r.id, /^sr-[0-9a-f]{8}$/);
  }
  t.notOk('ports' in canonicalRule({ proto: 'tcp', from: 'role:a' }, ctx), 'no port: every port');
  const bad: [SecGroupRuleAdd, string, RegExp][] = [
    [{ proto: 'sctp' as 'tcp', from: 'role:a' }, 'proto', /"sctp" is not one of tcp, udp, icmp, any/],
    [{ proto: 'icmp', port: '8', from: 'role:a' }, 'port', /ports are for tcp and udp, not icmp/],
    [{ proto: 'any', port: '80', from: 'role:a' }, 'port', /not any/],
    [{ proto: 'tcp', port: '0', from: 'role:a' }, 'port', /0 is outside 1..65535/],
    [{ proto: 'tcp', port: '65536', from: 'role:a' }, 'port', /65536 is outside/],
    [{ proto: 'tcp', port: '90-80', from: 'role:a' }, 'port', /runs backwards; write 80-90/],
    [{ proto: 'tcp', port: '80,443', from: 'role:a' }, 'port', /is not P or P-Q/],
    [{ proto: 'tcp', from: 'role:Web' }, 'from', /"Web" is not a role/],
    [{ proto: 'tcp', from: 'group:nosuch' }, 'from', /group "nosuch" does not exist/],
    [{ proto: 'tcp', from: 'instance:A B' }, 'from', /not an instance id/],
    [{ proto: 'tcp', from: 'image:abc' }, 'from', /not a sha256/],
    [{ proto: 'tcp', from: 'mac:0a:00:00:00:00:01' }, 'from', /is not role:<name>, group:<name>/],
    [
      { proto: 'tcp', from: '10.0.0.5/24' },
      'from',
      /host bits set; write 10.0.0.0\/24 for the network or 10.0.0.5\/32/,
    ],
    [{ proto: 'tcp', from: '10.0.0.0/33' }, 'from', /is not role/],
    [{ proto: 'tcp', from: '300.0.0.0/8' }, 'from', /is not role/],
  ];
  for (const [input, field, message] of bad) {
    const err = (() => {
      try {
        canonicalRule(input, ctx);
      } catch (e) {
        return e as BerthError;
      }
      return undefined;
    })();
    t.ok(err instanceof BerthError, `${JSON.stringify(input)} refused`);
    t.equal(err?.code, 'BERTH_ERR_INVALID_ARGUMENT');
    t.equal(err?.field, field);
    t.match(err?.message, message);
  }
  t.equal(
    ruleId({ proto: 'tcp', ports: { from: 80, to: 80 }, from: 'role:a' }),
    canonicalRule({ proto: 'tcp', port: '80-80', from: ' role:a ' }, ctx).id,
    '80 and 80-80 are one rule',
  );
  t.not(
    ruleId({ proto: 'tcp', ports: { from: 80, to: 80 }, from: 'role:a' }),
    ruleId({ proto: 'udp', ports: { from: 80, to: 80 }, from: 'role:a' }),
  );
});

t.test('create is idempotent when identical, a conflict otherwise', async (t) => {
  const store = new MemoryStore();
  const s = service(store);
  const events: SecGroupChange[] = [];
  s.onChange((c) => events.push(c));
  const a = await s.create({ name: 'db', description: 'databases', join_gids: [1001, 27, 1001] });
  t.same(a.join_gids, [27, 1001], 'gids sorted, once each');
  t.same(await s.create({ name: 'db', description: 'databases', join_gids: [1001, 27] }), a);
  await t.rejects(s.create({ name: 'db', description: 'other' }), {
    code: 'BERTH_ERR_ALREADY_EXISTS',
    message:
      'could not create secgroup "db": a group with that name exists with another description or join_gids',
  });
  await t.rejects(s.create({ name: 'db', description: 'databases' }), { code: 'BERTH_ERR_ALREADY_EXISTS' });
  t.same(events, [{ kind: 'created', group: 'db' }], 'one event, for the one write');
  t.same(await store.get(`${SECGROUP_PREFIX}db`), a, 'stored under secgroup/<name>');
  const again = service(store);
  await again.load();
  t.same(again.all(), [a], 'a fresh service loads it');
  await t.rejects(
    s.create({ name: 'db2' }).then(() => s.get('nope')),
    {
      code: 'BERTH_ERR_NOT_FOUND',
      message: 'could not find secgroup "nope": no such group',
    },
  );
});

t.test('rules: add twice is one rule with one id; delete by id; unknown id is not found', async (t) => {
  const s = service();
  const events: SecGroupChange[] = [];
  s.onChange((c) => events.push(c));
  await s.create({ name: 'db' });
  const r1 = await s.addRule('db', { proto: 'tcp', port: '3306', from: 'role:webapp' });
  const r2 = await s.addRule('db', { proto: 'tcp', port: '3306-3306', from: 'role:webapp' });
  t.same(r2, r1, 'same rule, same id');
  const r3 = await s.addRule('db', { proto: 'icmp', from: '10.0.0.0/8' });
  t.not(r3.id, r1.id);
  t.same(
    s.get('db').rules.map((r) => r.id),
    [r1.id, r3.id],
  );
  t.same(await s.deleteRule('db', r1.id), r1);
  t.same(
    s.get('db').rules.map((r) => r.id),
    [r3.id],
  );
  await t.rejects(s.deleteRule('db', r1.id), {
    code: 'BERTH_ERR_NOT_FOUND',
    field: 'rule',
    message: `could not find rule "${r1.id}" in secgroup "db": no such rule (see \`berthctl secgroup show db\`)`,
  });
  await t.rejects(s.addRule('nope', { proto: 'tcp', from: 'role:a' }), { code: 'BERTH_ERR_NOT_FOUND' });
  t.same(
    events.map((e) => e.kind),
    ['created', 'rule-added', 'rule-added', 'rule-deleted'],
    'no event for the idempotent add or the refusals',
  );
});

t.test('delete: refused while an instance is in it or another group admits it', async (t) => {
  const members: Record<string, string[]> = { db: ['db1', 'db2'] };
  const s = service(new MemoryStore(), members);
  await s.create({ name: 'db' });
  await s.create({ name: 'web' });
  await s.addRule('db', { proto: 'tcp', port: '3306', from: 'group:web' });
  await s.addRule('web', { proto: 'tcp', port: '80', from: 'group:web' });
  await t.rejects(s.delete('db'), {
    code: 'BERTH_ERR_CONFLICT',
    message: /could not delete secgroup "db": instances are in it \(db1, db2\)/,
  });
  const rule = s.get('db').rules[0];
  await t.rejects(s.delete('web'), {
    code: 'BERTH_ERR_CONFLICT',
    message: `could not delete secgroup "web": rules of other groups admit it as a source (db:${rule?.id}); delete those rules first`,
  });
  members.db = [];
  await s.delete('db');
  await s.delete('web'); // its own group:web rule does not hold it
  t.same(s.all(), []);
  await t.rejects(s.delete('web'), { code: 'BERTH_ERR_NOT_FOUND' });
});

t.test('two services on one store (two hosts): concurrent rule adds both land', async (t) => {
  const store = new MemoryStore();
  const a = service(store);
  const b = service(store);
  await a.create({ name: 'db' });
  await b.load();
  const rules = await Promise.all([
    a.addRule('db', { proto: 'tcp', port: '1', from: 'role:x' }),
    b.addRule('db', { proto: 'tcp', port: '2', from: 'role:x' }),
    a.addRule('db', { proto: 'tcp', port: '3', from: 'role:x' }),
    b.addRule('db', { proto: 'tcp', port: '4', from: 'role:x' }),
  ]);
  await a.reload();
  t.same(
    a
      .get('db')
      .rules.map((r) => r.id)
      .sort(),
    rules.map((r) => r.id).sort(),
    'no write lost another',
  );
  // b deletes the group a still caches: a's next rule add finds it gone.
  await b.reload();
  await b.delete('db');
  await t.rejects(a.addRule('db', { proto: 'tcp', from: 'role:y' }), { code: 'BERTH_ERR_NOT_FOUND' });
  t.notOk(a.has('db'), 'and forgets it');
});

t.test('join permission: root, or a gid or supplementary group in join_gids', async (t) => {
  const open = { name: 'open' };
  const locked = { name: 'db', join_gids: [27, 1001] };
  t.ok(mayJoin(open, { uid: 1000, gid: 1000, groups: [] }), 'no join_gids: anyone on the socket');
  t.ok(mayJoin(open, { error: 'gone' }));
  t.ok(mayJoin(locked, { uid: 0, gid: 0, groups: [] }), 'root');
  t.ok(mayJoin(locked, { uid: 1000, gid: 1001, groups: [] }), 'primary gid');
  t.ok(mayJoin(locked, { uid: 1000, gid: 100, groups: [100, 27] }), 'supplementary group');
  t.notOk(mayJoin(locked, { uid: 1000, gid: 100, groups: [100, 998] }));
  t.notOk(mayJoin(locked, { error: 'ss failed' }), 'an unknown caller is no permission');
  t.throws(
    () =>
      authorizeMembership('web1', [{ group: locked, verb: 'join' }], {
        uid: 65534,
        gid: 65534,
        groups: [998],
      }),
    {
      code: 'BERTH_ERR_FORBIDDEN',
      field: 'secgroups',
      message:
        'could not add instance "web1" to secgroup "db": joining it needs root or gid 27 or 1001; the caller is uid 65534 gid 65534 (groups 998)',
    },
  );
  t.throws(() => authorizeMembership('web1', [{ group: locked, verb: 'leave' }], { error: 'x' }), {
    message:
      /could not remove instance "web1" from secgroup "db": leaving it needs root or gid 27 or 1001; the caller is an unknown caller \(x\)/,
  });
});

t.test('cluster mode: with etcd away every change is refused and nothing is written', async (t) => {
  const store = new MemoryStore();
  let up = true;
  const s = new SecGroupService({
    store,
    membersOf: () => [],
    requireConnected: (verb, object) => {
      if (!up)
        throw new BerthError('BERTH_ERR_CLUSTER_UNAVAILABLE', `could not ${verb} ${object}: etcd is away`);
    },
  });
  await s.create({ name: 'db' });
  const rule = await s.addRule('db', { proto: 'udp', port: '53', from: '10.0.0.0/8' });
  up = false;
  const before = await store.list(SECGROUP_PREFIX);
  await t.rejects(s.create({ name: 'web' }), { code: 'BERTH_ERR_CLUSTER_UNAVAILABLE' });
  await t.rejects(s.addRule('db', { proto: 'tcp', from: 'role:a' }), {
    message: 'could not add a rule to secgroup "db": etcd is away',
  });
  await t.rejects(s.deleteRule('db', rule.id), { code: 'BERTH_ERR_CLUSTER_UNAVAILABLE' });
  await t.rejects(s.delete('db'), { code: 'BERTH_ERR_CLUSTER_UNAVAILABLE' });
  t.same(await store.list(SECGROUP_PREFIX), before);
  t.same(
    await s.addRule('db', { proto: 'udp', port: '53', from: '10.0.0.0/8' }),
    rule,
    'an idempotent add needs no write',
  );
  t.same(await s.create({ name: 'db' }), s.get('db'), 'nor an idempotent create');
});
