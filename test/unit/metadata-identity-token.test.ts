// Audience-bound identity tokens, checked by a standard JWT library (jose),
// never by berth's own code: minted by berthd's half (identity-tokens.ts)
// with a real host key, verified against the JWKS berth serves
// (keySetText). The right audience passes; a wrong audience, an expired
// token, a tampered payload or header, and a token from another host's key
// all fail. Then the refusals berthd makes, and the HTTP surface the guest
// sees (400 naming the field, deny audited, listing).
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import type { PolicyRecord } from '../../agent/auth/policy.js';
import { buildMetadataApp, type Refusal } from '../../agent/metadata/http.js';
import { AUDIENCE_MAX, issuerOf, TOKEN_LIFETIME_SECONDS } from '../../agent/metadata/identity-token.js';
import { IdentityTokens } from '../../agent/metadata/identity-tokens.js';
import { loadOrCreateKeys, type MetadataKeys } from '../../agent/metadata/keys.js';
import { CallerRateLimit, IDENTITY_TOKEN_RATE } from '../../agent/metadata/rate-limit.js';
import { keySetText } from '../../agent/services/host-keys.js';
import type { Store } from '../../base/store.js';
import { callerView, H, instanceDoc, metadataHarness } from '../helpers/metadata_unit.js';

/** A host's real metadata keys, made the way berthd makes them (in a store that holds nothing). */
async function hostKeys(): Promise<MetadataKeys> {
  const empty = { get: async () => undefined, batch: async () => undefined } as unknown as Store;
  return loadOrCreateKeys(empty);
}

const MAC = '0a:b7:e7:00:00:41';
const IP = '10.77.0.41';
const SHA = 'e'.repeat(64);
const rec = { id: 'i-00aa41', name: 'web-1', role: 'web', image_sha256: SHA } as unknown as Instance;

interface Fixture {
  policies: PolicyRecord[];
  resolved: { ok: true; mac: string; port: string; instance: string } | { ok: false; reason: 'no-neighbour' };
  gone: boolean;
}

function minter(keys: MetadataKeys, host: string, f: Fixture, now: () => number = Date.now) {
  return new IdentityTokens({
    observer: { resolve: async () => f.resolved },
    instances: {
      get: (id: string) => {
        if (f.gone || id !== rec.id) throw new Error('not found');
        return rec;
      },
    },
    policies: { all: () => f.policies },
    keys,
    hostId: () => host,
    now,
  });
}

const fixture = (): Fixture => ({
  policies: [],
  resolved: { ok: true, mac: MAC, port: 'bthp1a0', instance: rec.id },
  gone: false,
});
const ask = { ip: IP, instance: rec.id, mac: MAC, audience: 'https://vault.example/v1/auth' };

