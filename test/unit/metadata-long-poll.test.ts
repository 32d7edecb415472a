// Long-poll (wait_for_change) and recursive=true through fastify inject: the
// parameters and their bounds, waking only the guest named, the answer on
// timeout, the bound on waiters, and the recursive JSON's shape.
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { PolicyRecord } from '../../agent/auth/policy.js';
import { buildMetadataApp, type CallerView, type Refusal } from '../../agent/metadata/http.js';
import { MAX_TIMEOUT_SEC, parseMetadataQuery, Waiters } from '../../agent/metadata/long-poll.js';
import { instanceDoc as doc, H, callerView as view } from '../helpers/metadata_unit.js';

const MAC = '0a:b7:e7:00:00:01';
const IP = '127.0.0.1'; // inject's source address

function lab(first: CallerView, bounds = { perGuest: 16, total: 1024 }) {
  const state = { current: first, refusals: [] as Refusal[], lookups: 0 };
  const waits = new Waiters(bounds);
  const { app } = buildMetadataApp(
    {
      lookup: () => {
        state.lookups += 1;
        return { ok: true, view: state.current };
      },
      refuse: async (r) => {
        state.refusals.push(r);
      },
      identityToken: async () => ({ status: 200, message: 'ok', token: 'jwt' }),
      postPassword: async () => ({ status: 200, message: 'ok' }),
    },
    undefined,
    undefined,
    waits,
  );
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  return { app, state, waits, get };
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

t.test('parameters: values, bounds, and the parameter named when bad', async (t) => {
  t.same(parseMetadataQuery('wait_for_change=true'), { wait: true, recursive: false, timeoutSec: 60 });
  t.same(parseMetadataQuery('wait_for_change=true&last_etag=%22abc_-1%22&timeout_sec=3600&recursive=true'), {
    wait: true,
    recursive: true,
    timeoutSec: 3600,
    lastEtag: 'abc_-1',
  });
  t.same(parseMetadataQuery('last_etag=abc&wait_for_change=true'), {
    wait: true,
    recursive: false,
    timeoutSec: 60,
    lastEtag: 'abc',
  });
  t.same(parseMetadataQuery('audience=x'), { wait: false, recursive: false, timeoutSec: 60 });
  for (const [q, name] of [
    ['wait_for_change=yes', 'wait_for_change'],
    ['recursive=1', 'recursive'],
    ['wait_for_change=true&timeout_sec=0', 'timeout_sec'],
    [`wait_for_change=true&timeout_sec=${MAX_TIMEOUT_SEC + 1}`, 'timeout_sec'],
    ['wait_for_change=true&timeout_sec=1.5', 'timeout_sec'],
    ['wait_for_change=true&timeout_sec=-1', 'timeout_sec'],
    ['wait_for_change=true&last_etag=a%20b', 'last_etag'],
    ['wait_for_change=true&last_etag=', 'last_etag'],
    ['timeout_sec=5', 'wait_for_change'],
  ] as const) {
    const r = parseMetadataQuery(q);
    t.type(r, 'string', `${q} is refused`);
    t.match(r as string, name, `naming ${name}`);
  }
  const { get, state } = lab(view(doc('i-aaaa', MAC, '10.77.0.5')));
  const r = await get('/latest/meta-data/instance-id?wait_for_change=true&timeout_sec=99999');
  t.equal(r.statusCode, 400);
  t.match(r.body, /timeout_sec/);
  t.equal(state.refusals.at(-1)?.status, 400, 'the 400 is audited');
});

t.test('an update of the guest wakes its waiter with the new value; others are not looked up', async (t) => {
  const l = lab(view(doc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'one' } })));
  const path = '/latest/meta-data/tags/instance/env';
  const first = await l.get(path);
  t.equal(first.body, 'one');
  const e1 = first.headers.etag as string;
  const pending = l.get(`${path}?wait_for_change=true&last_etag=${encodeURIComponent(e1)}&timeout_sec=30`);
  await until(() => l.waits.size === 1);
  t.equal(l.waits.size, 1, 'the request waits');
  const before = l.state.lookups;
  t.equal(l.waits.wake(['10.99.0.1'], ['0a:00:00:00:00:99']), 0, 'another guest: no waiter re-checks');
  t.equal(l.state.lookups, before, 'and no lookup was made');
  // The same value re-rendered (a change elsewhere): the ETag did not move, keep waiting.
  l.state.current = view(doc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'one', other: 'x' } }));
  t.equal(l.waits.wake([IP]), 1);
  await until(() => l.state.lookups > before);
  t.equal(l.waits.size, 1, 'an unchanged value keeps the waiter');
  l.state.current = view(doc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'two' } }));
  t.equal(l.waits.wake(undefined, [MAC.toUpperCase()]), 1, 'woken by its MAC too');
  const r = await pending;
  t.same([r.statusCode, r.body], [200, 'two'], 'woken with the new value');
  t.not(r.headers.etag, e1, 'and its new ETag');
  t.equal(l.waits.size, 0);
});

t.test('without last_etag: waits for the next change; a stale last_etag answers at once', async (t) => {
  const l = lab(view(doc('i-aaaa', MAC, '10.77.0.5')));
  const stale = await l.get('/latest/meta-data/instance-id?wait_for_change=true&last_etag=nope');
  t.same([stale.statusCode, stale.body], [200, 'i-aaaa'], 'a tag that is not the current one: at once');
  const pending = l.get('/latest/meta-data/instance-id?wait_for_change=true&timeout_sec=30');
  await until(() => l.waits.size === 1);
  t.equal(l.waits.size, 1);
  l.state.current = view(doc('i-bbbb', MAC, '10.77.0.5'));
  l.waits.wake();
  t.equal((await pending).body, 'i-bbbb');
});

