// instance update of metadata inputs, on the service: the same checks as a
// create (a bad field names itself and nothing is written, not even the
// valid fields beside it), a metadata version bumped once per real change,
// blobs landing and leaving with the record, the audit summary free of
// secret values, and in cluster mode: a host-local change (meta, keys,
// user-data) does not wait for etcd, a role change goes to the directory.
import t from 'tap';
import { keyLabel } from '../../agent/services/instance-meta-update.js';
import { DIRECTORY_PREFIX, type DirectoryEntry, InstanceService } from '../../agent/services/instances.js';
import { instanceLab } from '../helpers/instance_lab.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthMetadataTestKeyAAAAAAAAAAAAAAAAAAAAA alice@lab';
const KEY2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherMetadataTestKeyAAAAAAAAAAAAAAAAAAAAAA bob@lab';
const b64 = (s: string) => Buffer.from(s).toString('base64');
const SECRET = '#cloud-config\npassword: hunter2-secret\n';

async function setup(clustered: boolean) {
  const changed: string[] = [];
  const enforced: string[] = [];
  const lab = await instanceLab(clustered, 'mcu', () => ({
    onChanged: (rec) => changed.push(`${rec.name}@${rec.metadata_version}`),
    enforceSecgroups: async (rec) => {
      enforced.push(`${rec.name}:${rec.role ?? ''}`);
    },
  }));
  return { ...lab, changed, enforced };
}

t.test('bad input names its field; nothing is half applied', async (t) => {
  const { local, instances } = await setup(false);
  const rec = await instances.create({ name: 'a', network: 'n', meta: { env: 'lab' } });
  t.equal(rec.metadata_version, 1, 'a new instance is at version 1');
  const writes = local.batches;
  const cases: [object, string][] = [
    [{ meta: { env: 'prod' }, user_data: 'not base64!' }, 'user_data'],
    [{ meta: { env: 'prod' }, vendor_data: b64('x'.repeat(64 * 1024 + 1)) }, 'vendor_data'],
    [{ meta: { env: 'prod' }, ssh_keys: [{ name: 'k', key: 'not a key' }] }, 'ssh_keys.0'],
    [{ meta: { env: 'prod' }, ssh_keys: [{ name: 'bad name', key: KEY }] }, 'ssh_keys.0.name'],
    [{ meta: { 'bad key': 'x' } }, 'meta.bad key'],
    [{ meta: { env: 'prod' }, role: 'Not-A-Role' }, 'role'],
    [{ meta: Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, 'v'])) }, 'meta'],
  ];
  for (const [patch, field] of cases)
    await t.rejects(instances.update('a', patch), { code: 'BERTH_ERR_INVALID_ARGUMENT', field }, field);
  t.equal(local.batches, writes, 'no refused update wrote anything');
  t.same(instances.get('a').meta, { env: 'lab' }, 'the valid field beside a bad one did not land');
  t.equal(instances.get('a').metadata_version, 1);
  await t.rejects(instances.update('nope', { meta: { a: 'b' } }), { code: 'BERTH_ERR_NOT_FOUND' });
});

