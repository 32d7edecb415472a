// EtcdKv against a real three-member etcd cluster (Debian's etcd-server) on
// loopback: guarded batches are all-or-nothing, a replayed batch counts as
// landed, watches resume from a revision, leases vanish with their keys,
// losing one member of three changes nothing, and losing all of them is
// BERTH_ERR_CLUSTER_UNAVAILABLE naming every endpoint.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EtcdKv } from '../../agent/store/etcd-kv.js';
import type { KvEvent } from '../../base/cluster-kv.js';
import { EtcdMembers } from '../helpers/etcd-members.js';

const dir = await mkdtemp(join(tmpdir(), 'berth-etcdkv-'));
const etcd = await EtcdMembers.start(dir, 3);
t.teardown(() => etcd.stop());

let n = 0;
function client(): EtcdKv {
  const kv = new EtcdKv({
    endpoints: etcd.endpoints,
    prefix: `/t${process.pid}-${n++}/`,
    callTimeoutMs: 2000,
  });
  t.teardown(() => kv.close());
  return kv;
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return cond();
};

t.test('a guarded batch lands whole or not at all', async (t) => {
  const kv = client();
  await kv.batch(
    [
      { type: 'put', key: 'mac/aa', value: { instance: 'i-1' } },
      { type: 'put', key: 'ip/lab/10.0.0.1', value: { instance: 'i-1' } },
    ],
    {
      guards: [
        { key: 'mac/aa', absent: true },
        { key: 'ip/lab/10.0.0.1', absent: true },
      ],
    },
  );
  // A second writer wants a fresh MAC but the same IP: nothing of it may land.
  await t.rejects(
    kv.batch(
      [
        { type: 'put', key: 'mac/bb', value: { instance: 'i-2' } },
        { type: 'put', key: 'ip/lab/10.0.0.1', value: { instance: 'i-2' } },
      ],
      {
        guards: [
          { key: 'mac/bb', absent: true },
          { key: 'ip/lab/10.0.0.1', absent: true },
        ],
      },
    ),
    { code: 'BERTH_ERR_CONFLICT', message: /key "ip\/lab\/10\.0\.0\.1" already exists/ },
  );
  t.equal(await kv.get('mac/bb'), undefined, 'the other half of the losing batch never landed');
  t.same(await kv.get('ip/lab/10.0.0.1'), { instance: 'i-1' });
  // An equals guard: replace only what was read.
  await kv.batch([{ type: 'put', key: 'mac/aa', value: { instance: 'i-1', q: true } }], {
    guards: [{ key: 'mac/aa', equals: { instance: 'i-1' } }],
  });
  await t.rejects(
    kv.batch([{ type: 'del', key: 'mac/aa' }], { guards: [{ key: 'mac/aa', equals: { instance: 'i-1' } }] }),
    { code: 'BERTH_ERR_CONFLICT', message: /key "mac\/aa" changed/ },
  );
});

t.test('a batch replayed after it landed counts as landed, not as a conflict', async (t) => {
  const kv = client();
  const ops = [{ type: 'put' as const, key: 'instance/i-9', value: { id: 'i-9', mac: 'cc' } }];
  await kv.batch(ops, { guards: [{ key: 'instance/i-9', absent: true }] });
  // What a retry after a lost answer does: the same batch again.
  await kv.batch(ops, { guards: [{ key: 'instance/i-9', absent: true }] });
  t.same(await kv.list('instance/'), [{ key: 'instance/i-9', value: { id: 'i-9', mac: 'cc' } }]);
  await t.rejects(
    kv.batch([{ type: 'put', key: 'instance/i-9', value: { id: 'i-9', mac: 'dd' } }], {
      guards: [{ key: 'instance/i-9', absent: true }],
    }),
    { code: 'BERTH_ERR_CONFLICT' },
  );
});

t.test('list pages in key order, either way, and stays inside its prefix', async (t) => {
  const kv = client();
  const other = client();
  await other.batch([{ type: 'put', key: 'p/0', value: 'other cluster' }]);
  await kv.batch(['p/1', 'p/2', 'p/3', 'q/1'].map((key) => ({ type: 'put' as const, key, value: key })));
  t.same(
    (await kv.list('p/')).map((e) => e.key),
    ['p/1', 'p/2', 'p/3'],
  );
  t.same(
    (await kv.list('p/', { after: 'p/1', limit: 1 })).map((e) => e.key),
    ['p/2'],
  );
  t.same(
    (await kv.list('p/', { reverse: true, limit: 2 })).map((e) => e.key),
    ['p/3', 'p/2'],
  );
  t.same(
    (await other.list('p/')).map((e) => e.value),
    ['other cluster'],
    'prefixes keep clusters apart',
  );
});

