// berthctl's policy commands and `instance create`'s metadata flags, against
// an in-process admin API on a temporary unix socket.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { startMetadata } from '../../agent/metadata/wire.js';
import { startAdminCli } from '../helpers/admin_cli.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClitestkey carol@lab';

t.test('policy and instance metadata flags through berthctl', async (t) => {
  const { dir, cli } = await startAdminCli(t, {
    prefix: 'tmc',
    extra: async ({ store, audit, services, log }) => ({
      policies: (await startMetadata({ store, audit, services, hostId: () => 'hv', log })).policies,
    }),
  });

  t.equal((await cli('network', 'create', 'n', '--subnet', '10.6.0.0/24')).code, 0);
  await writeFile(join(dir, 'ud'), '#cloud-config\n');
  await writeFile(join(dir, 'vd'), '{"x": 1}');
  await writeFile(join(dir, 'id.pub'), `${KEY}\n`);
  const made = await cli(
    'instance',
    'create',
    'g1',
    '--network',
    'n',
    '--user-data',
    join(dir, 'ud'),
    '--vendor-data',
    join(dir, 'vd'),
    '--ssh-key',
    join(dir, 'id.pub'),
    '--role',
    'web',
    '--tokens',
    'required',
    '--meta',
    'a=1',
    '--meta',
    'b=x=y',
    '--json',
  );
  t.equal(made.code, 0, made.err);
  const i = JSON.parse(made.out);
  t.match(i, {
    role: 'web',
    tokens: 'required',
    meta: { a: '1', b: 'x=y' },
    ssh_keys: [{ name: 'carol@lab', key: KEY }],
  });
  t.match(i.user_data, { bytes: 14 });
  t.match(i.vendor_data, { bytes: 8 });
  const text = await cli('instance', 'show', 'g1');
  t.match(text.out, /role\s+web/);
  t.match(text.out, /user-data\s+14 bytes, sha256 [0-9a-f]{64}/);
  t.notMatch(text.out, /cloud-config/);
  t.equal(
    (await cli('instance', 'create', 'g2', '--network', 'n', '--tokens', 'maybe')).code,
    2,
    'bad --tokens is usage',
  );
  t.equal((await cli('instance', 'create', 'g2', '--network', 'n', '--meta', 'novalue')).code, 2);
  t.equal(
    (await cli('instance', 'create', 'g2', '--network', 'n', '--user-data', join(dir, 'nope'))).code,
    2,
  );

  const set = await cli(
    'policy',
    'set',
    'p1',
    '--identity',
    'role:web',
    '--identity',
    'mac:0a:b7:e7:00:00:00/24',
    '--deny',
    'read:user-data',
    '--allow',
    'read:meta-data/*',
    '--description',
    'web tier',
  );
  t.equal(set.code, 0, set.err);
  t.match(set.out, /policy p1 set/);
  const bad = await cli('policy', 'set', 'p2', '--identity', 'who:me', '--deny', 'read:user-data');
  t.equal(bad.code, 1, 'berthd refuses a bad identity');
  t.match(bad.err, /identities\.0/);
  const list = await cli('policy', 'list');
  t.match(list.out, /p1\s+role:web,mac:0a:b7:e7:00:00:00\/24\s+read:meta-data\/\*\s+read:user-data/);
  t.match((await cli('policy', 'show', 'p1')).out, /description\s+web tier/);
  t.same(JSON.parse((await cli('policy', 'show', 'p1', '--json')).out).deny, ['read:user-data']);
  t.equal(JSON.parse((await cli('policy', 'list', '--json')).out).length, 1);
  t.equal((await cli('policy', 'delete', 'p1')).code, 0);
  t.equal((await cli('policy', 'show', 'p1')).code, 1, 'gone');
});
