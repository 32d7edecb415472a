// Acceptance (events): through a real berthd and endpoint, with real curl in
// netns guests. `berthctl instance notice` shows at EC2's
// meta-data/events/maintenance/scheduled and at /berth/events on the guest's
// very next read, with a new ETag; a host drain shows on every guest,
// including one created after it; the guest acknowledges with a POST, the ack
// is listed and audited with the observed identity; another guest acking it,
// an unknown id and a proxied ack are refused and audited; everything is
// still there after berthd restarts.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Notice, NoticeList } from '../../agent/api/notice-types.js';
import { removePrefixed } from '../helpers/berthd.js';
import { isRoot, startLab } from '../helpers/hostnet_lab.js';
import { curl, mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const etag = (headers: string) => /^etag: (.*)$/im.exec(headers)?.[1]?.trim();
const SCHEDULED = '/latest/meta-data/events/maintenance/scheduled';
const prefix = `me${randomBytes(1).toString('hex')}`;
t.teardown(() => removePrefixed(prefix));
const dir = await mkdtemp(join(tmpdir(), 'berth-me-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const where = { prefix, stateDir: join(dir, 'state'), socket: join(dir, 'berthd.sock') };
let lab = await startLab(t, where);
await lab.network('men', '10.86.0.0/24');
const a = await mdGuest(lab, 'mea', 'men');
const b = await mdGuest(lab, 'meb', 'men');
const inAnHour = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');

t.test('a notice reaches the guest at both paths at once, and it acknowledges it', async (t) => {
  const e0 = await curl(a.netns, SCHEDULED);
  t.same([e0.status, e0.body], [200, '[]\n'], 'nothing scheduled: []');
  const b0 = await curl(a.netns, '/berth/events');
  t.equal(b0.body, '{"events":[]}\n');

  const bad = await lab.ctl(['instance', 'notice', 'mea', '--maintenance', '2001-01-01T00:00:00Z', '--json']);
  t.equal(bad.code, 1, 'a time in the past is refused');
  t.match(JSON.parse(bad.stdout), { error: { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'at' } });
  const bad2 = await lab.ctl(['instance', 'notice', 'mea', '--maintenance', 'next tuesday', '--json']);
  t.match(JSON.parse(bad2.stdout), { error: { field: 'at', message: /ISO 8601/ } });

  const started = Date.now();
  const n = await lab.json<Notice>([
    'instance',
    'notice',
    'mea',
    '--maintenance',
    inAnHour,
    '--code',
    'system-reboot',
    '--description',
    'kernel update',
  ]);
  const ec2 = await curl(a.netns, SCHEDULED);
  t.comment(`notice to read: ${Date.now() - started} ms (berthctl and curl process starts included)`);
  const rows = JSON.parse(ec2.body) as Record<string, string>[];
  t.equal(rows.length, 1, 'the very next read has it');
  t.same(Object.keys(rows[0] ?? {}).sort(), [
    'Code',
    'Description',
    'EventId',
    'NotAfter',
    'NotBefore',
    'State',
  ]);
  t.match(rows[0], { Code: 'system-reboot', Description: 'kernel update', EventId: n.id, State: 'active' });
  t.match(rows[0]?.NotBefore, /^\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  t.equal(Date.parse(rows[0]?.NotBefore ?? ''), Date.parse(inAnHour));
  const b1 = await curl(a.netns, '/berth/events');
  t.equal(JSON.parse(b1.body).events[0].id, n.id);
  t.not(etag(b1.headers), etag(b0.headers), 'the ETag changed with the notice');
  t.equal((await curl(a.netns, '/berth/events', ['-H', `If-None-Match: ${etag(b1.headers)}`])).status, 304);
  t.equal(JSON.parse((await curl(b.netns, '/berth/events')).body).events.length, 0, 'not on another guest');

  // Refused acks: another guest's, an unknown id, a proxied one. Each audited.
  const foreign = await curl(b.netns, `/berth/events/${n.id}/ack`, ['-X', 'POST']);
  t.equal(foreign.status, 404, "another instance's notice cannot be acknowledged");
  const unknown = await curl(a.netns, '/berth/events/instance-event-00000000000000000/ack', ['-X', 'POST']);
  t.equal(unknown.status, 404);
  const proxied = await curl(a.netns, `/berth/events/${n.id}/ack`, [
    '-X',
    'POST',
    '-H',
    'X-Forwarded-For: 1.2.3.4',
  ]);
  t.equal(proxied.status, 403);

  const ack = await curl(a.netns, `/berth/events/${n.id}/ack`, ['-X', 'POST']);
  t.same([ack.status, ack.body], [200, 'acknowledged\n']);
  const b2 = await curl(a.netns, '/berth/events');
  t.ok(JSON.parse(b2.body).events[0].acknowledged_at, 'the guest sees its ack');
  t.not(etag(b2.headers), etag(b1.headers));

  const listed = await lab.json<NoticeList>(['instance', 'notice', 'mea']);
  t.match(listed.notices[0]?.acks[a.id], {
    mac: a.mac,
    ip: a.ip,
    port: a.port,
    identity: new RegExp(`instance:${a.id}`),
  });

  const { records } = await lab.d.client.audit({ limit: 2000 });
  const acked = records.filter((r) => r.event === 'metadata.event.ack');
  t.equal(acked.length, 1, 'the ack is audited once');
  t.match(acked[0], { outcome: 'allowed', instance: a.id, mac: a.mac, port: a.port, ip: a.ip });
  const refused = records.filter(
    (r) =>
      r.event === 'metadata.request' && r.outcome === 'refused' && String(r.path).includes('/berth/events/'),
  );
  t.ok(
    refused.some(
      (r) => r.instance === b.id && r.mac === b.mac && r.path === `POST /berth/events/${n.id}/ack`,
    ),
    "the foreign ack is audited with the acker's observed identity",
  );
  t.ok(
    refused.some((r) => String(r.path).includes('instance-event-00000000000000000')),
    'the unknown id too',
  );
  t.ok(
    refused.some((r) => String(r.reason).includes('X-Forwarded-For')),
    'and the proxied one',
  );
  t.ok(
    records.some((r) => r.event === 'admin.instance.notice' && r.instance === a.id),
    'scheduling is audited',
  );
});

t.test(
  'a host drain shows on every guest, present and future, until cleared; all of it survives a restart',
  async (t) => {
    const d = await lab.json<Notice>(['host', 'notice', '--drain', inAnHour, '--description', 'rack move']);
    t.equal(d.code, 'instance-stop');
    for (const g of [a, b]) {
      const rows = JSON.parse((await curl(g.netns, SCHEDULED)).body) as { EventId: string }[];
      t.ok(
        rows.some((r) => r.EventId === d.id),
        `${g.name} sees the drain`,
      );
    }
    const c = await mdGuest(lab, 'mec', 'men');
    const rows = JSON.parse((await curl(c.netns, SCHEDULED)).body) as { EventId: string }[];
    t.same(
      rows.map((r) => r.EventId),
      [d.id],
      'a guest created after the drain has it too',
    );
    t.equal(
      (await curl(c.netns, `/berth/events/${d.id}/ack`, ['-X', 'POST'])).status,
      200,
      'each guest acks a drain',
    );

    await lab.d.stop();
    lab = await startLab(t, where);
    const after = JSON.parse((await curl(c.netns, '/berth/events')).body).events as {
      id: string;
      acknowledged_at?: string;
    }[];
    t.same(
      after.map((e) => e.id),
      [d.id],
      'the drain is still there after a restart',
    );
    t.ok(after[0]?.acknowledged_at, 'with its ack');
    t.equal(
      JSON.parse((await curl(a.netns, '/berth/events')).body).events.length,
      2,
      "and a's own notice too",
    );

    const cleared = await lab.json<{ cleared: string[] }>(['host', 'notice', '--clear']);
    t.same(cleared.cleared, [d.id]);
    for (const g of [b, c])
      t.equal((await curl(g.netns, SCHEDULED)).body, '[]\n', `${g.name}: the drain is gone at once`);
    const own = (await lab.json<NoticeList>(['instance', 'notice', 'mea'])).notices;
    t.equal(own.length, 1);
    await lab.json(['instance', 'notice', 'mea', '--cancel', own[0]?.id as string]);
    t.equal((await curl(a.netns, SCHEDULED)).body, '[]\n', 'cancelled: gone at once');
    const { records } = await lab.d.client.audit({ limit: 2000 });
    for (const ev of ['admin.host.drain', 'admin.host.drain.clear', 'admin.instance.notice.cancel'])
      t.ok(
        records.some((r) => r.event === ev),
        `${ev} audited`,
      );
  },
);