t.test('a watch from a snapshot revision sees every later change, in order, once', async (t) => {
  const kv = client();
  await kv.batch([{ type: 'put', key: 'policy/a', value: 1 }]);
  const snap = await kv.snapshot<number>('policy/');
  t.same(snap.entries, [{ key: 'policy/a', value: 1 }]);
  const seen: KvEvent[] = [];
  const w = await kv.watch('policy/', snap.revision + 1, { onEvents: (e) => seen.push(...e) });
  t.teardown(() => w.close());
  await kv.batch([{ type: 'put', key: 'policy/b', value: 2 }]);
  await kv.batch([{ type: 'del', key: 'policy/a' }]);
  await kv.batch([{ type: 'put', key: 'network/x', value: 'not watched' }]);
  t.ok(await until(() => seen.length >= 2), 'two events arrived');
  t.same(
    seen.map((e) => [e.type, e.key, e.value]),
    [
      ['put', 'policy/b', 2],
      ['del', 'policy/a', undefined],
    ],
  );
  t.ok((seen[0] as KvEvent).revision < (seen[1] as KvEvent).revision, 'revisions increase');
});

t.test('a lease keeps its key while alive; revoking it deletes the key', async (t) => {
  const kv = client();
  const lease = await kv.lease(5);
  await lease.put('alive/hv1', { since: 1 });
  t.same(await kv.get('alive/hv1'), { since: 1 });
  await lease.revoke();
  t.equal(await kv.get('alive/hv1'), undefined, 'gone with its lease');
});

t.test('status names the members and the leader', async (t) => {
  const kv = client();
  const st = await kv.status();
  t.equal(st.members.length, 3);
  t.equal(st.members.filter((m) => m.isLeader).length, 1, 'one leader');
  t.equal(st.leader, (await etcd.leader()).name);
  t.match(st.version, /^3\.4\./, "Debian's etcd-server 3.4");
  t.ok(st.revision > 0);
});

t.test('kill -9 of the leader: writes go on, and nothing lands twice', async (t) => {
  const kv = client();
  const leader = await etcd.leader();
  const writes = Array.from({ length: 60 }, (_, i) =>
    kv.batch([{ type: 'put', key: `k/${String(i).padStart(2, '0')}`, value: i }], {
      guards: [{ key: `k/${String(i).padStart(2, '0')}`, absent: true }],
    }),
  );
  await new Promise((r) => setTimeout(r, 5));
  await etcd.kill(leader);
  const results = await Promise.allSettled(writes);
  const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  // A write may be refused while the cluster elects; it must then be unavailable, never a false conflict.
  for (const f of failed) t.equal((f.reason as { code?: string }).code, 'BERTH_ERR_CLUSTER_UNAVAILABLE');
  const stored = await kv.list<number>('k/');
  t.equal(stored.length, 60 - failed.length, 'every write that returned ok is there, and only those');
  t.ok(failed.length < 60, `${60 - failed.length} of 60 landed across the election`);
  t.not((await etcd.leader()).name, leader.name, 'a new leader');
  await etcd.restart(leader);
  await etcd.waitHealthy();
});

t.test('all members down: every call is BERTH_ERR_CLUSTER_UNAVAILABLE naming the endpoints', async (t) => {
  const kv = client();
  await kv.batch([{ type: 'put', key: 'x', value: 1 }]);
  for (const m of etcd.members) await etcd.kill(m);
  t.teardown(async () => {
    for (const m of etcd.members) await etcd.restart(m);
    await etcd.waitHealthy();
  });
  for (const call of [
    () => kv.get('x'),
    () => kv.batch([{ type: 'put', key: 'y', value: 2 }]),
    () => kv.status(),
  ]) {
    const err = await call().then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    t.equal(err?.code, 'BERTH_ERR_CLUSTER_UNAVAILABLE');
    for (const url of etcd.endpoints) t.match(err?.message, url, 'names every endpoint tried');
  }
});