t.test('versions, blobs and the audit summary', async (t) => {
  const { local, instances, changed, enforced } = await setup(false);
  const rec = await instances.create({
    name: 'a',
    network: 'n',
    meta: { env: 'lab', old: 'x' },
    ssh_keys: [{ name: 'alice', key: KEY }],
  });
  const blob = (p: string) => local.get<string>(`${p}/${rec.id}`);

  const u1 = await instances.updateDescribed('a', {
    meta: { env: 'prod-token-value', old: null, fresh: 'y' },
    user_data: b64(SECRET),
  });
  t.equal(u1.instance.metadata_version, 2, 'one update, one bump');
  t.same(u1.instance.meta, { env: 'prod-token-value', fresh: 'y' });
  t.equal(Buffer.from((await blob('userdata')) ?? '', 'base64').toString(), SECRET, 'user-data stored');
  t.same(u1.summary, {
    changed: ['meta', 'user_data'],
    metadata_version: { from: 1, to: 2 },
    meta: { set: ['env', 'fresh'], removed: ['old'] },
    user_data: { from: null, to: u1.instance.user_data },
  });
  t.equal(u1.instance.user_data?.bytes, SECRET.length);
  const text = JSON.stringify(u1.summary);
  t.notOk(/hunter2|prod-token-value/.test(text), 'no user-data and no meta value in the summary');
  t.same((await local.get<{ metadata_version: number }>(`instance/${rec.id}`))?.metadata_version, 2);

  const writes = local.batches;
  const same = await instances.updateDescribed('a', {
    meta: { env: 'prod-token-value' },
    user_data: b64(SECRET),
  });
  t.same(same.summary, { changed: [] }, 'the same values again change nothing');
  t.equal(same.instance.metadata_version, 2);
  t.equal(local.batches, writes, 'and write nothing');

  const u3 = await instances.updateDescribed('a', {
    user_data: null,
    ssh_keys: [{ name: 'bob', key: KEY2 }],
    role: 'web',
    tokens: 'required',
  });
  t.equal(u3.instance.metadata_version, 3);
  t.notOk('user_data' in u3.instance, 'user-data removed from the record');
  t.equal(await blob('userdata'), undefined, 'and its blob deleted');
  t.same(u3.summary.ssh_keys, {
    from: [keyLabel({ name: 'alice', key: KEY })],
    to: [keyLabel({ name: 'bob', key: KEY2 })],
  });
  t.match(u3.summary.ssh_keys?.to[0], /^bob SHA256:[A-Za-z0-9+/]{43}$/, 'keys by name and fingerprint');
  t.notOk(JSON.stringify(u3.summary).includes('AAAAC3Nza'), 'never the key itself');
  t.same(u3.summary.role, { from: null, to: 'web' });
  t.same(u3.summary.tokens, { from: 'optional', to: 'required' });
  t.same(enforced, ['a:web'], 'a role change is enforced on the bridge before the answer');

  const vd = await instances.updateDescribed('a', { vendor_data: b64('#cloud-config\n') });
  t.equal(Buffer.from((await blob('vendordata')) ?? '', 'base64').toString(), '#cloud-config\n');
  t.same(vd.summary.changed, ['vendor_data']);
  await instances.update('a', { vendor_data: null });
  t.equal(await blob('vendordata'), undefined, 'vendor-data removed with its blob');

  const u4 = await instances.updateDescribed('a', { role: null, meta: { fresh: 'z' } });
  t.notOk('role' in u4.instance);
  t.same(enforced, ['a:web', 'a:'], 'losing the role too');
  await instances.update('a', { meta: { more: '1' } });
  t.same(enforced, ['a:web', 'a:'], 'a meta change does not touch the bridge');
  t.same(
    changed,
    ['a@1', 'a@2', 'a@3', 'a@4', 'a@5', 'a@6', 'a@7'],
    'listeners (the endpoint caches) hear each change',
  );

  // A restart reads the version back.
  const again = new InstanceService({ ...(instances as unknown as { opts: object }).opts } as never);
  await again.load();
  t.equal(again.get('a').metadata_version, 7);
});

t.test('cluster: meta is host-local; a role goes to the directory', async (t) => {
  const { local, shared, instances, down } = await setup(true);
  const rec = await instances.create({ name: 'a', network: 'n' });
  const dir = () => shared.get<DirectoryEntry>(`${DIRECTORY_PREFIX}${rec.id}`);
  await instances.update('a', { role: 'db' });
  t.equal((await dir())?.role, 'db', 'other hosts see the role (their role: sets)');
  const sharedWrites = shared.batches;
  await instances.update('a', { meta: { env: 'x' } });
  t.equal(shared.batches, sharedWrites, 'a meta change writes nothing to etcd');
  down();
  const u = await instances.update('a', { meta: { env: 'y' }, user_data: b64('#!/bin/sh\n') });
  t.equal(u.metadata_version, 4, 'meta and user-data change while etcd is away');
  const before = [local.batches, shared.batches];
  await t.rejects(instances.update('a', { role: 'web', meta: { env: 'z' } }), {
    code: 'BERTH_ERR_CLUSTER_UNAVAILABLE',
  });
  t.same([local.batches, shared.batches], before, 'a role change is refused whole while etcd is away');
  t.same([instances.get('a').role, instances.get('a').meta?.env], ['db', 'y']);
});
