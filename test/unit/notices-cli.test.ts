// berthctl instance notice / host notice against an in-process admin API on
// a temporary unix socket: schedule, list (text and JSON), cancel, clear,
// field-naming errors, usage errors, and the audit records of each change.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { buildAdminServer } from '../../agent/api/server.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { runCli } from '../../agent/cli/program.js';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { buildServices } from '../../agent/daemon/services.js';
import { startMetadata } from '../../agent/metadata/wire.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { FakeDriver } from '../fakes/fake-driver.js';
import { FakeObserver } from '../fakes/fake-observer.js';

t.test('notices through berthctl', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-mecli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const log = pino({ level: 'silent' });
  const services = await buildServices(
    store,
    { ...EMBEDDED_DEFAULT, networks: [], name_prefix: 'tme' },
    log,
    () => new FakeDriver(),
    () => new FakeObserver(),
  );
  const audit = await AuditLog.open(store);
  const md = await startMetadata({ store, audit, services, hostId: () => 'hv', log });
  const api = await buildAdminServer(
    { status: { status: async () => ({}) as never }, audit, ...services, notices: md.notices },
    log,
  );
  const socket = join(dir, 'api.sock');
  await api.listen({ path: socket });
  t.teardown(() => api.close());
  const cli = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(
      ['--socket', socket, ...args],
      { out: (s) => out.push(s), err: (s) => err.push(s) },
      'test',
    );
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
  t.equal((await cli('network', 'create', 'n', '--subnet', '10.6.0.0/24')).code, 0);
  t.equal((await cli('instance', 'create', 'g1', '--network', 'n')).code, 0);
  const at = new Date(Date.now() + 86400_000).toISOString();

  const none = await cli('instance', 'notice', 'g1');
  t.same([none.code, none.out], [0, 'no notices']);
  const past = await cli('instance', 'notice', 'g1', '--maintenance', '2000-01-01T00:00:00Z', '--json');
  t.equal(past.code, 1);
  t.match(JSON.parse(past.out), {
    error: { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'at', message: /not in the future/ },
  });
  const badCode = await cli('instance', 'notice', 'g1', '--maintenance', at, '--code', 'explode', '--json');
  t.match(JSON.parse(badCode.out), { error: { field: 'code' } });
  const both = await cli('instance', 'notice', 'g1', '--maintenance', at, '--cancel', 'x');
  t.equal(both.code, 2, 'two verbs at once: usage');
  const missing = await cli('instance', 'notice', 'nope', '--maintenance', at);
  t.equal(missing.code, 1, 'unknown instance');

  const made = await cli('instance', 'notice', 'g1', '--maintenance', at, '--description', 'disk swap');
  t.equal(made.code, 0);
  t.match(made.out, /^notice instance-event-[0-9a-f]{17} for g1: system-maintenance /);
  const id = /instance-event-[0-9a-f]{17}/.exec(made.out)?.[0] as string;
  const listed = await cli('instance', 'notice', 'g1');
  t.match(listed.out, /ID\s+SCOPE\s+CODE/);
  t.match(listed.out, new RegExp(`${id}\\s+instance\\s+system-maintenance .* no\\s+disk swap`));

  const drain = await cli('host', 'notice', '--drain', at, '--json');
  const d = JSON.parse(drain.out);
  t.match(d, { scope: 'host', code: 'instance-stop' });
  const all = JSON.parse((await cli('instance', 'notice', 'g1', '--json')).out);
  t.equal(all.notices.length, 2, "the instance's list has its own notice and the drain");
  t.equal(JSON.parse((await cli('host', 'notice', '--json')).out).notices.length, 1);
  t.equal(
    (await cli('instance', 'notice', 'g1', '--cancel', d.id)).code,
    1,
    'a drain is not cancelled through an instance',
  );
  t.match((await cli('host', 'notice', '--clear')).out, `cleared ${d.id}`);
  t.match((await cli('host', 'notice', '--clear')).out, 'no drain to clear');
  t.match((await cli('instance', 'notice', 'g1', '--cancel', id)).out, `notice ${id} cancelled`);
  t.equal((await cli('instance', 'notice', 'g1')).out, 'no notices');

  const events = (await audit.query({ outcome: 'allowed' })).map((r) => r.event);
  for (const ev of [
    'admin.instance.notice',
    'admin.host.drain',
    'admin.host.drain.clear',
    'admin.instance.notice.cancel',
  ])
    t.ok(events.includes(ev), `${ev} audited`);
  const refused = await audit.query({ outcome: 'refused' });
  t.ok(
    refused.some((r) => /not in the future/.test(r.reason)),
    'a refused notice is audited too',
  );
});
