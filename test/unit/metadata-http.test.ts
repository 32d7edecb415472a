// The metadata surface through fastify inject: trees, tokens, hardening and
// policy, over a fake backend that stands in for berthd's resolution.
import t from 'tap';
import type { PolicyRecord } from '../../agent/auth/policy.js';
import { identityDocument } from '../../agent/metadata/doc.js';
import { buildMetadataApp } from '../../agent/metadata/http.js';
import { generateKeys, verifySignature } from '../../agent/metadata/keys.js';
import { TokenAuthority } from '../../agent/metadata/tokens.js';
import {
  instanceDoc as doc,
  H,
  metadataHarness as harness,
  tokenKey,
  callerView as view,
} from '../helpers/metadata_unit.js';

const keys = generateKeys();

t.test('EC2 tree: versions, listings, leaves, 404s', async (t) => {
  const { app } = harness(
    view(doc('i-aaaa', '0a:b7:e7:00:00:01', '10.77.0.5', { userData: Buffer.from('#cloud-config\n') })),
  );
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  for (const v of ['latest', '2009-04-04', '2016-09-02', '2018-09-24', '2021-03-23']) {
    const r = await get(`/${v}/meta-data/instance-id`);
    t.equal(r.statusCode, 200, `${v} serves instance-id`);
    t.equal(r.body, 'i-aaaa');
  }
  t.equal((await get('/1999-01-01/meta-data/instance-id')).statusCode, 404, 'unknown version is 404');
  t.equal((await get('/garbage')).statusCode, 404);
  const listing = (await get('/latest/meta-data/')).body.split('\n');
  t.ok(listing.includes('network/') && listing.includes('placement/') && listing.includes('public-keys/'));
  t.ok(listing.includes('instance-id') && listing.includes('mac') && listing.includes('local-ipv4'));
  t.equal(
    (await get('/latest/meta-data')).body,
    (await get('/latest/meta-data/')).body,
    'both spellings list',
  );
  t.equal((await get('/latest/meta-data/mac')).body, '0a:b7:e7:00:00:01');
  t.equal((await get('/latest/meta-data/public-keys/')).body, '0=alice');
  t.equal((await get('/latest/meta-data/public-keys/0/')).body, 'openssh-key');
  t.match((await get('/latest/meta-data/public-keys/0/openssh-key')).body, /^ssh-ed25519 /);
  t.equal(
    (await get('/latest/meta-data/network/interfaces/macs/0a:b7:e7:00:00:01/subnet-ipv4-cidr-block')).body,
    '10.77.0.0/24',
  );
  t.equal(
    (await get('/latest/meta-data/network/interfaces/macs/0a:b7:e7:00:00:01/local-ipv4s')).body,
    '10.77.0.5',
  );
  t.equal((await get('/latest/meta-data/placement/availability-zone')).statusCode, 200);
  t.equal(
    (await get('/latest/meta-data/placement/availability-zone/')).body,
    (await get('/latest/meta-data/placement/availability-zone')).body,
    'a leaf with a trailing slash answers as EC2 does (botocore asks that way)',
  );
  t.equal((await get('/latest/meta-data/tags/instance/env')).body, 'test');
  t.equal((await get('/latest/user-data')).body, '#cloud-config\n');
  const { app: bare } = harness(view(doc('i-bbbb', '0a:b7:e7:00:00:02', '10.77.0.6')));
  t.equal(
    (await bare.inject({ method: 'GET', url: '/latest/user-data', headers: H })).statusCode,
    404,
    'no user-data: 404',
  );
  t.notOk((await bare.inject({ method: 'GET', url: '/latest/', headers: H })).body.includes('user-data'));
});

