// Maintenance notices: validation, EC2's JSON shape, a drain on every
// instance (present and future), the acknowledgement rules, and the HTTP
// surface (both paths, ETag, the ack POST and its refusals) over a backend
// that answers from a real NoticeService, as berthd does.
import t from 'tap';
import type { PolicyRecord } from '../../agent/auth/policy.js';
import { ec2Scheduled, ec2Time } from '../../agent/metadata/events.js';
import { buildMetadataApp, type CallerView, type Refusal } from '../../agent/metadata/http.js';
import { NoticeService, parseFutureTime, validateNotice } from '../../agent/services/notices.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { callerView, H, instanceDoc } from '../helpers/metadata_unit.js';

const NOW = Date.parse('2030-01-01T00:00:00Z');
const who = { ip: '10.77.0.5', mac: '0a:b7:e7:00:00:01', port: 'p1', identity: 'instance:i-aaaa' };

t.test('AT must be ISO 8601 with a zone, and in the future; each failure names its field', async (t) => {
  t.equal(parseFutureTime('at', '2030-01-02T03:04:05Z', NOW), '2030-01-02T03:04:05.000Z');
  t.equal(parseFutureTime('at', '2030-01-02T05:04+02:00', NOW), '2030-01-02T03:04:00.000Z', 'offsets count');
  for (const bad of ['2030-01-02 03:04:05', '2030-01-02T03:04:05', 'tomorrow', '1893456000', ''])
    t.throws(() => parseFutureTime('at', bad, NOW), { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'at' }, bad);
  t.throws(() => parseFutureTime('at', '2029-12-31T23:59:59Z', NOW), {
    field: 'at',
    message: /not in the future/,
  });
  t.throws(
    () => validateNotice({ at: '2030-01-02T00:00:00Z', until: '2030-01-01T12:00:00Z' }, NOW, 'system-reboot'),
    {
      field: 'until',
      message: /after the start/,
    },
  );
  t.throws(() => validateNotice({ at: '2030-01-02T00:00:00Z', code: 'reboot-now' }, NOW, 'system-reboot'), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'code',
  });
  t.throws(
    () => validateNotice({ at: '2030-01-02T00:00:00Z', description: 'two\nlines' }, NOW, 'system-reboot'),
    { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'description' },
  );
  const v = validateNotice({ at: '2030-01-02T00:00:00Z' }, NOW, 'instance-stop');
  t.same(
    v,
    {
      code: 'instance-stop',
      description: '',
      not_before: '2030-01-02T00:00:00.000Z',
      not_after: '2030-01-02T02:00:00.000Z',
    },
    'default code, and a two-hour window',
  );
});

t.test("EC2's exact JSON shape at meta-data/events/maintenance/scheduled", async (t) => {
  t.equal(ec2Time('2019-01-21T09:00:43Z'), '21 Jan 2019 09:00:43 GMT');
  t.equal(ec2Time('2019-02-01T09:00:43Z'), '01 Feb 2019 09:00:43 GMT');
  t.equal(ec2Scheduled([]), '[]\n', 'nothing scheduled: an empty array, as EC2 answers');
  const rows = JSON.parse(
    ec2Scheduled([
      {
        id: 'instance-event-0d59937288b749b32',
        code: 'system-reboot',
        description: 'scheduled reboot',
        notBefore: '2019-01-21T09:00:43Z',
        notAfter: '2019-01-21T09:17:23Z',
        scope: 'instance',
        acknowledgedAt: '2019-01-20T00:00:00Z',
      },
    ]),
  );
  t.same(
    rows,
    [
      {
        NotBefore: '21 Jan 2019 09:00:43 GMT',
        Code: 'system-reboot',
        Description: 'scheduled reboot',
        EventId: 'instance-event-0d59937288b749b32',
        NotAfter: '21 Jan 2019 09:17:23 GMT',
        State: 'active',
      },
    ],
    'exactly EC2 keys, no berth extras',
  );
});

