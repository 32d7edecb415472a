// instance secgroups on create and update, single-host and in cluster mode
// (two MemoryStores: this host's and the cluster's): the record and the
// cluster directory both carry the list, so every host can build its group
// sets; the same list again writes nothing; an etcd outage or a directory
// entry that is no longer this host's refuses the change with nothing written.
import t from 'tap';
import { DIRECTORY_PREFIX, type DirectoryEntry } from '../../agent/services/instances.js';
import { SecGroupService } from '../../agent/services/secgroups.js';
import { instanceLab } from '../helpers/instance_lab.js';

async function setup(clustered: boolean) {
  const changed: string[] = [];
  let secgroups: SecGroupService | undefined;
  const lab = await instanceLab(clustered, 'sbu', async ({ shared, instances }) => {
    secgroups = new SecGroupService({
      store: shared,
      membersOf: (g) => (instances()?.all() ?? []).filter((i) => i.secgroups?.includes(g)).map((i) => i.name),
    });
    await secgroups.create({ name: 'db' });
    await secgroups.create({ name: 'web' });
    return {
      secgroups,
      onChanged: (rec) => changed.push(`${rec.name}:${(rec.secgroups ?? []).join(',')}`),
    };
  });
  return { ...lab, secgroups: secgroups as SecGroupService, changed };
}

t.test('single host: create with groups, replace, leave all; idempotent', async (t) => {
  const { local, instances, changed } = await setup(false);
  const rec = await instances.create({ name: 'a', network: 'n', secgroups: ['web', 'db', 'web'] });
  t.same(rec.secgroups, ['web', 'db']);
  t.same((await local.get<{ secgroups: string[] }>(`instance/${rec.id}`))?.secgroups, ['web', 'db']);
  const plain = await instances.create({ name: 'b', network: 'n' });
  t.notOk('secgroups' in plain, 'no groups: no field, as before groups existed');
  await t.rejects(instances.create({ name: 'c', network: 'n', secgroups: ['web', 'nope'] }), {
    code: 'BERTH_ERR_NOT_FOUND',
    field: 'secgroups.1',
  });
  const writes = local.batches;
  t.same((await instances.update('a', { secgroups: ['web', 'db'] })).secgroups, ['web', 'db']);
  t.equal(local.batches, writes, 'the same list writes nothing');
  t.same((await instances.update(rec.id, { secgroups: ['db'] })).secgroups, ['db'], 'by id too');
  t.same(instances.get('a').secgroups, ['db']);
  const none = await instances.update('a', { secgroups: [] });
  t.notOk('secgroups' in none);
  t.notOk('secgroups' in ((await local.get<object>(`instance/${rec.id}`)) ?? {}), 'stored without it');
  await t.rejects(instances.update('zz', { secgroups: [] }), { code: 'BERTH_ERR_NOT_FOUND' });
  t.same(changed, ['a:web,db', 'b:', 'a:db', 'a:'], 'listeners hear creates and real changes only');
});

t.test('cluster: the directory entry carries the list; outage and foreign entries refuse', async (t) => {
  const { local, shared, instances, down } = await setup(true);
  const rec = await instances.create({ name: 'a', network: 'n', secgroups: ['db'] });
  const dir = () => shared.get<DirectoryEntry>(`${DIRECTORY_PREFIX}${rec.id}`);
  t.match(await dir(), { id: rec.id, host: 'hv1', secgroups: ['db'] });
  await instances.update('a', { secgroups: ['web', 'db'] });
  t.same((await dir())?.secgroups, ['web', 'db'], 'other hosts see the new membership');
  t.same((await local.get<{ secgroups: string[] }>(`instance/${rec.id}`))?.secgroups, ['web', 'db']);
  await instances.update('a', { secgroups: [] });
  t.notOk('secgroups' in ((await dir()) ?? {}));

  // The entry moved to another host (this one was forgotten): refused, nothing written.
  const entry = (await dir()) as DirectoryEntry;
  await shared.batch([
    { type: 'put', key: `${DIRECTORY_PREFIX}${rec.id}`, value: { ...entry, host: 'hv2' } },
  ]);
  await t.rejects(instances.update('a', { secgroups: ['db'] }), {
    code: 'BERTH_ERR_CONFLICT',
    message: /could not update instance "a": .*no longer lists it on this host/,
  });
  t.notOk('secgroups' in instances.get('a'));
  await shared.batch([{ type: 'put', key: `${DIRECTORY_PREFIX}${rec.id}`, value: entry }]);

  down();
  const before = [local.batches, shared.batches];
  await t.rejects(instances.update('a', { secgroups: ['db'] }), { code: 'BERTH_ERR_CLUSTER_UNAVAILABLE' });
  t.same([local.batches, shared.batches], before, 'nothing written while etcd is away');
  t.notOk('secgroups' in instances.get('a'));
});