t.test('identity document is signed by the host key', async (t) => {
  const d0 = doc('i-cccc', '0a:b7:e7:00:00:03', '10.77.0.7', { imageSha256: 'a'.repeat(64) });
  const { identity: _drop, ...base } = d0;
  const document = identityDocument(base);
  const priv = await import('node:crypto').then((c) => c.createPrivateKey(keys.sign_private_pem));
  const signature = (await import('node:crypto')).sign(null, Buffer.from(document), priv).toString('base64');
  const { app } = harness(view({ ...d0, identity: { document, signature } }));
  const doc1 = (
    await app.inject({ method: 'GET', url: '/latest/dynamic/instance-identity/document', headers: H })
  ).body;
  const sig = (
    await app.inject({ method: 'GET', url: '/latest/dynamic/instance-identity/signature', headers: H })
  ).body.trim();
  t.ok(verifySignature(keys.sign_public_pem, doc1, sig), 'signature verifies with the host public key');
  t.notOk(
    verifySignature(keys.sign_public_pem, doc1.replace('i-cccc', 'i-dddd'), sig),
    'a changed document does not',
  );
  const parsed = JSON.parse(doc1);
  t.match(parsed, {
    instanceId: 'i-cccc',
    instanceUuid: 'uuid-i-cccc',
    mac: '0a:b7:e7:00:00:03',
    privateIp: '10.77.0.7',
    imageSha256: 'a'.repeat(64),
    hostId: 'hv-test',
  });
  t.ok(Date.parse(parsed.signedAt) > 0, 'carries a timestamp');
});

t.test('OpenStack and NoCloud trees', async (t) => {
  const { app, state } = harness(
    view(doc('i-eeee', '0a:b7:e7:00:00:04', '10.77.0.8', { userData: Buffer.from('hello') })),
  );
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  const versions = (await get('/openstack')).body.split('\n');
  t.ok(versions.includes('latest') && versions.includes('2018-08-27'), 'lists versions incl. latest');
  const md = JSON.parse((await get('/openstack/latest/meta_data.json')).body);
  t.match(md, {
    uuid: 'uuid-i-eeee',
    name: 'vm-i-eeee',
    launch_index: 0,
    project_id: 'berth',
    public_keys: { alice: /^ssh-ed25519/ },
  });
  t.equal(Buffer.from(md.random_seed, 'base64').length, 512, 'random_seed is 512 bytes');
  t.same(md.keys[0], { name: 'alice', type: 'ssh', data: md.public_keys.alice });
  t.same(md.devices, []);
  const nd = JSON.parse((await get('/openstack/2018-08-27/network_data.json')).body);
  t.match(nd.links[0], { ethernet_mac_address: '0a:b7:e7:00:00:04', mtu: 1500 });
  t.match(nd.networks[0], { type: 'ipv4', ip_address: '10.77.0.8', netmask: '255.255.255.0' });
  t.same(nd.services, [{ type: 'dns', address: '10.77.0.1' }]);
  t.equal((await get('/openstack/latest/user_data')).body, 'hello');
  t.equal((await get('/openstack/latest/vendor_data.json')).statusCode, 200);
  t.equal((await get('/openstack/latest/vendor_data2.json')).statusCode, 200);
  // Password: POST once, then 409; too long is 400.
  const post = (payload: string) =>
    app.inject({
      method: 'POST',
      url: '/openstack/latest/password',
      headers: { ...H, 'content-type': 'text/plain' },
      payload,
    });
  t.equal(
    (await post('x'.repeat(4 * 255 + 1))).statusCode,
    200,
    'the backend decides the size (berthd bounds it)',
  );
  state.passwords.clear();
  t.equal((await post('s3cret')).statusCode, 200);
  t.equal((await post('again')).statusCode, 409, 'second POST is 409');
  t.equal(
    (await app.inject({ method: 'POST', url: '/openstack/latest/meta_data.json', headers: H })).statusCode,
    405,
  );
  const nc = (await get('/nocloud/meta-data')).body;
  t.match(nc, /instance-id: i-eeee/);
  t.match((await get('/nocloud/network-config')).body, /macaddress: 0a:b7:e7:00:00:04/);
  t.equal((await get('/nocloud/user-data')).body, 'hello');
  t.equal((await get('/nocloud/vendor-data')).statusCode, 200);
});

