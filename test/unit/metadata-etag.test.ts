// ETags on metadata answers: strong, from the bytes served, so identical
// answers carry identical tags (across EC2 versions, re-rendered views,
// other callers) and an update changes the tag of exactly the paths whose
// bytes changed; If-None-Match gives 304 without a body, but never for a
// path the caller may not read (that would confirm a guess of its bytes).
import t from 'tap';
import type { PolicyRecord } from '../../agent/auth/policy.js';
import { etagOf, noneMatch } from '../../agent/metadata/etag.js';
import { H, instanceDoc, metadataHarness, callerView as view } from '../helpers/metadata_unit.js';

const MAC = '0a:b7:e7:00:00:01';

t.test('tags follow the bytes', async (t) => {
  const v1 = view(instanceDoc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'lab', team: 'a' } }));
  const { app, state } = metadataHarness(v1);
  const get = (url: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url, headers: { ...H, ...headers } });

  const id = await get('/latest/meta-data/instance-id');
  const tag = id.headers.etag as string;
  t.match(tag, /^"[A-Za-z0-9_-]{22}"$/, 'a strong, quoted tag');
  t.equal(
    (await get('/2009-04-04/meta-data/instance-id')).headers.etag,
    tag,
    'the same bytes in another version',
  );
  t.equal((await get('/latest/meta-data/instance-id')).headers.etag, tag, 'stable across requests');
  const env = (await get('/latest/meta-data/tags/instance/env')).headers.etag;
  const team = (await get('/latest/meta-data/tags/instance/team')).headers.etag;
  const osMeta = await get('/openstack/latest/meta_data.json');
  t.not(env, team, 'different bytes, different tags');

  // An update (a new view, as the endpoint builds after an invalidation).
  state.current = view(instanceDoc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'prod', team: 'a' } }));
  const env2 = await get('/latest/meta-data/tags/instance/env');
  t.equal(env2.body, 'prod');
  t.not(env2.headers.etag, env, 'the changed value has a new tag');
  t.equal(
    (await get('/latest/meta-data/tags/instance/team')).headers.etag,
    team,
    'an unchanged value keeps its tag',
  );
  t.equal((await get('/latest/meta-data/instance-id')).headers.etag, tag, 'so does the instance id');
  t.not(
    (await get('/openstack/latest/meta_data.json')).headers.etag,
    osMeta.headers.etag,
    'a document holding it changes',
  );
  t.equal(
    (await get('/latest/meta-data/tags/instance/')).headers.etag,
    (await get('/latest/meta-data/tags/instance')).headers.etag,
    'both spellings of a directory, one tag',
  );

  // Another guest with the same bytes at a path gets the same tag; with other bytes, another.
  state.current = view(
    instanceDoc('i-bbbb', '0a:b7:e7:00:00:02', '10.77.0.6', { meta: { env: 'prod', team: 'a' } }),
  );
  t.equal((await get('/latest/meta-data/tags/instance/env')).headers.etag, env2.headers.etag);
  t.not((await get('/latest/meta-data/instance-id')).headers.etag, tag);
});

t.test('If-None-Match: 304 on a match, 200 otherwise, never for a denied path', async (t) => {
  const deny: PolicyRecord[] = [
    { name: 'no-tags', identities: ['*'], allow: ['read:*'], deny: ['read:meta-data/tags'] },
  ];
  const d = instanceDoc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'lab' } });
  const { app, state } = metadataHarness(view(d));
  const get = (url: string, inm?: string) =>
    app.inject({ method: 'GET', url, headers: { ...H, ...(inm ? { 'if-none-match': inm } : {}) } });
  const first = await get('/latest/meta-data/tags/instance/env');
  const tag = first.headers.etag as string;
  const hit = await get('/latest/meta-data/tags/instance/env', tag);
  t.equal(hit.statusCode, 304);
  t.equal(hit.body, '', 'no body');
  t.equal(hit.headers.etag, tag, 'the tag is repeated');
  t.equal(
    (await get('/latest/meta-data/tags/instance/env', `"nope", W/${tag}`)).statusCode,
    304,
    'a list, weak form',
  );
  t.equal((await get('/latest/meta-data/tags/instance/env', '*')).statusCode, 304, '* matches what exists');
  const miss = await get('/latest/meta-data/tags/instance/env', '"stale"');
  t.same([miss.statusCode, miss.body], [200, 'lab'], 'another tag: the value');
  t.equal((await get('/latest/meta-data/nothing-here', '*')).statusCode, 404, 'nothing there: 404, not 304');

  state.current = view(instanceDoc('i-aaaa', MAC, '10.77.0.5', { meta: { env: 'prod' } }));
  const changed = await get('/latest/meta-data/tags/instance/env', tag);
  t.same([changed.statusCode, changed.body], [200, 'prod'], 'the old tag after an update: the new value');

  state.current = view(d, deny);
  const denied = await get('/latest/meta-data/tags/instance/env', tag);
  t.equal(denied.statusCode, 403, 'denied stays denied, with the right tag in hand');
  t.equal(denied.headers.etag, undefined);
  t.equal(state.refusals.at(-1)?.status, 403, 'and audited');
});

t.test('noneMatch and etagOf', async (t) => {
  const item = { body: Buffer.from('x'), contentType: 'text/plain' };
  const tag = etagOf(item);
  t.equal(etagOf({ body: Buffer.from('x'), contentType: 'text/plain' }), tag, 'a pure function of the bytes');
  t.not(etagOf({ body: Buffer.from('x'), contentType: 'application/json' }), tag, 'and the content type');
  t.notOk(noneMatch(undefined, tag));
  t.notOk(noneMatch('', tag));
  t.notOk(noneMatch(tag.slice(1, -1), tag), 'unquoted is another tag');
  t.ok(noneMatch([`"a"`, tag], tag), 'repeated headers');
  t.notOk(noneMatch(`${' '.repeat(3000)}${tag}`, tag), 'oversized headers are not parsed');
});
