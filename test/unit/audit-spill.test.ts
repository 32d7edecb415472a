// The audit log's reserve, against a store that says its disk is full: records
// go to the spill file (refusals first, numbered on), show in queries, move
// into the store once it takes writes again, and survive a restart either way.
// What does not fit is refused to its caller and counted, and the count is
// written. The spill file is real (a temp dir); the store is the in-memory one
// with a switch.
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { AuditLog, type AuditRecord } from '../../agent/audit/audit-log.js';
import { AuditSpill } from '../../agent/audit/audit-spill.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { BerthError } from '../../base/errors.js';

function fullStore() {
  const store = new MemoryStore();
  const batch = store.batch.bind(store);
  const sw = { full: false };
  store.batch = async (ops, opts) => {
    if (sw.full) throw new BerthError('BERTH_ERR_STORE_FULL', 'could not write key: the disk is full');
    return batch(ops, opts);
  };
  return { store, sw };
}

async function spillPath(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'audit-spill-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'audit-spill');
}

const refusal = (reason: string) => ({ event: 'metadata.request', outcome: 'refused' as const, reason });

t.test('a full store: records spill, are queried, and move in when space returns', async (t) => {
  const { store, sw } = fullStore();
  const path = await spillPath(t);
  const spill = await AuditSpill.open(path, 64 * 1024);
  t.equal((await stat(path)).size, 64 * 1024, 'the reserve is preallocated');
  const log = await AuditLog.open(store, 100_000, spill);
  await log.append(refusal('before'));
  sw.full = true;
  const seen: number[] = [];
  log.follow((r) => seen.push(r.seq));
  const r2 = await log.append(refusal('during 1'));
  const r3 = await log.append({ event: 'admin.change', outcome: 'info', reason: 'during 2' });
  t.same([r2.seq, r3.seq], [2, 3], 'numbered on, no hole');
  t.equal(log.spilled, 2, 'both in the spill');
  t.same(seen, [2, 3], 'followers see them at once');
  t.same(
    (await log.query()).map((r) => r.reason),
    ['before', 'during 1', 'during 2'],
    'a query shows them after the stored ones',
  );
  t.same(
    (await log.query({ after: 1, outcome: 'refused' })).map((r) => r.seq),
    [2],
  );

  sw.full = false;
  const r4 = await log.append(refusal('after'));
  t.equal(r4.seq, 4);
  t.equal(log.spilled, 0, 'the spill moved into the store with the next write');
  const reopened = await AuditLog.open(store, 100_000, await AuditSpill.open(`${path}-2`, 4096));
  t.same(
    (await reopened.query()).map((r) => [r.seq, r.reason]),
    [
      [1, 'before'],
      [2, 'during 1'],
      [3, 'during 2'],
      [4, 'after'],
    ],
    'all of it is in the store, in order',
  );
  await spill.close();
  const again = await AuditSpill.open(path, 64 * 1024);
  t.same(again.records, [], 'and the spill file was zeroed');
  await again.close();
});

t.test('refusals first: past half the reserve only refusals go in; the rest is counted', async (t) => {
  const { store, sw } = fullStore();
  const spill = await AuditSpill.open(await spillPath(t), 4096);
  const log = await AuditLog.open(store, 100_000, spill);
  sw.full = true;
  const pad = 'x'.repeat(300);
  const outcomes: string[] = [];
  for (let i = 0; i < 12; i++) {
    const input =
      i % 2
        ? refusal(`r${i} ${pad}`)
        : { event: 'admin.change', outcome: 'info' as const, reason: `i${i} ${pad}` };
    outcomes.push(
      await log.append(input).then(
        (r) => `${input.outcome}:${r.seq}`,
        (e: BerthError) => `${input.outcome}:${e.code}`,
      ),
    );
  }
  t.comment(outcomes.join(' '));
  const kept = outcomes.filter((o) => !o.includes('BERTH_ERR'));
  const keptInfo = kept.filter((o) => o.startsWith('info'));
  const keptRefused = kept.filter((o) => o.startsWith('refused'));
  t.ok(keptInfo.length < keptRefused.length, 'more refusals kept than other records');
  t.ok(
    outcomes.some((o) => o === 'info:BERTH_ERR_STORE_FULL'),
    'other records are refused to their caller first',
  );
  t.same(
    kept.map((o) => Number(o.split(':')[1])),
    kept.map((_, i) => i + 1),
    'what was kept is numbered without holes',
  );
  const lost = outcomes.length - kept.length;
  sw.full = false;
  await log.append(refusal('space again'));
  const all = await log.query({ limit: 100 });
  const note = all.find((r) => r.event === 'audit.lost') as AuditRecord;
  t.match(note, { outcome: 'info', detail: { count: lost } }, `the ${lost} records not kept are counted`);
  t.same(
    all.map((r) => r.seq),
    all.map((_, i) => i + 1),
    'and the log is contiguous',
  );
});

t.test('a restart while the disk is full keeps the spill; the next berthd moves it in', async (t) => {
  const { store, sw } = fullStore();
  const path = await spillPath(t);
  let spill = await AuditSpill.open(path, 8192);
  let log = await AuditLog.open(store, 100_000, spill);
  await log.append(refusal('stored'));
  sw.full = true;
  await log.append(refusal('spilled a'));
  await log.append(refusal('spilled b'));
  await log.close();
  // A torn frame after the good ones (a crash mid-write) is dropped, not misread.
  spill = await AuditSpill.open(path, 8192);
  t.same(
    spill.records.map((r) => r.reason),
    ['spilled a', 'spilled b'],
  );
  const used = spill.records.reduce((n, r) => n + AuditSpill.frameSize(r), 0);
  await spill.close();
  const fh = await open(path, 'r+');
  await fh.write(Buffer.from([0, 0, 0, 40, 1, 2, 3, 4, 65, 66]), 0, 10, used);
  await fh.close();

  spill = await AuditSpill.open(path, 8192);
  log = await AuditLog.open(store, 100_000, spill);
  t.equal(log.lastSeq, 3, 'numbering goes on after the spilled records');
  t.equal(log.spilled, 2, 'the disk is still full: they stay in the spill');
  t.same(
    (await log.query()).map((r) => r.reason),
    ['stored', 'spilled a', 'spilled b'],
  );
  sw.full = false;
  await new Promise((r) => setTimeout(r, 1300));
  t.equal(log.spilled, 0, 'moved into the store by itself within a second or so');
  const rec = await log.append(refusal('next'));
  t.equal(rec.seq, 4);
  await log.close();
  const last = await AuditLog.open(store, 100_000, await AuditSpill.open(path, 8192));
  t.same(
    (await last.query()).map((r) => [r.seq, r.reason]),
    [
      [1, 'stored'],
      [2, 'spilled a'],
      [3, 'spilled b'],
      [4, 'next'],
    ],
  );
  await last.close();
});