t.test('IMDSv2 tokens', async (t) => {
  const a = view(doc('i-1111', '0a:b7:e7:00:00:11', '10.77.0.11'));
  const b = view(doc('i-2222', '0a:b7:e7:00:00:12', '10.77.0.12'));
  const { app, state, stats } = harness(a);
  const put = (ttl?: string, extra: Record<string, string> = {}, url = '/latest/api/token') =>
    app.inject({
      method: 'PUT',
      url,
      headers: {
        ...H,
        ...(ttl === undefined ? {} : { 'x-aws-ec2-metadata-token-ttl-seconds': ttl }),
        ...extra,
      },
    });
  for (const [ttl, status] of [
    ['0', 400],
    ['1', 200],
    ['21600', 200],
    ['21601', 400],
    ['-1', 400],
    ['abc', 400],
  ] as const)
    t.equal((await put(ttl)).statusCode, status, `TTL ${ttl} -> ${status}`);
  t.equal((await put()).statusCode, 400, 'missing TTL -> 400');
  const ok = await put('60');
  t.equal(ok.headers['x-aws-ec2-metadata-token-ttl-seconds'], '60', 'echoes the TTL');
  for (const h of ['X-Forwarded-For', 'x-forwarded-for', 'X-fOrWaRdEd-FoR'])
    t.equal((await put('60', { [h]: '1.2.3.4' })).statusCode, 403, `${h} refused`);
  t.equal((await put('60', {}, '/2021-03-23/api/token')).statusCode, 403, 'non-latest token path is 403');
  const token = ok.body;
  const withToken = (tok: string) =>
    app.inject({
      method: 'GET',
      url: '/latest/meta-data/instance-id',
      headers: { ...H, 'x-aws-ec2-metadata-token': tok },
    });
  t.equal((await withToken(token)).statusCode, 200, 'own token works');
  state.current = b;
  t.equal((await withToken(token)).statusCode, 401, "another instance's token is 401");
  t.equal((await withToken('A'.repeat(65))).statusCode, 401, 'too long: refused before decrypting');
  t.match(state.refusals.at(-1)?.reason, /too long/);
  t.equal((await withToken('AAAA')).statusCode, 401, 'malformed');
  // Required mode: no token, 401; with one, 200.
  state.current = view(doc('i-3333', '0a:b7:e7:00:00:13', '10.77.0.13'), [], 'required');
  t.equal(
    (await app.inject({ method: 'GET', url: '/latest/meta-data/instance-id', headers: H })).statusCode,
    401,
  );
  t.equal((await withToken((await put('5')).body)).statusCode, 200);
  // Expiry, with a clock that moves.
  let now = 1_000_000;
  const auth = new TokenAuthority(tokenKey, () => now);
  const who = { network: 'n', instance: 'i', mac: 'm', port: 'p' };
  const tk = auth.issue(who, 1);
  t.same(auth.check(tk, who), { ok: true });
  // Remembered as checked, still bound: another identity with the same token fails.
  t.same(auth.check(tk, who), { ok: true });
  t.same(auth.check(tk, { ...who, mac: 'm2' }), { ok: false, reason: 'token not issued to this instance' });
  t.same(auth.check(tk, { ...who, port: 'p2' }), { ok: false, reason: 'token not issued to this instance' });
  now += 1001;
  t.same(auth.check(tk, who), { ok: false, reason: 'token expired' });
  t.same(auth.check(tk, who), { ok: false, reason: 'token expired' }, 'and stays expired');
  t.ok(stats.refused > 0, 'refusals are counted');
});