t.test('timeout: the current value, 200, as GCE answers', async (t) => {
  const l = lab(view(doc('i-aaaa', MAC, '10.77.0.5')));
  const started = Date.now();
  const r = await l.get('/latest/meta-data/instance-id?wait_for_change=true&timeout_sec=1');
  t.same([r.statusCode, r.body], [200, 'i-aaaa']);
  t.ok(Date.now() - started >= 950, 'after the timeout');
  t.equal(l.waits.size, 0, 'the waiter is gone');
});

t.test('a denied path is refused at once, never waited on', async (t) => {
  const policies: PolicyRecord[] = [
    { name: 'no-ud', identities: ['*'], allow: [], deny: ['read:user-data'] },
  ];
  const d = doc('i-aaaa', MAC, '10.77.0.5', { userData: Buffer.from('secret') });
  const l = lab(view(d, policies));
  const r = await l.get('/latest/user-data?wait_for_change=true&timeout_sec=30');
  t.equal(r.statusCode, 403);
  t.equal(l.waits.size, 0);
  t.equal(l.state.refusals.at(-1)?.status, 403, 'audited');
  const tok = await l.get('/berth/identity-token?audience=x&wait_for_change=true');
  t.not(tok.statusCode, 200, 'an identity token is never waited on');
});

t.test('bounds: past the per-guest bound, 429, audited with a count', async (t) => {
  const l = lab(view(doc('i-aaaa', MAC, '10.77.0.5')), { perGuest: 2, total: 10 });
  const url = '/latest/meta-data/instance-id?wait_for_change=true&timeout_sec=30';
  const held = [l.get(url), l.get(url)];
  await until(() => l.waits.size === 2);
  const over = await l.get(url);
  t.equal(over.statusCode, 429);
  t.match(over.body, /2 waiting requests/);
  const again = await l.get(url);
  t.equal(again.statusCode, 429);
  const recs = l.state.refusals.filter((r) => r.status === 429);
  t.equal(recs.length, 1, 'folded: one record in the second');
  t.equal(recs[0]?.count, 1);
  l.state.current = view(doc('i-cccc', MAC, '10.77.0.5'));
  l.waits.wake([IP]);
  for (const r of await Promise.all(held)) t.equal(r.body, 'i-cccc');
  const total = new Waiters({ perGuest: 5, total: 1 });
  t.equal(total.add({ ip: 'a', mac: 'm1', recheck: () => undefined }), undefined);
  t.equal(total.add({ ip: 'b', mac: 'm2', recheck: () => undefined }), 'total', 'the total bound too');
});

t.test('recursive=true: a directory as JSON, with its own ETag; can be waited on', async (t) => {
  const policies: PolicyRecord[] = [
    { name: 'no-mac', identities: ['*'], allow: [], deny: ['read:meta-data/mac'] },
  ];
  const l = lab(view(doc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'one' } }), policies));
  const r = await l.get('/latest/meta-data/?recursive=true');
  t.equal(r.statusCode, 200);
  t.match(r.headers['content-type'], /application\/json/);
  const j = JSON.parse(r.body) as Record<string, unknown>;
  t.equal(j['instance-id'], 'i-aaaa', 'keys are the path segments');
  t.same((j.tags as Record<string, unknown>).instance, { env: 'one' }, 'directories nest');
  t.ok(Array.isArray(j['public-keys']), '0..n-1 children make an array');
  t.notOk('mac' in j, 'a denied leaf is left out');
  t.same(JSON.parse((await l.get('/latest/meta-data?recursive=true')).body), j, 'both spellings');
  t.equal((await l.get('/latest/meta-data/instance-id?recursive=true')).body, 'i-aaaa', 'a leaf is itself');
  const berth = JSON.parse((await l.get('/berth/?recursive=true')).body) as Record<string, unknown>;
  t.match(berth.identity, { instance: 'i-aaaa', ip: '10.77.0.5' }, 'a JSON leaf is embedded as JSON');
  const tag = r.headers.etag as string;
  t.not(tag, (await l.get('/latest/meta-data/')).headers.etag, 'its own ETag');
  const pending = l.get(
    `/latest/meta-data/?recursive=true&wait_for_change=true&last_etag=${encodeURIComponent(tag)}`,
  );
  await until(() => l.waits.size === 1);
  l.state.current = view(doc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'two' } }), policies);
  l.waits.wake([IP]);
  const w = await pending;
  t.equal((JSON.parse(w.body) as { tags: { instance: { env: string } } }).tags.instance.env, 'two');
  t.not(w.headers.etag, tag);
});

t.test('a guest that hangs up frees its place under the bound', async (t) => {
  const l = lab(view(doc('i-aaaa', MAC, '10.77.0.5')), { perGuest: 1, total: 10 });
  await l.app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => l.app.close());
  const { port } = l.app.server.address() as AddressInfo;
  const req = request({
    host: '127.0.0.1',
    port,
    path: '/latest/meta-data/instance-id?wait_for_change=true&timeout_sec=30',
    headers: H,
  });
  req.on('error', () => undefined);
  req.end();
  await until(() => l.waits.size === 1);
  t.equal(l.waits.size, 1, 'waiting');
  req.destroy();
  await until(() => l.waits.size === 0);
  t.equal(l.waits.size, 0, 'gone once the guest hung up');
  const next = await l.get('/latest/meta-data/instance-id?wait_for_change=true&timeout_sec=1');
  t.same([next.statusCode, next.body], [200, 'i-aaaa'], 'the place is free again');
});
