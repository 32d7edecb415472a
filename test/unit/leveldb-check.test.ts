// The look at LevelDB's files before opening them: a damaged log record or a
// truncated table is refused with every file left as it was, while what a
// crash leaves (a torn or zero-filled tail) still opens.
import { createHash } from 'node:crypto';
import { appendFile, copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { crc32c, unmaskCrc } from '../../agent/store/crc32c.js';
import { LevelStore } from '../../agent/store/level-store.js';
import { checkLevelFiles, firstDamage } from '../../agent/store/leveldb-check.js';
import { liveFiles } from '../../agent/store/leveldb-manifest.js';
import { tableDamage, unsnappy } from '../../agent/store/leveldb-table-check.js';
import { fileHashes, filesEnding, garble, truncateTo } from '../helpers/store_files.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-check-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const RECORDS = 50;
const key = (i: number) => `instance/i-${String(i).padStart(3, '0')}`;

/** A store whose records are all in the log (close does not flush the memtable), or in a table. */
async function seeded(t: Test, where: 'log' | 'table'): Promise<string> {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  for (let i = 0; i < RECORDS; i++)
    await store.batch([{ type: 'put', key: key(i), value: { i, pad: 'x'.repeat(100) } }]);
  await store.close();
  // Opening replays the log into a table.
  if (where === 'table') await (await LevelStore.open(dir)).close();
  return dir;
}

async function count(dir: string): Promise<number> {
  const store = await LevelStore.open(dir);
  try {
    return (await store.list('instance/')).length;
  } finally {
    await store.close();
  }
}

t.test('crc32c and LevelDB masking', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283, 'the standard check value');
  const crc = crc32c(Buffer.from('berth'));
  const masked = (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
  t.equal(unmaskCrc(masked), crc);
  t.equal(firstDamage(Buffer.alloc(0)), undefined, 'an empty log is fine');
});

t.test('a record garbled in the middle of the log: refused, nothing touched', async (t) => {
  const dir = await seeded(t, 'log');
  const db = join(dir, 'db');
  const [log] = await filesEnding(db, '.log');
  t.ok(log, 'the records are in a log');
  await garble(join(db, log as string), 3000, 40);
  const before = await fileHashes(db);
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_CORRUPT',
    message: new RegExp(`${log}: checksum mismatch at offset \\d+\\); berth never resets it`),
  });
  t.same(await fileHashes(db), before, 'every file is byte for byte as it was');
});

t.test('what a crash leaves at the end of the log still opens', async (t) => {
  const torn = await seeded(t, 'log');
  const [log] = await filesEnding(join(torn, 'db'), '.log');
  const path = join(torn, 'db', log as string);
  await truncateTo(path, 0.999);
  t.equal(await count(torn), RECORDS - 1, 'a torn last record is dropped, the others kept');

  const zeros = await seeded(t, 'log');
  const [log2] = await filesEnding(join(zeros, 'db'), '.log');
  await appendFile(join(zeros, 'db', log2 as string), Buffer.alloc(100));
  t.equal(await count(zeros), RECORDS, 'a zero-filled tail is padding');

  // The last record's data ending in zeros: the file grew before the data landed.
  const zeroed = await seeded(t, 'log');
  const [log3] = await filesEnding(join(zeroed, 'db'), '.log');
  await garble(join(zeroed, 'db', log3 as string), -20, 20, 0);
  t.equal(await count(zeroed), RECORDS - 1, 'a last record ending in zeros is dropped, the others kept');
});

t.test('garbage in the last record is damage, not a torn tail', async (t) => {
  const dir = await seeded(t, 'log');
  const [log] = await filesEnding(join(dir, 'db'), '.log');
  await garble(join(dir, 'db', log as string), -5, 4);
  await t.rejects(LevelStore.open(dir), { code: 'BERTH_ERR_STORE_CORRUPT', message: /checksum mismatch/ });
});

t.test('a truncated table: refused before LevelDB sees it, nothing touched', async (t) => {
  const dir = await seeded(t, 'table');
  const db = join(dir, 'db');
  const [table] = await filesEnding(db, '.ldb');
  t.ok(table, 'the records are in a table');
  await truncateTo(join(db, table as string), 0.5);
  const before = await fileHashes(db);
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_CORRUPT',
    message: `${table}: the table is truncated or its footer is damaged); berth never resets it`,
  });
  t.same(await fileHashes(db), before, 'every file is byte for byte as it was');
});