t.test('hardening: methods and Host', async (t) => {
  const { app, state } = harness(view(doc('i-4444', '0a:b7:e7:00:00:14', '10.77.0.14')));
  for (const method of ['POST', 'DELETE', 'PATCH'] as const) {
    const r = await app.inject({ method, url: '/latest/meta-data/instance-id', headers: H });
    t.equal(r.statusCode, 405, `${method} on the EC2 tree is 405`);
    t.equal(r.headers.allow, 'GET, PUT');
  }
  t.equal(
    (await app.inject({ method: 'PUT', url: '/latest/meta-data/instance-id', headers: H })).statusCode,
    405,
  );
  t.equal(
    (await app.inject({ method: 'DELETE', url: '/openstack/latest/password', headers: H })).headers.allow,
    'GET, POST',
  );
  for (const host of ['169.254.169.254', '169.254.169.254:80', 'metadata', 'instance-data'])
    t.equal(
      (await app.inject({ method: 'GET', url: '/latest/meta-data/instance-id', headers: { host } }))
        .statusCode,
      200,
      `Host ${host} ok`,
    );
  for (const host of ['evil.example', '169.254.169.254.nip.io', 'localhost'])
    t.equal(
      (await app.inject({ method: 'GET', url: '/latest/meta-data/instance-id', headers: { host } }))
        .statusCode,
      403,
      `Host ${host} refused`,
    );
  t.match(state.refusals.at(-1), { status: 403, reason: /Host "localhost"/ });
});

t.test('policy: deny user-data for a role, meta-data still works; refusal carries identity', async (t) => {
  const policies: PolicyRecord[] = [
    { name: 'web-no-ud', identities: ['role:web'], allow: [], deny: ['read:user-data'] },
  ];
  const { app, state } = harness(
    view(
      doc('i-5555', '0a:b7:e7:00:00:15', '10.77.0.15', { role: 'web', userData: Buffer.from('x') }),
      policies,
    ),
  );
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  t.equal((await get('/latest/user-data')).statusCode, 403);
  t.equal((await get('/openstack/latest/user_data')).statusCode, 403, 'every tree maps to the same resource');
  t.equal((await get('/nocloud/user-data')).statusCode, 403);
  t.equal((await get('/latest/meta-data/instance-id')).statusCode, 200);
  t.match(state.refusals[0], {
    status: 403,
    ip: '127.0.0.1',
    reason: /web-no-ud/,
    view: { instance: 'i-5555', mac: '0a:b7:e7:00:00:15' },
  });
});

t.test('berthd unavailable: 503, never a guess', async (t) => {
  const { app } = buildMetadataApp({
    lookup: () => Promise.reject(new Error('berthd did not answer metadata.lookup within 5000 ms')),
    refuse: async () => {},
    postPassword: async () => ({ status: 500, message: 'x' }),
    identityToken: async () => ({ status: 500, message: 'x' }),
  });
  const r = await app.inject({ method: 'GET', url: '/latest/meta-data/instance-id', headers: H });
  t.equal(r.statusCode, 503);
  t.equal(r.headers['retry-after'], '1');
});

t.test('blobs that crossed IPC as Uint8Array are served as bytes', async (t) => {
  const d = doc('i-6666', '0a:b7:e7:00:00:16', '10.77.0.16', {
    userData: new Uint8Array(Buffer.from('#cloud-config\n')) as Buffer,
    vendorData: new Uint8Array(Buffer.from('#cloud-config\nruncmd: [true]\n')) as Buffer,
  });
  const { app } = harness(view(d));
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  t.equal((await get('/latest/user-data')).body, '#cloud-config\n');
  t.same((await get('/openstack/latest/vendor_data.json')).json(), {
    'cloud-init': '#cloud-config\nruncmd: [true]\n',
  });
  t.equal((await get('/nocloud/vendor-data')).body, '#cloud-config\nruncmd: [true]\n');
});

