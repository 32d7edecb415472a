// berthctl instance notice / host notice against an in-process admin API on
// a temporary unix socket: schedule, list (text and JSON), cancel, clear,
// field-naming errors, usage errors, and the audit records of each change.
import t from 'tap';
import { startMetadata } from '../../agent/metadata/wire.js';
import { startAdminCli } from '../helpers/admin_cli.js';

t.test('notices through berthctl', async (t) => {
  const { audit, cli } = await startAdminCli(t, {
    prefix: 'tme',
    extra: async ({ store, audit, services, log }) => ({
      notices: (await startMetadata({ store, audit, services, hostId: () => 'hv', log })).notices,
    }),
  });
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
