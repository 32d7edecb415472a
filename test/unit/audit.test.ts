import t from 'tap';
import { AuditLog, auditKey } from '../../agent/audit/audit-log.js';
import { MemoryStore } from '../../agent/store/memory-store.js';

t.test('records get contiguous sequence numbers and survive reopening', async (t) => {
  const store = new MemoryStore();
  const log = await AuditLog.open(store);
  await log.append({
    event: 'dhcp.discover',
    outcome: 'refused',
    reason: 'MAC not assigned',
    mac: '0a:00:00:00:00:09',
    port: 'bthpdeadbeef0',
  });
  await log.append({ event: 'admin.request', outcome: 'refused', reason: 'bad field' });
  const again = await AuditLog.open(store);
  t.equal(again.lastSeq, 2);
  const rec = await again.append({ event: 'metadata.get', outcome: 'refused', reason: 'no neighbour' });
  t.equal(rec.seq, 3);
  t.same(
    (await again.query()).map((r) => r.seq),
    [1, 2, 3],
  );
  t.equal((await again.query())[0]?.mac, '0a:00:00:00:00:09');
});

t.test('query filters, pages and returns the newest records oldest first', async (t) => {
  const log = await AuditLog.open(new MemoryStore());
  for (let i = 0; i < 10; i++)
    await log.append({
      event: i % 2 ? 'dhcp.discover' : 'metadata.get',
      outcome: i % 3 ? 'refused' : 'info',
      reason: `r${i}`,
    });
  t.same(
    (await log.query({ limit: 3 })).map((r) => r.seq),
    [8, 9, 10],
  );
  t.same(
    (await log.query({ after: 7 })).map((r) => r.seq),
    [8, 9, 10],
  );
  t.same(
    (await log.query({ event: 'dhcp.discover', limit: 2 })).map((r) => r.seq),
    [8, 10],
  );
  t.ok((await log.query({ outcome: 'info' })).every((r) => r.outcome === 'info'));
});

t.test('retention drops the oldest record per append once full', async (t) => {
  const store = new MemoryStore();
  const log = await AuditLog.open(store, 3);
  for (let i = 0; i < 5; i++) await log.append({ event: 'e', outcome: 'info', reason: String(i) });
  t.same(
    (await log.query()).map((r) => r.seq),
    [3, 4, 5],
  );
  t.equal(await store.get(auditKey(2)), undefined);
});

t.test('follow sees new records until unsubscribed', async (t) => {
  const log = await AuditLog.open(new MemoryStore());
  const seen: number[] = [];
  const stop = log.follow((r) => seen.push(r.seq));
  await log.append({ event: 'e', outcome: 'info', reason: 'a' });
  stop();
  await log.append({ event: 'e', outcome: 'info', reason: 'b' });
  t.same(seen, [1]);
});

t.test('a write that fails leaves no hole in the sequence', async (t) => {
  const store = new MemoryStore();
  const log = await AuditLog.open(store);
  await log.append({ event: 'dhcp.discover', outcome: 'refused', reason: 'one' });
  const batch = store.batch.bind(store);
  let failures = 1;
  store.batch = async (ops, opts) => {
    if (failures-- > 0) throw new Error('No space left on device');
    return batch(ops, opts);
  };
  // Three appends at once: the first write (holding "two") fails, the next lands.
  const settled = await Promise.allSettled(
    ['two', 'three', 'four'].map((reason) =>
      log.append({ event: 'dhcp.discover', outcome: 'refused', reason }),
    ),
  );
  t.same(
    settled.map((r) => (r.status === 'fulfilled' ? r.value.seq : 'refused')),
    ['refused', 2, 3],
    'the failed record took no number; the ones after it follow on',
  );
  t.equal(log.lastSeq, 3);
  const next = await log.append({ event: 'dhcp.discover', outcome: 'refused', reason: 'five' });
  t.equal(next.seq, 4);
  const again = await AuditLog.open(store);
  t.same(
    (await again.query()).map((r) => [r.seq, r.reason]),
    [
      [1, 'one'],
      [2, 'three'],
      [3, 'four'],
      [4, 'five'],
    ],
  );
});
