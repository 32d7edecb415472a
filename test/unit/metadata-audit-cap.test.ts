// Metadata refusals are audited a few per port per second; the rest of a
// flood is folded into one metadata.suppressed record per port, so a guest
// sending refused requests as fast as it can cannot fill the audit log.
import pino from 'pino';
import t from 'tap';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { MetadataService, type MetadataServiceOptions } from '../../agent/metadata/service.js';
import { MemoryStore } from '../../agent/store/memory-store.js';

t.test('refusals past the per-port cap are summarised, per port and per second', async (t) => {
  const store = new MemoryStore();
  const audit = await AuditLog.open(store);
  let now = 1_000_000;
  // refused() and flushAudit() use only the audit log and the clock.
  const service = new MetadataService({
    audit,
    log: pino({ level: 'silent' }),
    auditPerPort: 3,
    auditTotal: 100,
    now: () => now,
  } as unknown as MetadataServiceOptions);
  const refuse = (port: string, reason = 'Host "x" is not the metadata service') =>
    service.refused('n', { ip: '10.0.0.5', status: 403, reason, path: 'GET /', port });

  for (let i = 0; i < 50; i++) await refuse('p1');
  await refuse('p2');
  await refuse('p1', 'token not issued to this instance');
  const written = await audit.query({ event: 'metadata.request', limit: 1000 });
  t.equal(written.filter((r) => r.port === 'p1').length, 3, 'three records for the flooding port');
  t.equal(written.filter((r) => r.port === 'p2').length, 1, 'the quiet port is recorded in full');

  await service.flushAudit();
  const [summary, ...more] = await audit.query({ event: 'metadata.suppressed', limit: 10 });
  t.same(more, [], 'one summary');
  t.match(summary, {
    outcome: 'refused',
    network: 'n',
    port: 'p1',
    detail: {
      count: 48,
      reasons: { 'Host "x" is not the metadata service': 47, 'token not issued to this instance': 1 },
    },
  });

  now += 1000;
  await refuse('p1');
  t.equal(
    (await audit.query({ event: 'metadata.request', limit: 1000 })).filter((r) => r.port === 'p1').length,
    4,
    'a new second, a new allowance',
  );
  await service.flushAudit();
  t.equal(
    (await audit.query({ event: 'metadata.suppressed', limit: 10 })).length,
    1,
    'nothing more to summarise',
  );
});
