// berthctl instance update for metadata, through the real admin API on a
// temporary unix socket: flags set and remove values, --json prints the
// record with its metadata version, usage errors exit 2, a bad value names
// its field, and the audit record says what changed without the secrets.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { readBlob, USER_DATA_PREFIX } from '../../agent/metadata/inputs.js';
import { FakeSecGroupDriver } from '../fakes/fake-sg-driver.js';
import { startAdminCli } from '../helpers/admin_cli.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthMetadataTestKeyAAAAAAAAAAAAAAAAAAAAA alice@lab';
const SECRET = '#cloud-config\nchpasswd: {list: "root:s3cret-in-user-data"}\n';

t.test('instance update through berthctl', async (t) => {
  const { dir, store, audit, cli } = await startAdminCli(t, {
    prefix: 'mcc',
    sgDriver: new FakeSecGroupDriver(),
    extra: () => ({
      peers: { of: async () => ({ pid: 4242, uid: 0, gid: 0 }) },
      peerGroups: async () => [],
    }),
  });
  await writeFile(join(dir, 'ud'), SECRET);
  await writeFile(join(dir, 'key.pub'), `${KEY}\n`);
  const json = async (...args: string[]): Promise<Instance> => {
    const r = await cli(...args, '--json');
    t.equal(r.code, 0, `${args.join(' ')}: ${r.out}${r.err}`);
    return JSON.parse(r.out);
  };

  t.equal((await cli('network', 'create', 'n', '--subnet', '10.6.0.0/24')).code, 0);
  const made = await json(
    'instance',
    'create',
    'g1',
    '--network',
    'n',
    '--meta',
    'env=lab',
    '--meta',
    'old=1',
  );
  t.equal(made.metadata_version, 1);

  const u = await json(
    'instance',
    'update',
    'g1',
    '--meta',
    'env=prod',
    '--unset-meta',
    'old',
    '--user-data',
    join(dir, 'ud'),
    '--ssh-key',
    join(dir, 'key.pub'),
    '--role',
    'web',
    '--tokens',
    'required',
  );
  t.match(u, {
    metadata_version: 2,
    meta: { env: 'prod' },
    role: 'web',
    tokens: 'required',
    ssh_keys: [{ name: 'alice@lab', key: KEY }],
    user_data: { bytes: SECRET.length },
  });
  t.notOk('old' in (u.meta ?? {}));
  t.equal((await readBlob(store, USER_DATA_PREFIX, u.id))?.toString(), SECRET);
  t.notOk(JSON.stringify(u).includes('s3cret'), 'the answer never carries user-data');

  const human = await cli('instance', 'update', 'g1', '--no-user-data', '--no-role', '--no-ssh-keys');
  t.same([human.code, human.out], [0, 'instance g1 metadata version 3']);
  const shown = await json('instance', 'show', 'g1');
  t.notOk('user_data' in shown || 'role' in shown, 'removed');
  t.same(shown.ssh_keys, []);
  t.match((await cli('instance', 'show', 'g1')).out, /metadata version\s+3/);

  // Usage and validation.
  t.equal((await cli('instance', 'update', 'g1')).code, 2, 'nothing to update');
  t.equal((await cli('instance', 'update', 'g1', '--meta', 'a=1', '--unset-meta', 'a')).code, 2);
  t.equal(
    (await cli('instance', 'update', 'g1', '--ssh-key', join(dir, 'key.pub'), '--no-ssh-keys')).code,
    2,
  );
  const bad = await cli('instance', 'update', 'g1', '--meta', 'bad key=1', '--role', 'web', '--json');
  t.equal(bad.code, 1);
  t.match(JSON.parse(bad.out), { error: { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'meta.bad key' } });
  const badRole = await cli('instance', 'update', 'g1', '--role', 'Web!', '--json');
  t.equal(badRole.code, 1, 'the schema refuses a bad role');
  t.notOk('role' in (await json('instance', 'show', 'g1')), 'nothing of a refused update landed');

  // The audit log: what changed, by whom, never the secrets.
  const updates = (await audit.query({ outcome: 'allowed' })).filter(
    (r) => r.event === 'admin.instance.update',
  );
  t.equal(updates.length, 2);
  t.match(updates[0], {
    instance: u.id,
    peer: { uid: 0 },
    detail: {
      changed: ['meta', 'user_data', 'ssh_keys', 'role', 'tokens'],
      metadata_version: { from: 1, to: 2 },
      meta: { set: ['env'], removed: ['old'] },
      user_data: { from: null, to: { bytes: SECRET.length, sha256: u.user_data?.sha256 } },
      ssh_keys: { from: [], to: [/^alice@lab SHA256:/] },
      role: { from: null, to: 'web' },
    },
  });
  t.match(updates[1], {
    detail: { changed: ['user_data', 'ssh_keys', 'role'], user_data: { to: null }, role: { to: null } },
  });
  const all = JSON.stringify(await audit.query({}));
  t.notOk(/s3cret|AAAAC3Nza|prod"/.test(all), 'no user-data, key or meta value anywhere in the log');
  const refused = (await audit.query({ outcome: 'refused' })).map((r) => [r.detail?.change, r.detail?.code]);
  t.same(
    refused,
    [
      ['admin.instance.update', 'BERTH_ERR_INVALID_ARGUMENT'],
      ['admin.instance.update', 'BERTH_ERR_INVALID_ARGUMENT'],
    ],
    'refused updates are audited',
  );
});
