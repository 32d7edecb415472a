// The metadata rate limit per caller: a burst, then the sustained rate; a
// flooding caller is answered 429 before any lookup, and its refusals are
// written at most once a second, each record carrying how many it stands for.
import t from 'tap';
import { buildMetadataApp, type MetadataBackend, type Refusal } from '../../agent/metadata/http.js';
import { CallerRateLimit } from '../../agent/metadata/rate-limit.js';

t.test('burst, then the sustained rate; records once a second with their counts', async (t) => {
  let now = 0;
  const limit = new CallerRateLimit({ perSecond: 10, burst: 5 }, () => now);
  for (let i = 0; i < 5; i++) t.same(limit.check('10.0.0.2'), { ok: true }, `burst request ${i + 1}`);
  const first = limit.check('10.0.0.2');
  t.match(first, { ok: false, record: { count: 1, reason: /rate limit of 10 requests\/s \(burst 5\)/ } });
  for (let i = 0; i < 7; i++)
    t.same(limit.check('10.0.0.2'), { ok: false, record: undefined }, 'only counted');
  t.same(limit.check('10.0.0.3'), { ok: true }, 'another caller has its own bucket');
  now = 100; // one token back
  t.same(limit.check('10.0.0.2'), { ok: true });
  t.same(limit.check('10.0.0.2'), { ok: false, record: undefined });
  t.same(limit.drain(), [], 'nothing to drain within the second');
  now = 1000;
  t.same(
    limit.drain().map((r) => [r.ip, r.count]),
    [['10.0.0.2', 8]],
    'the counted refusals, for a caller that went quiet',
  );
  now = 2000;
  for (let i = 0; i < 20; i++) limit.check('10.0.0.2');
  t.same(limit.drain(), [], 'the first refusal of this second was recorded with the check');
});

t.test('the HTTP surface answers 429 with Retry-After, before asking who the caller is', async (t) => {
  const refusals: Refusal[] = [];
  let lookups = 0;
  const backend: MetadataBackend = {
    lookup: () => {
      lookups += 1;
      return { ok: false, reason: 'no-neighbour' };
    },
    refuse: async (r) => {
      refusals.push(r);
    },
    postPassword: async () => ({ status: 500, message: 'unused' }),
    identityToken: async () => ({ status: 500, message: 'unused' }),
  };
  const { app, stats, flushLimited } = buildMetadataApp(
    backend,
    new CallerRateLimit({ perSecond: 1, burst: 2 }),
  );
  const get = () =>
    app.inject({
      method: 'GET',
      url: '/latest/meta-data/instance-id',
      remoteAddress: '10.0.0.7',
      headers: { host: '169.254.169.254' },
    });
  t.equal((await get()).statusCode, 403, 'within the burst: looked up (and refused as unknown)');
  await get();
  const limited = await get();
  t.equal(limited.statusCode, 429);
  t.equal(limited.headers['retry-after'], '1');
  t.equal(lookups, 2, 'the limited request never reached the lookup');
  for (let i = 0; i < 5; i++) t.equal((await get()).statusCode, 429);
  t.equal(refusals.length, 1, 'one record so far');
  t.match(refusals[0], { status: 429, ip: '10.0.0.7', count: 1, reason: /rate limit/ });
  t.ok(stats.refused >= 6);
  await flushLimited();
  t.equal(refusals.length, 1, 'the rest are reported after their second is over');
});