t.test('jose verifies a token against the JWKS berth serves; every forgery fails', async (t) => {
  const keys = await hostKeys();
  const other = await hostKeys();
  const jwks = JSON.parse(keySetText([{ host: 'hv-a', publicKeyPem: keys.publicKeyPem }]));
  const set = createLocalJWKSet(jwks);
  const a = await minter(keys, 'hv-a', fixture()).mint('prod', ask);
  t.equal(a.status, 200, a.message);
  const token = a.token as string;

  t.same(
    decodeProtectedHeader(token),
    { alg: 'EdDSA', typ: 'JWT', kid: 'hv-a' },
    'header: EdDSA, kid = host id',
  );
  const { payload } = await jwtVerify(token, set, { audience: ask.audience, issuer: issuerOf('hv-a') });
  t.match(payload, {
    iss: 'berth:host:hv-a',
    sub: rec.id,
    aud: ask.audience,
    instance_name: 'web-1',
    network: 'prod',
    mac: MAC,
    host: 'hv-a',
    role: 'web',
    image_sha256: SHA,
  });
  t.equal((payload.exp as number) - (payload.iat as number), TOKEN_LIFETIME_SECONDS, 'lifetime');
  t.ok(Math.abs((payload.iat as number) - Date.now() / 1000) < 5, 'iat is now');
  t.equal(payload.nbf, undefined, 'no nbf: a verifier whose clock lags is not refused');
  t.match(payload.jti, /^[A-Za-z0-9_-]{16}$/, 'a jti per token');

  await t.rejects(
    jwtVerify(token, set, { audience: 'https://other.example' }),
    { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' },
    'another audience is refused',
  );
  await t.rejects(
    jwtVerify(token, set, {
      audience: ask.audience,
      currentDate: new Date(((payload.exp as number) + 1) * 1000),
    }),
    errors.JWTExpired,
    'a second after exp the token is expired',
  );
  const [h, p, s] = token.split('.') as [string, string, string];
  const forged = { ...payload, sub: 'i-someone-else' };
  await t.rejects(
    jwtVerify(`${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`, set, {
      audience: ask.audience,
    }),
    errors.JWSSignatureVerificationFailed,
    'a tampered payload fails the signature',
  );
  const hs = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'hv-a' })).toString('base64url');
  await t.rejects(
    jwtVerify(`${hs}.${p}.${s}`, set, { audience: ask.audience }),
    'a header switched to another algorithm is refused',
  );

  // Another host's key: under its own kid the key set does not know it; under
  // this host's kid (a forger naming hv-a) the signature does not verify.
  const b = await minter(other, 'hv-b', fixture()).mint('prod', ask);
  await t.rejects(
    jwtVerify(b.token as string, set, { audience: ask.audience }),
    errors.JWKSNoMatchingKey,
    "another host's token: no key with its kid",
  );
  const posing = await minter(other, 'hv-a', fixture()).mint('prod', ask);
  await t.rejects(
    jwtVerify(posing.token as string, set, { audience: ask.audience }),
    errors.JWSSignatureVerificationFailed,
    "another host's key posing as hv-a: the signature fails",
  );
  // A cluster's key set carries both hosts; each token verifies under its own kid.
  const both = createLocalJWKSet(
    JSON.parse(
      keySetText([
        { host: 'hv-a', publicKeyPem: keys.publicKeyPem },
        { host: 'hv-b', publicKeyPem: other.publicKeyPem },
      ]),
    ),
  );
  t.equal((await jwtVerify(b.token as string, both, { audience: ask.audience })).payload.host, 'hv-b');

  // hv-a reinstalled: forgotten, then registered again under its id with a new
  // key; the old key is still trusted for its window and listed after the live one.
  const reinstalled = await minter(other, 'hv-a', fixture()).mint('prod', ask);
  const rejoined = JSON.parse(
    keySetText([
      { host: 'hv-a', publicKeyPem: other.publicKeyPem },
      { host: 'hv-a', publicKeyPem: keys.publicKeyPem },
    ]),
  );
  const kids = rejoined.keys.map((k: { kid: string }) => k.kid);
  t.equal(kids[0], 'hv-a', 'the live key keeps the bare host id');
  t.equal(
    kids[1],
    `hv-a~${await calculateJwkThumbprint(rejoined.keys[1])}`,
    'the old key is named by its RFC 7638 thumbprint (as jose computes it)',
  );
  t.equal(
    (await jwtVerify(reinstalled.token as string, createLocalJWKSet(rejoined), { audience: ask.audience }))
      .payload.host,
    'hv-a',
    "the reinstalled host's tokens verify while its old key is still listed",
  );
  const ambiguous = { keys: rejoined.keys.map((k: object) => ({ ...k, kid: 'hv-a' })) };
  await t.rejects(
    jwtVerify(reinstalled.token as string, createLocalJWKSet(ambiguous), { audience: ask.audience }),
    errors.JWKSMultipleMatchingKeys,
    'why: two keys under one kid make jose refuse every token',
  );

  const again = await minter(keys, 'hv-a', fixture()).mint('prod', ask);
  t.not(again.token, token, 'minted per request: never the same token twice');
});

t.test('berthd refuses to mint: bad audience, caller changed, unresolved, gone, policy deny', async (t) => {
  const keys = await hostKeys();
  const f = fixture();
  const m = minter(keys, 'hv-a', f);
  t.match(await m.mint('prod', { ...ask, audience: '' }), { status: 400, message: /"audience" is required/ });
  t.match(await m.mint('prod', { ...ask, audience: 'a b' }), {
    status: 400,
    message: /"audience" has characters/,
  });
  t.match(await m.mint('prod', { ...ask, audience: 'x'.repeat(AUDIENCE_MAX + 1) }), {
    status: 400,
    message: /at most 256/,
  });
  t.equal((await m.mint('prod', { ...ask, audience: 'x'.repeat(AUDIENCE_MAX) })).status, 200, '256 is fine');
  t.match(await m.mint('prod', { ...ask, mac: '0a:b7:e7:00:00:99' }), {
    status: 403,
    message: /caller changed/,
  });
  t.match(await m.mint('prod', { ...ask, instance: 'i-other' }), { status: 403, message: /caller changed/ });
  f.policies = [{ name: 'no-tokens', identities: ['role:web'], allow: [], deny: ['read:identity-token'] }];
  const denied = await m.mint('prod', ask);
  t.match(denied, { status: 403, message: /no-tokens/ }, 'berthd evaluates the policy itself');
  t.equal(denied.token, undefined);
  f.policies = [];
  f.gone = true;
  t.match(await m.mint('prod', ask), { status: 403, message: 'instance-gone' });
  f.resolved = { ok: false, reason: 'no-neighbour' };
  t.match(await m.mint('prod', ask), { status: 403, message: /no-neighbour/ });
  t.equal(m.minted, 1, 'only the good request minted');
});

