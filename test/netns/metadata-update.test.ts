// Acceptance (metadata after create): a netns guest reads its metadata with
// curl through a real berthd and endpoint; `berthctl instance update`
// changes it, and the very next read sees the new value and a new ETag
// (the endpoint's cached view is dropped before berthctl hears back); an
// unchanged path keeps its ETag and If-None-Match answers 304. A role
// change moves a guest in and out of a `role:` security-group source, with
// real TCP (sg_flow.py): in as soon as the update answers, and its open
// connection cut when it loses the role.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { removePrefixed } from '../helpers/berthd.js';
import { isRoot, startLab } from '../helpers/hostnet_lab.js';
import { curl, mdGuest } from '../helpers/metadata_lab.js';
import { addTcpRule, lostWithin, sgFlow, sgGuest, sgProbe } from '../helpers/sg_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const etag = (headers: string) => /^etag: (.*)$/im.exec(headers)?.[1]?.trim();
const prefix = `mc${randomBytes(1).toString('hex')}`;
t.teardown(() => removePrefixed(prefix));
const lab = await startLab(t, { prefix });
await lab.network('mcu', '10.84.0.0/24');
const dir = await mkdtemp(join(tmpdir(), 'berth-mcu-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test('update a value; the next read sees it, with a new ETag', async (t) => {
  await writeFile(join(dir, 'ud1'), '#cloud-config\nhostname: first\n');
  await writeFile(join(dir, 'ud2'), '#cloud-config\nhostname: second\n');
  const g = await mdGuest(lab, 'mcg1', 'mcu', ['--meta', 'env=lab', '--user-data', join(dir, 'ud1')]);
  const env = '/latest/meta-data/tags/instance/env';

  const r1 = await curl(g.netns, env);
  t.same([r1.status, r1.body], [200, 'lab']);
  const e1 = etag(r1.headers) as string;
  t.match(e1, /^"[A-Za-z0-9_-]{22}"$/, 'a strong ETag');
  const id1 = await curl(g.netns, '/latest/meta-data/instance-id');
  const hit = await curl(g.netns, env, ['-H', `If-None-Match: ${e1}`]);
  t.same([hit.status, hit.body, etag(hit.headers)], [304, '', e1], 'If-None-Match with the tag: 304');

  const started = Date.now();
  const u = await lab.json<Instance>([
    'instance',
    'update',
    'mcg1',
    '--meta',
    'env=prod',
    '--user-data',
    join(dir, 'ud2'),
  ]);
  const updateMs = Date.now() - started;
  t.equal(u.metadata_version, 2, 'the version moved once');
  const r2 = await curl(g.netns, env);
  t.same(
    [r2.status, r2.body],
    [200, 'prod'],
    `the next read has the new value (berthctl took ${updateMs} ms)`,
  );
  t.not(etag(r2.headers), e1, 'and a new ETag');
  const stale = await curl(g.netns, env, ['-H', `If-None-Match: ${e1}`]);
  t.same([stale.status, stale.body], [200, 'prod'], 'the old tag gets the new value, not 304');
  t.equal((await curl(g.netns, '/latest/user-data')).body, '#cloud-config\nhostname: second\n');
  const id2 = await curl(g.netns, '/latest/meta-data/instance-id');
  t.equal(etag(id2.headers), etag(id1.headers), 'an unchanged path keeps its ETag');
  t.equal(
    (await curl(g.netns, '/latest/meta-data/instance-id', ['-H', `If-None-Match: ${etag(id1.headers)}`]))
      .status,
    304,
  );

  // No stale read after any update: each value is read right after the API answered.
  const lags: number[] = [];
  const calls: number[] = [];
  for (let i = 0; i < 10; i++) {
    const asked = Date.now();
    await lab.d.client.updateInstance('mcg1', { meta: { env: `v${i}` } });
    const at = Date.now();
    calls.push(at - asked);
    const r = await curl(g.netns, env);
    lags.push(Date.now() - at);
    t.equal(r.body, `v${i}`, `update ${i}: read back at once`);
  }
  t.comment(
    `PATCH ${Math.min(...calls)}-${Math.max(...calls)} ms; curl after it ${Math.min(...lags)}-${Math.max(...lags)} ms (process start included)`,
  );
  t.equal((await lab.json<Instance>(['instance', 'show', 'mcg1'])).metadata_version, 12);

  const removed = await lab.json<Instance>([
    'instance',
    'update',
    'mcg1',
    '--unset-meta',
    'env',
    '--no-user-data',
  ]);
  t.equal(removed.metadata_version, 13);
  t.equal((await curl(g.netns, env)).status, 404, 'a removed tag is gone');
  t.equal((await curl(g.netns, '/latest/user-data')).status, 404, 'removed user-data is gone');

  const { records } = await lab.d.client.audit({ limit: 2000 });
  const upd = records.filter((r) => r.event === 'admin.instance.update' && r.instance === g.id);
  t.equal(upd.length, 12, 'every update audited');
  t.ok(
    upd.some((r) => (r.detail?.changed as string[] | undefined)?.join() === 'meta,user_data'),
    'with what changed',
  );
  t.notOk(JSON.stringify(upd).includes('hostname: second'), 'never the user-data itself');
});

t.test('a role change moves a guest in and out of a role: source', async (t) => {
  await lab.json(['secgroup', 'create', 'mcdb']);
  await addTcpRule(lab, 'mcdb', 3306, 'role:mcweb');
  const db = await sgGuest(lab, 'mcdb1', 'mcu', ['--secgroup', 'mcdb']);
  const app = await sgGuest(lab, 'mcapp', 'mcu', []);
  await sgFlow(t, db.netns, ['serve', '3306'], 'ready');
  t.notOk(await sgProbe(lab, app.name, db.ip, 3306), 'without the role: refused');

  const started = Date.now();
  const u = await lab.json<Instance>(['instance', 'update', 'mcapp', '--role', 'mcweb']);
  t.equal(u.role, 'mcweb');
  t.ok(
    await sgProbe(lab, app.name, db.ip, 3306),
    `with the role: in as soon as the update answered (${Date.now() - started} ms)`,
  );
  const held = await sgFlow(t, app.netns, ['hold', db.ip, '3306'], 'ok 3');
  await lab.json(['instance', 'update', 'mcapp', '--no-role']);
  t.ok(await lostWithin(held, 3000), 'losing the role ends its open connection');
  t.notOk(await sgProbe(lab, app.name, db.ip, 3306), 'and a new one is refused');
});
