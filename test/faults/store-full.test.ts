// Fault, at the store: its filesystem fills up. A write is refused with
// BERTH_ERR_STORE_FULL and nothing more is written while it stays full;
// reads keep working; once space is freed writes resume by themselves, and
// what they wrote survives a reopen. (LevelDB alone loses it: after a write
// torn by ENOSPC it appends behind the torn record, and the next open drops
// everything after that record.)
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { LevelStore } from '../../agent/store/level-store.js';
import { tempDir, uniquePrefix } from '../helpers/berthd.js';
import { isRoot } from '../helpers/hostnet_lab.js';
import { fillUp, mountTmpfs } from '../helpers/tmpfs.js';

if (!isRoot()) {
  t.plan(0, 'needs root (mounts a tmpfs)');
  process.exit(0);
}

t.test('a full disk: refused clearly, reads kept, writes resume and last', async (t) => {
  const dir = join(await tempDir(t, 'store-full'), `${uniquePrefix()}-state`);
  await mountTmpfs(t, dir, 4 << 20);
  let store = await LevelStore.open(dir);
  t.teardown(() => store.close());
  await store.batch([{ type: 'put', key: 'instance/a', value: { name: 'a' } }]);
  const filler = await fillUp(dir);

  const big = { pad: 'x'.repeat(20_000) };
  await t.rejects(store.batch([{ type: 'put', key: 'instance/b', value: big }]), {
    code: 'BERTH_ERR_STORE_FULL',
    message: new RegExp(
      `could not write key "instance/b" in store "${dir}/db": the disk is full \\(.*No space left on device\\); free space under ${dir}`,
    ),
  });
  await t.rejects(
    store.batch([{ type: 'put', key: 'instance/c', value: 1 }]),
    { code: 'BERTH_ERR_STORE_FULL', message: /the disk is still full \(\d+ bytes free, \d+ needed/ },
    'while it stays full, nothing more is written, not even a small batch',
  );
  t.same(await store.get('instance/a'), { name: 'a' }, 'reads keep working');
  t.same(
    (await store.list('instance/')).map((e) => e.key),
    ['instance/a'],
    'and list only what was written',
  );

  await rm(filler);
  await store.batch([{ type: 'put', key: 'instance/d', value: { name: 'd' } }]);
  t.same(await store.get('instance/d'), { name: 'd' }, 'writes resume once space is freed');
  await store.close();
  store = await LevelStore.open(dir);
  t.same(
    (await store.list('instance/')).map((e) => e.key),
    ['instance/a', 'instance/d'],
    'and what they wrote is there after a reopen (the failed ones are not)',
  );
});