t.test('what minting costs berthd (sign + claims + policy)', async (t) => {
  const keys = await hostKeys();
  const m = minter(keys, 'hv-a', fixture());
  for (let i = 0; i < 200; i++) await m.mint('prod', ask);
  const n = 2000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await m.mint('prod', ask);
  const us = Number(process.hrtime.bigint() - start) / 1000 / n;
  t.comment(`identity token mint: ${us.toFixed(1)} µs per token (${n} tokens)`);
  t.ok(us < 2000, `${us.toFixed(1)} µs per token, under 2 ms`);
});

const d = instanceDoc('i-00aa41', MAC, IP, { role: 'web' });
const URL = '/latest/dynamic/berth/identity';
const F = { 'metadata-flavor': 'berth' };

t.test('the guest-facing path: audience required and checked, deny audited, listed', async (t) => {
  const { app, state } = metadataHarness(callerView(d));
  const get = (url: string, headers: Record<string, string> = F) =>
    app.inject({ method: 'GET', url, headers: { ...H, ...headers } });
  const ok = await get(`${URL}?audience=${encodeURIComponent('https://vault.example/v1')}`);
  t.equal(ok.statusCode, 200);
  t.equal(ok.body, `jwt-for-${d.id}`, 'the token berthd minted, as is');
  t.equal(ok.headers['content-type'], 'application/jwt');
  t.equal(ok.headers['cache-control'], 'no-store');
  t.same(state.minted, [{ instance: d.id, audience: 'https://vault.example/v1' }], 'decoded audience sent');

  for (const [q, why] of [
    ['', /"audience" is required/],
    ['?audience=', /"audience" is required/],
    ['?audience=a&audience=b', /given 2 times/],
    ['?audience=a+b', /characters outside/],
    ['?audience=%0d%0aX-Evil:%201', /characters outside/],
    [`?audience=${'y'.repeat(AUDIENCE_MAX + 1)}`, /at most 256/],
  ] as const) {
    const r = await get(`${URL}${q}`);
    t.equal(r.statusCode, 400, `${q || '(none)'}: 400`);
    t.match(r.body, why, `${q || '(none)'}: names the field`);
    t.match(state.refusals.at(-1), { status: 400, path: `GET ${URL}`, reason: why }, 'audited');
  }
  t.equal(state.minted.length, 1, 'no bad audience reached berthd');

  // A forged request (SSRF: a fetch of a URL the guest's app was handed) carries no
  // Metadata-Flavor and may carry a proxy's header: no token either way, audited.
  const plain = await app.inject({ method: 'GET', url: `${URL}?audience=a`, headers: H });
  t.equal(plain.statusCode, 403, 'no Metadata-Flavor: 403');
  t.match(plain.body, /Metadata-Flavor: berth/);
  t.match(state.refusals.at(-1), { status: 403, reason: /Metadata-Flavor/ }, 'audited');
  t.equal((await get(`${URL}?audience=a`, { 'metadata-flavor': 'Chrome' })).statusCode, 403, 'other flavor');
  const xff = await get(`${URL}?audience=a`, { ...F, 'x-forwarded-for': '203.0.113.9' });
  t.equal(xff.statusCode, 403, 'through a proxy: 403');
  t.match(state.refusals.at(-1), { status: 403, reason: /X-Forwarded-For is refused/ }, 'audited');
  t.equal((await get(`${URL}?audience=a`, { forwarded: 'for=1.2.3.4' })).statusCode, 403, 'Forwarded too');
  t.equal((await get(`${URL}?audience=a`, { 'metadata-flavor': 'Google' })).statusCode, 200, 'GCE flavor');
  const session = (
    await app.inject({
      method: 'PUT',
      url: '/latest/api/token',
      headers: { ...H, 'x-aws-ec2-metadata-token-ttl-seconds': '60' },
    })
  ).body;
  t.equal(
    (await get(`${URL}?audience=a`, { 'x-aws-ec2-metadata-token': session })).statusCode,
    200,
    'an IMDSv2 session token instead of the header',
  );
  t.equal(
    (await get(`${URL}?audience=a`, { 'x-aws-ec2-metadata-token': 'forged' })).statusCode,
    401,
    'a bad session token: 401',
  );
  t.equal(state.minted.length, 3, 'only the three good requests reached berthd');
  t.ok((await get('/latest/dynamic/berth/')).body.split('\n').includes('identity'), 'listed');

  const deny: PolicyRecord = {
    name: 'deny-tok',
    identities: ['*'],
    allow: [],
    deny: ['read:identity-token'],
  };
  const denied = metadataHarness(callerView(d, [deny]));
  const r = await denied.app.inject({ method: 'GET', url: `${URL}?audience=a`, headers: { ...H, ...F } });
  t.equal(r.statusCode, 403);
  t.match(denied.state.refusals, [{ status: 403, path: `GET ${URL}`, reason: /deny-tok/ }], 'deny audited');
  t.equal(denied.state.minted.length, 0, 'berthd never asked');
  const listing = (await denied.app.inject({ method: 'GET', url: '/latest/dynamic/berth/', headers: H }))
    .body;
  t.same(listing.split('\n'), ['jwks.json'], 'the listing leaves it out; the key set stays');
  t.equal(
    (await denied.app.inject({ method: 'GET', url: '/latest/dynamic/berth/jwks.json', headers: H }))
      .statusCode,
    200,
    'denying tokens does not hide the key set',
  );
});

