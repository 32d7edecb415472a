import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { LevelStore } from '../../agent/store/level-store.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { META_KEYS, SCHEMA_VERSION, type Store } from '../../base/store.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// The same contract holds for the fake and the real store.
const backends: [string, (t: Test) => Promise<Store>][] = [
  ['memory', async () => new MemoryStore()],
  ['level', async (t) => LevelStore.open(await tempDir(t))],
];

for (const [name, open] of backends) {
  t.test(`${name}: batches are atomic and guards make reservations`, async (t) => {
    const store = await open(t);
    t.teardown(() => store.close());
    await store.batch([
      { type: 'put', key: 'mac/0a:00:00:00:00:01', value: { instance: 'a' } },
      { type: 'put', key: 'ip/net/10.0.0.2', value: { instance: 'a' } },
    ]);
    t.same(await store.get('mac/0a:00:00:00:00:01'), { instance: 'a' });
    // A failing guard writes nothing, not even the ops before it.
    await t.rejects(
      store.batch(
        [
          { type: 'put', key: 'instance/b', value: { name: 'b' } },
          { type: 'put', key: 'mac/0a:00:00:00:00:01', value: { instance: 'b' } },
        ],
        { guards: [{ key: 'mac/0a:00:00:00:00:01', absent: true }] },
      ),
      {
        code: 'BERTH_ERR_CONFLICT',
        message: 'could not write batch: key "mac/0a:00:00:00:00:01" already exists',
      },
    );
    t.equal(await store.get('instance/b'), undefined);
    t.same(await store.get('mac/0a:00:00:00:00:01'), { instance: 'a' });
    await store.batch([{ type: 'del', key: 'ip/net/10.0.0.2' }], {
      guards: [{ key: 'mac/0a:00:00:00:00:01', equals: { instance: 'a' } }],
    });
    t.equal(await store.get('ip/net/10.0.0.2'), undefined);
  });

  t.test(`${name}: concurrent reservations of one key: exactly one wins`, async (t) => {
    const store = await open(t);
    t.teardown(() => store.close());
    const tries = Array.from({ length: 20 }, (_, i) =>
      store
        .batch([{ type: 'put', key: 'mac/x', value: i }], { guards: [{ key: 'mac/x', absent: true }] })
        .then(
          () => true,
          () => false,
        ),
    );
    t.equal((await Promise.all(tries)).filter(Boolean).length, 1);
  });

  t.test(`${name}: batches in flight together see each other, in order`, async (t) => {
    const store = await open(t);
    t.teardown(() => store.close());
    // Submitted in one tick, so the level store writes them as one group.
    const outcomes = await Promise.all(
      [
        store.batch([{ type: 'put', key: 'k', value: { v: 1 } }], { durable: false }),
        store.batch([{ type: 'put', key: 'seen', value: true }], {
          guards: [{ key: 'k', equals: { v: 1 } }],
        }),
        store.batch([{ type: 'put', key: 'k', value: { v: 2 } }], { guards: [{ key: 'k', absent: true }] }),
        store.batch([{ type: 'del', key: 'k' }]),
        store.batch([{ type: 'put', key: 'k', value: { v: 3 } }], { guards: [{ key: 'k', absent: true }] }),
      ].map((p) =>
        p.then(
          () => 'ok',
          (err: { code?: string }) => err.code,
        ),
      ),
    );
    t.same(outcomes, ['ok', 'ok', 'BERTH_ERR_CONFLICT', 'ok', 'ok']);
    t.same(await store.get('k'), { v: 3 });
    t.equal(await store.get('seen'), true);
  });

  t.test(`${name}: back-to-back batches each land (none waits for a write that never comes)`, async (t) => {
    const store = await open(t);
    t.teardown(() => store.close());
    for (let i = 0; i < 50; i++) await store.batch([{ type: 'put', key: `seq/${i}`, value: i }]);
    t.equal((await store.list('seq/')).length, 50);
  });

  t.test(`${name}: prefix listing is ordered, bounded and pageable`, async (t) => {
    const store = await open(t);
    t.teardown(() => store.close());
    await store.batch(
      ['a/1', 'a/2', 'a/3', 'ab/1', 'b/1'].map((key) => ({ type: 'put' as const, key, value: key })),
    );
    t.same(
      (await store.list('a/')).map((e) => e.key),
      ['a/1', 'a/2', 'a/3'],
    );
    t.same(
      (await store.list('a/', { after: 'a/1', limit: 1 })).map((e) => e.key),
      ['a/2'],
    );
    t.same(
      (await store.list('a/', { reverse: true, limit: 2 })).map((e) => e.value),
      ['a/3', 'a/2'],
    );
  });
}

t.test('level: a new store gets the schema version; data survives reopen', async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  t.equal(await store.get(META_KEYS.schema), SCHEMA_VERSION);
  await store.batch([{ type: 'put', key: 'setting/x', value: 42 }]);
  await store.close();
  const again = await LevelStore.open(dir);
  t.equal(await again.get('setting/x'), 42);
  await again.close();
});

t.test('level: a batch LevelDB refuses fails alone, not the batches written with it', async (t) => {
  const store = await LevelStore.open(await tempDir(t));
  t.teardown(() => store.close());
  const outcomes = await Promise.all(
    [
      store.batch([{ type: 'put', key: 'a', value: 1 }]),
      store.batch([{ type: 'put', key: 'bad', value: undefined }]),
      store.batch([{ type: 'put', key: 'b', value: 2 }], { guards: [{ key: 'a', equals: 1 }] }),
    ].map((p) =>
      p.then(
        () => 'ok',
        (err: { code?: string }) => err.code,
      ),
    ),
  );
  t.same(outcomes, ['ok', 'BERTH_ERR_STORE_IO', 'ok']);
  t.equal(await store.get('b'), 2);
  t.equal(await store.get('bad'), undefined);
});

t.test('level: the same path cannot be opened twice in one process', async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  t.teardown(() => store.close());
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_LOCKED',
    message: /already open in this process/,
  });
});

t.test('level: a corrupt store is refused with a clear message, never reset', async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  await store.batch([{ type: 'put', key: 'instance/a', value: { keep: true } }]);
  await store.close();
  const dbDir = join(dir, 'db');
  const manifest = (await readdir(dbDir)).find((f) => f.startsWith('MANIFEST-')) as string;
  await writeFile(join(dbDir, manifest), Buffer.alloc(200, 0x5a));
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_CORRUPT',
    message: /is corrupt .*never resets it/,
  });
  // The damaged files are still there for the operator to inspect or restore.
  t.ok((await readdir(dbDir)).includes(manifest));

  await rm(join(dbDir, 'CURRENT'));
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_CORRUPT',
    message: /has files but no CURRENT/,
  });
});

t.test('level: a store from a newer berth is refused', async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  await store.batch([{ type: 'put', key: META_KEYS.schema, value: SCHEMA_VERSION + 1 }]);
  await store.close();
  await t.rejects(LevelStore.open(dir), { code: 'BERTH_ERR_STORE_VERSION', message: /upgrade berth/ });
});

t.test('level: data without a schema version is corruption, not a fresh store', async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  await store.batch([
    { type: 'del', key: META_KEYS.schema },
    { type: 'put', key: 'instance/a', value: 1 },
  ]);
  await store.close();
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_CORRUPT',
    message: /holds data but no schema version/,
  });
});