t.test('tokens required hold for every path and method; no write through a proxy', async (t) => {
  const { app, state } = harness(view(doc('i-7777', '0a:b7:e7:00:00:17', '10.77.0.17'), [], 'required'));
  const req = (
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH',
    url: string,
    headers = {},
    payload?: string,
  ) => app.inject({ method, url, headers: { ...H, ...headers }, ...(payload ? { payload } : {}) });
  const last = () => state.refusals.at(-1);
  // Token-less, every method and tree: 401, audited; nothing is stored.
  for (const [method, url] of [
    ['POST', '/openstack/latest/password'],
    ['POST', '/openstack/2013-04-04/password'],
    ['DELETE', '/latest/meta-data/instance-id'],
    ['PATCH', '/nocloud/meta-data'],
    ['GET', '/berth/identity'],
    ['GET', '/openstack/latest/meta_data.json'],
    ['GET', '/nocloud/user-data'],
  ] as const) {
    const r = await req(
      method,
      url,
      { 'content-type': 'text/plain' },
      method === 'POST' ? 's3cret' : undefined,
    );
    t.equal(r.statusCode, 401, `token-less ${method} ${url}: 401`);
    t.match(last(), { status: 401, path: `${method} ${url}`, reason: /requires a session token/ }, 'audited');
  }
  t.equal(state.passwords.size, 0, 'no password was stored without a token');
  // With X-Forwarded-For (any case) or Forwarded, every write is refused, token or not.
  const tok = (await req('PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' })).body;
  const auth = { 'x-aws-ec2-metadata-token': tok };
  for (const [method, url] of [
    ['PUT', '/latest/api/token'],
    ['POST', '/openstack/latest/password'],
    ['DELETE', '/latest/meta-data/instance-id'],
    ['PATCH', '/openstack/latest/password'],
  ] as const)
    for (const proxy of [{ 'X-fOrWaRdEd-FoR': '203.0.113.9' }, { forwarded: 'for=203.0.113.9' }]) {
      const r = await req(
        method,
        url,
        { ...auth, 'x-aws-ec2-metadata-token-ttl-seconds': '60', 'content-type': 'text/plain', ...proxy },
        method === 'POST' ? 's3cret' : undefined,
      );
      const name = Object.keys(proxy)[0];
      t.equal(r.statusCode, 403, `${method} ${url} with ${name}: 403`);
      t.match(last(), { status: 403, reason: /proxied write/, view: { instance: 'i-7777' } }, 'audited');
    }
  t.equal(state.passwords.size, 0, 'no password was stored through a proxy');
  // A read may carry it (EC2 does not refuse it either), and the token's own POST works.
  t.equal(
    (await req('GET', '/latest/meta-data/instance-id', { ...auth, 'x-forwarded-for': '203.0.113.9' }))
      .statusCode,
    200,
  );
  t.equal(
    (await req('POST', '/openstack/latest/password', { ...auth, 'content-type': 'text/plain' }, 's3cret'))
      .statusCode,
    200,
    'with its token the guest posts its password',
  );
  t.equal(state.passwords.get('i-7777'), 's3cret');
  t.equal(
    (await req('POST', '/openstack/latest/password', { 'x-aws-ec2-metadata-token': 'AAAA' }, 'x')).statusCode,
    401,
    'a bad token on a write: 401',
  );
  t.match(last(), { status: 401, reason: /malformed/ });
});

t.test('refusals fastify makes before the handler are audited too', async (t) => {
  const { app, state } = harness(view(doc('i-8888', '0a:b7:e7:00:00:18', '10.77.0.18')));
  const r = await app.inject({
    method: 'POST',
    url: '/openstack/latest/password',
    headers: { ...H, 'content-type': 'text/plain' },
    payload: 'x'.repeat(5000),
  });
  t.equal(r.statusCode, 413, 'a body over the limit: 413');
  t.match(state.refusals.at(-1), {
    status: 413,
    path: 'POST /openstack/latest/password',
    ip: '127.0.0.1',
    reason: /too large/i,
  });
});