t.test(
  'a drain applies to every instance, present and future, until cleared; acks per instance',
  async (t) => {
    const store = new MemoryStore();
    let now = NOW;
    const notices = new NoticeService(store, () => now);
    const told: (string | undefined)[] = [];
    notices.onChange((i) => told.push(i));
    const own = await notices.schedule('i-aaaa', { at: '2030-01-03T00:00:00Z', code: 'system-reboot' });
    t.match(own.id, /^instance-event-[0-9a-f]{17}$/);
    const drain = await notices.schedule(undefined, { at: '2030-01-02T00:00:00Z', description: 'rack move' });
    t.equal(drain.code, 'instance-stop');
    t.same(
      told,
      ['i-aaaa', undefined],
      'an instance notice names its instance; a drain names none (everyone)',
    );
    t.same(
      notices.viewFor('i-aaaa').map((e) => e.id),
      [drain.id, own.id],
      'own and drain, by start',
    );
    t.same(
      notices.viewFor('i-never-seen').map((e) => e.id),
      [drain.id],
      'an instance created later has the drain',
    );
    t.same(
      notices.viewFor('i-bbbb').map((e) => e.scope),
      ['host'],
      "no one else's own notice",
    );

    // Ack rules: own ok (once), a drain ok, another's own and an unknown id: 404 alike.
    t.equal((await notices.ack('i-bbbb', own.id, who)).status, 404, "another instance's notice is refused");
    t.equal((await notices.ack('i-aaaa', 'instance-event-00000000000000000', who)).status, 404, 'unknown id');
    t.equal((await notices.ack('i-aaaa', '../../x', who)).status, 404, 'malformed id');
    const ok = await notices.ack('i-aaaa', own.id, who);
    t.equal(ok.status, 200);
    t.equal(ok.message, 'acknowledged');
    t.match(
      (await notices.ack('i-aaaa', own.id, who)).message,
      /already acknowledged/,
      'twice: the first stands',
    );
    await notices.ack('i-bbbb', drain.id, { ...who, identity: 'instance:i-bbbb' });
    t.ok(notices.viewFor('i-bbbb')[0]?.acknowledgedAt, 'i-bbbb acked the drain');
    t.notOk(notices.viewFor('i-aaaa')[0]?.acknowledgedAt, "i-bbbb's ack of the drain is not i-aaaa's");
    t.equal(notices.viewFor('i-aaaa')[1]?.acknowledgedAt, '2030-01-01T00:00:00.000Z');

    // Durable: a new service over the same store has all of it, acks included.
    const again = new NoticeService(store, () => now);
    await again.load();
    t.same(again.viewFor('i-aaaa'), notices.viewFor('i-aaaa'), 'survives a restart');

    // Cancel: an instance's notice only through its instance, a drain only as the host's.
    await t.rejects(notices.cancel('i-bbbb', own.id), { code: 'BERTH_ERR_NOT_FOUND' });
    await t.rejects(notices.cancel(undefined, own.id), { code: 'BERTH_ERR_NOT_FOUND' });
    await t.rejects(notices.cancel('i-aaaa', drain.id), { code: 'BERTH_ERR_NOT_FOUND' });
    await notices.cancel(undefined, drain.id);
    t.same(notices.viewFor('i-bbbb'), [], 'cleared: gone from everyone');
    // Over: no longer sent (NotAfter passed), still listed for the operator.
    now = Date.parse('2030-01-03T02:00:01Z');
    t.same(notices.viewFor('i-aaaa'), []);
    t.equal(notices.forInstance('i-aaaa').length, 1);
    await notices.forget('i-aaaa');
    t.equal(notices.forInstance('i-aaaa').length, 0, 'a deleted instance takes its notices along');
  },
);

t.test('at most 16 notices per instance', async (t) => {
  const notices = new NoticeService(new MemoryStore(), () => NOW);
  for (let i = 0; i < 16; i++) await notices.schedule('i-aaaa', { at: '2030-01-02T00:00:00Z' });
  await t.rejects(notices.schedule('i-aaaa', { at: '2030-01-02T00:00:00Z' }), { code: 'BERTH_ERR_CONFLICT' });
});

/** The endpoint's HTTP app over berthd's behaviour: views rendered with the notices, acks by NoticeService. */
function harness(
  notices: NoticeService,
  policies: PolicyRecord[] = [],
  tokens: 'optional' | 'required' = 'optional',
) {
  const guests = new Map([
    ['10.77.0.5', { id: 'i-aaaa', mac: '0a:b7:e7:00:00:01' }],
    ['10.77.0.6', { id: 'i-bbbb', mac: '0a:b7:e7:00:00:02' }],
  ]);
  const refusals: Refusal[] = [];
  const viewAt = (ip: string): CallerView => {
    const g = guests.get(ip) as { id: string; mac: string };
    return callerView(instanceDoc(g.id, g.mac, ip, { events: notices.viewFor(g.id) }), policies, tokens);
  };
  const { app } = buildMetadataApp({
    lookup: (ip) => ({ ok: true, view: viewAt(ip) }),
    refuse: async (r) => {
      refusals.push(r);
    },
    identityToken: async () => ({ status: 500, message: 'no' }),
    postPassword: async () => ({ status: 500, message: 'no' }),
    ackEvent: async (v, id) =>
      notices.ack(v.instance, id, { ip: v.ip, mac: v.mac, port: v.port, identity: v.identity }),
  });
  return { app, refusals };
}