t.test("berthd's refusal reaches the guest and the audit log", async (t) => {
  const view = callerView(d);
  const refusals: Refusal[] = [];
  const { app } = buildMetadataApp({
    lookup: () => ({ ok: true, view }),
    refuse: async (r) => {
      refusals.push(r);
    },
    postPassword: async () => ({ status: 500, message: 'unused' }),
    identityToken: async () => ({ status: 403, message: 'caller changed; retry' }),
  });
  const r = await app.inject({ method: 'GET', url: `${URL}?audience=a`, headers: { ...H, ...F } });
  t.equal(r.statusCode, 403);
  t.match(r.body, /caller changed/);
  t.match(refusals, [{ status: 403, reason: 'caller changed; retry', path: `GET ${URL}` }], 'audited');
});

t.test('minting has its own rate limit per guest: 20 at once, then 429, audited with a count', async (t) => {
  const view = callerView(d);
  const refusals: Refusal[] = [];
  let minted = 0;
  const clock = { now: 0 };
  const { app, flushLimited } = buildMetadataApp(
    {
      lookup: () => ({ ok: true, view }),
      refuse: async (r) => {
        refusals.push(r);
      },
      postPassword: async () => ({ status: 500, message: 'unused' }),
      identityToken: async () => {
        minted += 1;
        return { status: 200, message: 'ok', token: 'a.b.c' };
      },
    },
    new CallerRateLimit(),
    new CallerRateLimit(IDENTITY_TOKEN_RATE, () => clock.now),
  );
  const mint = () => app.inject({ method: 'GET', url: `${URL}?audience=a`, headers: { ...H, ...F } });
  const codes: number[] = [];
  for (let i = 0; i < 25; i++) codes.push((await mint()).statusCode);
  t.same(codes.slice(0, 20), Array(20).fill(200), 'the burst');
  t.same(codes.slice(20), Array(5).fill(429), 'then 429');
  t.equal(minted, 20, 'berthd asked only for the first 20');
  t.match(refusals, [{ status: 429, count: 1, reason: /identity token rate limit of 10 requests\/s/ }]);
  const id = await app.inject({ method: 'GET', url: '/latest/meta-data/instance-id', headers: H });
  t.equal(id.statusCode, 200, 'the rest of the metadata service is not limited by it');
  clock.now = 1000;
  await flushLimited();
  t.match(refusals.at(-1), { status: 429, count: 4 }, 'the refusals only counted are written as one record');
  t.equal((await mint()).statusCode, 200, 'a second later: tokens again');
});