t.test('a garbled table block: refused before LevelDB serves it, nothing touched', async (t) => {
  const dir = await seeded(t, 'table');
  const db = join(dir, 'db');
  const [table] = await filesEnding(db, '.ldb');
  await garble(join(db, table as string), 100, 16);
  const before = await fileHashes(db);
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_CORRUPT',
    message: `${table}: data block at offset 0: checksum mismatch); berth never resets it`,
  });
  t.same(await fileHashes(db), before, 'every file is byte for byte as it was');
});

t.test('healthy tables of every shape pass: many blocks, raw and compressed, filters', async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  const noise = (i: number) => createHash('sha256').update(String(i)).digest('base64');
  for (let i = 0; i < 40; i++) {
    // Random-looking values do not compress (raw blocks); repeated ones do (snappy blocks).
    await store.batch(
      Array.from({ length: 500 }, (_, j) => ({
        type: 'put' as const,
        key: `k/${String(i * 500 + j).padStart(6, '0')}`,
        value: j % 2 ? noise(i * 500 + j).repeat(4) : 'x'.repeat(200),
      })),
    );
  }
  await store.close();
  await (await LevelStore.open(dir)).close();
  const tables = await filesEnding(join(dir, 'db'), '.ldb');
  t.ok(tables.length > 0, `${tables.length} table(s)`);
  for (const name of tables) {
    const table = await readFile(join(dir, 'db', name));
    t.equal(tableDamage(table), undefined, `${name} (${table.length} bytes) checks out`);
  }
  t.equal(await count(dir), 0, 'and opens (no instance keys in it)');
});

t.test('snappy: short and long literals, copies with 1-, 2- and 4-byte offsets', async (t) => {
  const long = Buffer.alloc(70, 'z');
  const src = Buffer.concat([
    Buffer.from([12 + long.length]), // the uncompressed length
    Buffer.from([(3 - 1) << 2]), // a literal of 3
    Buffer.from('abc'),
    Buffer.from([((9 - 4) << 2) | 1, 3]), // copy 9 from 3 back
    Buffer.from([60 << 2, long.length - 1]), // a literal of 70: its length in the next byte
    long,
  ]);
  t.equal(unsnappy(src).toString(), `abcabcabcabc${long.toString()}`);
  const copy2 = Buffer.from([8, 1 << 2, 0x61, 0x62, ((6 - 1) << 2) | 2, 2, 0]);
  t.equal(unsnappy(copy2).toString(), 'abababab');
  const copy4 = Buffer.from([8, 1 << 2, 0x61, 0x62, ((6 - 1) << 2) | 3, 2, 0, 0, 0]);
  t.equal(unsnappy(copy4).toString(), 'abababab');
  t.throws(() => unsnappy(Buffer.from([4, (3 << 2) | 1, 9])), /snappy copy out of bounds/);
  t.throws(() => unsnappy(Buffer.from([9, 1 << 2, 0x61, 0x62])), /shorter than its stated length/);
});

t.test('zeros in the middle of the log are lost records, not padding', async (t) => {
  const dir = await seeded(t, 'log');
  const [log] = await filesEnding(join(dir, 'db'), '.log');
  await garble(join(dir, 'db', log as string), 0, 200, 0);
  await t.rejects(LevelStore.open(dir), {
    code: 'BERTH_ERR_STORE_CORRUPT',
    message: /zeros where records should be at offset 0/,
  });
});

t.test(
  "a table the manifest does not list (a compaction cut short) is LevelDB's to delete, not damage",
  async (t) => {
    const dir = await seeded(t, 'table');
    const db = join(dir, 'db');
    const [table] = await filesEnding(db, '.ldb');
    const live = await liveFiles(db);
    t.ok(live?.tables.has(Number.parseInt(table as string, 10)), `the manifest lists ${table}`);
    // A half-written output of a compaction: a number above every live file, garbage inside.
    const stray = join(db, '999999.ldb');
    await copyFile(join(db, table as string), stray);
    await truncateTo(stray, 0.5);
    t.equal(await checkLevelFiles(db), undefined, 'the unlisted table is not checked');
    t.equal(await count(dir), RECORDS, 'and the store opens with every record');
    await garble(join(db, table as string), 100, 16);
    t.match(await checkLevelFiles(db), /checksum mismatch/, 'a listed table is still checked');
  },
);