t.test('HTTP: both paths, the ETag changes with the notice, ack own, refuse foreign', async (t) => {
  const notices = new NoticeService(new MemoryStore(), () => NOW);
  const { app, refusals } = harness(notices);
  const get = (url: string, ip = '10.77.0.5', headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url, headers: { ...H, ...headers }, remoteAddress: ip });
  const post = (url: string, ip = '10.77.0.5', headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, headers: { ...H, ...headers }, remoteAddress: ip });

  const empty = await get('/latest/meta-data/events/maintenance/scheduled');
  t.equal(empty.statusCode, 200);
  t.equal(empty.body, '[]\n');
  t.ok((await get('/latest/meta-data/')).body.split('\n').includes('events/'), 'meta-data lists events/');
  t.equal((await get('/berth/events')).body, '{"events":[]}\n');
  const etag0 = (await get('/berth/events')).headers.etag;

  const n = await notices.schedule('i-aaaa', {
    at: '2030-01-05T10:00:00Z',
    code: 'system-reboot',
    description: 'kernel',
  });
  const ec2 = JSON.parse((await get('/latest/meta-data/events/maintenance/scheduled')).body);
  t.same(ec2[0], {
    NotBefore: '05 Jan 2030 10:00:00 GMT',
    Code: 'system-reboot',
    Description: 'kernel',
    EventId: n.id,
    NotAfter: '05 Jan 2030 12:00:00 GMT',
    State: 'active',
  });
  const berth1 = await get('/berth/events');
  t.equal(JSON.parse(berth1.body).events[0].id, n.id);
  t.not(berth1.headers.etag, etag0, 'the ETag changes when a notice comes');
  t.equal(
    (await get('/berth/events', '10.77.0.5', { 'if-none-match': String(berth1.headers.etag) })).statusCode,
    304,
  );
  t.equal(
    JSON.parse((await get('/berth/events', '10.77.0.6')).body).events.length,
    0,
    'not on another guest',
  );

  // Foreign and unknown acks: refused (404) and handed to the audit path with the caller's identity.
  const foreign = await post(`/berth/events/${n.id}/ack`, '10.77.0.6');
  t.equal(foreign.statusCode, 404);
  t.match(refusals.at(-1), {
    status: 404,
    view: { instance: 'i-bbbb' },
    path: `POST /berth/events/${n.id}/ack`,
  });
  t.equal((await post('/berth/events/instance-event-00000000000000000/ack')).statusCode, 404);
  t.equal(refusals.length, 2);
  // A proxied write is not the guest's own request.
  t.equal(
    (await post(`/berth/events/${n.id}/ack`, '10.77.0.5', { 'x-forwarded-for': '1.2.3.4' })).statusCode,
    403,
  );
  t.equal(refusals.length, 3);
  t.notOk(notices.viewFor('i-aaaa')[0]?.acknowledgedAt, 'nothing refused was recorded');

  const ok = await post(`//berth/events/${n.id}/ack/`);
  t.equal(ok.statusCode, 200, 'own ack, through path normalization');
  const acked = await get('/berth/events');
  t.ok(JSON.parse(acked.body).events[0].acknowledged_at, 'the guest sees its ack');
  t.not(acked.headers.etag, berth1.headers.etag, 'and the ETag moves with it');
  t.equal(
    (
      await app.inject({
        method: 'PUT',
        url: `/berth/events/${n.id}/ack`,
        headers: H,
        remoteAddress: '10.77.0.5',
      })
    ).headers.allow,
    'GET, POST',
  );
});

t.test('HTTP: a policy may deny acking (write:events) or reading (read:events); tokens hold', async (t) => {
  const notices = new NoticeService(new MemoryStore(), () => NOW);
  const n = await notices.schedule(undefined, { at: '2030-01-05T10:00:00Z' });
  const deny: PolicyRecord = {
    name: 'no-events',
    identities: ['*'],
    allow: [],
    deny: ['write:events', 'read:events'],
  };
  const { app, refusals } = harness(notices, [deny]);
  const r = await app.inject({
    method: 'POST',
    url: `/berth/events/${n.id}/ack`,
    headers: H,
    remoteAddress: '10.77.0.5',
  });
  t.equal(r.statusCode, 403);
  t.match(r.body, /denied by policy "no-events"/);
  t.equal(
    (await app.inject({ method: 'GET', url: '/berth/events', headers: H, remoteAddress: '10.77.0.5' }))
      .statusCode,
    403,
  );
  t.equal(
    (
      await app.inject({
        method: 'GET',
        url: '/latest/meta-data/events/maintenance/scheduled',
        headers: H,
        remoteAddress: '10.77.0.5',
      })
    ).statusCode,
    403,
  );
  t.equal(refusals.length, 3);
  t.notOk(notices.viewFor('i-aaaa')[0]?.acknowledgedAt);

  const required = harness(notices, [], 'required');
  const r2 = await required.app.inject({
    method: 'POST',
    url: `/berth/events/${n.id}/ack`,
    headers: H,
    remoteAddress: '10.77.0.5',
  });
  t.equal(r2.statusCode, 401, 'an instance that requires tokens needs one to ack too');
  t.notOk(notices.viewFor('i-aaaa')[0]?.acknowledgedAt);
});
