// Audience-bound identity tokens end to end: a real guest (curl in its own
// namespace, behind berth's bridge and guard) mints a token and reads the
// JWKS; the host verifies the token with jose, both from the key set the
// guest fetched (createLocalJWKSet) and with jose's own remote fetcher going
// through the guest's namespace (createRemoteJWKSet). The claims are the
// observed identity; a second guest's token is its own; a policy deny and a
// bad audience are refused and audited; and what a token costs the guest.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, jwtVerify } from 'jose';
import t from 'tap';
import type { Status } from '../../agent/api/types.js';
import { issuerOf, TOKEN_LIFETIME_SECONDS } from '../../agent/metadata/identity-token.js';
import { removePrefixed } from '../helpers/berthd.js';
import { isRoot, PYTHON, startLab } from '../helpers/hostnet_lab.js';
import { curl, MD, mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const TOKEN = '/latest/dynamic/berth/identity';
const JWKS = '/latest/dynamic/berth/jwks.json';
const AUD = 'https://vault.example/v1/auth/berth';
const FLAVOR = ['-H', 'Metadata-Flavor: berth'];
const q = (aud: string) => `${TOKEN}?audience=${encodeURIComponent(aud)}`;

/**
 * Milliseconds per request a guest sees over one keep-alive connection, for a
 * path, after a warm-up (Debian's Python, stdlib only); with "codes", the
 * statuses of n requests as fast as they go instead.
 */
const BENCH = `
import http.client, sys, time
path, warm, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection('169.254.169.254', 80, timeout=5)
def one():
    c.request('GET', path, headers={'Host': '169.254.169.254', 'Metadata-Flavor': 'berth'})
    r = c.getresponse(); r.read()
    return r.status
if mode == 'codes':
    print(' '.join(str(one()) for _ in range(n)))
    sys.exit(0)
for _ in range(warm): assert one() == 200
t0 = time.perf_counter()
for _ in range(n): assert one() == 200
print((time.perf_counter() - t0) / n * 1000)
`;

function py(netns: string, path: string, warm: number, n: number, mode: 'time' | 'codes'): Promise<string> {
  const args = ['netns', 'exec', netns, PYTHON, '-c', BENCH, path, String(warm), String(n), mode];
  return new Promise((resolve, reject) =>
    execFile('ip', args, (err, out, stderr) =>
      err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(out.trim()),
    ),
  );
}

t.test('a guest mints a token with curl; the host verifies it with jose against the JWKS', async (t) => {
  const prefix = `mb${randomBytes(1).toString('hex')}`;
  t.teardown(() => removePrefixed(prefix));
  const lab = await startLab(t, { prefix });
  await lab.network('mbt', '10.231.14.0/24');
  const g1 = await mdGuest(lab, 'mb-g1', 'mbt', ['--role', 'web']);
  const g2 = await mdGuest(lab, 'mb-g2', 'mbt');
  const host = (await lab.d.client.request<Status>('GET', '/status')).host_id;

  const minted = await curl(g1.netns, q(AUD), FLAVOR);
  t.equal(minted.status, 200, minted.body);
  t.match(minted.headers, /content-type: application\/jwt/i);
  const token = minted.body;
  const jwksText = await curl(g1.netns, JWKS);
  t.equal(jwksText.status, 200);
  const jwks = JSON.parse(jwksText.body);
  t.same(await lab.d.client.metadataJwks(), jwks, 'the admin API serves the key set the guest reads');
  t.same(await lab.json(['identity', 'jwks']), jwks, 'berthctl identity jwks --json: the same');
  const human = await lab.ctl(['identity', 'jwks']);
  t.match(human.stdout, new RegExp(`^${host}\tEdDSA Ed25519\t${jwks.keys[0].x}$`, 'm'), 'one line per key');

  const local = createLocalJWKSet(jwks);
  const { payload, protectedHeader } = await jwtVerify(token, local, {
    audience: AUD,
    issuer: issuerOf(host),
  });
  t.match(protectedHeader, { alg: 'EdDSA', kid: host });
  t.match(
    payload,
    { sub: g1.id, aud: AUD, mac: g1.mac, network: 'mbt', host, role: 'web', instance_name: 'mb-g1' },
    'the claims are the observed guest',
  );
  t.equal((payload.exp as number) - (payload.iat as number), TOKEN_LIFETIME_SECONDS);

  // jose's own fetcher, its requests carried by curl inside the guest's namespace.
  const remote = createRemoteJWKSet(new URL(`${MD}${JWKS}`), {
    [customFetch]: async (url: string) => {
      const r = await curl(g2.netns, new URL(url).pathname);
      return new Response(r.body, { status: r.status, headers: { 'content-type': 'application/json' } });
    },
  });
  t.equal((await jwtVerify(token, remote, { audience: AUD })).payload.sub, g1.id, 'remote JWKS verifies');
  await t.rejects(
    jwtVerify(token, remote, { audience: 'https://other.example' }),
    { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' },
    'another audience is refused',
  );
  await t.rejects(
    jwtVerify(token, local, { audience: AUD, currentDate: new Date(((payload.exp as number) + 1) * 1000) }),
    errors.JWTExpired,
  );

  const t2 = await curl(g2.netns, q(AUD), FLAVOR);
  t.equal(t2.status, 200);
  const p2 = (await jwtVerify(t2.body, local, { audience: AUD })).payload;
  t.match(p2, { sub: g2.id, mac: g2.mac }, "g2's token names g2");
  t.equal(p2.role, undefined, 'no role, no role claim');

  // A bad audience is a 400 naming the field; audited with the guest's identity.
  const bad = await curl(g1.netns, `${TOKEN}?audience=a%20b`, FLAVOR);
  t.equal(bad.status, 400);
  t.match(bad.body, /query parameter "audience"/);
  t.equal((await curl(g1.netns, TOKEN, FLAVOR)).status, 400, 'no audience: 400');
  t.equal((await curl(g1.netns, q(AUD))).status, 403, 'no Metadata-Flavor (a forged request): 403');

  // A deny on the token for g2 alone: refused and audited; g1 still mints.
  const set = await lab.ctl([
    'policy',
    'set',
    'mb-notok',
    '--identity',
    `instance:${g2.id}`,
    '--deny',
    'read:identity-token',
  ]);
  t.equal(set.code, 0, set.stderr);
  t.equal((await curl(g2.netns, q(AUD), FLAVOR)).status, 403, 'denied for g2');
  t.equal((await curl(g2.netns, JWKS)).status, 200, 'g2 still reads the key set');
  t.equal((await curl(g1.netns, q(AUD), FLAVOR)).status, 200, 'g1 unaffected');
  const { records } = await lab.d.client.audit({ event: 'metadata.request', outcome: 'refused' });
  t.match(
    records.find((r) => r.path === `GET ${TOKEN}` && r.instance === g2.id),
    { mac: g2.mac, port: g2.port, ip: g2.ip, network: 'mbt', reason: /mb-notok/ },
    'the deny is audited with the observed MAC, port and IP',
  );
  t.match(
    records.find((r) => r.path === `GET ${TOKEN}` && r.instance === g1.id && /audience/.test(r.reason ?? '')),
    { mac: g1.mac, port: g1.port, reason: /query parameter "audience"/ },
    'the bad audience is audited',
  );
  t.equal((await lab.ctl(['policy', 'delete', 'mb-notok'])).code, 0);

  // What a token costs the guest, against a cached read of the key set: 18
  // tokens fit the minting burst of 20; 120 reads the metadata burst of 400.
  const mintMs = Number(await py(g1.netns, q(AUD), 3, 15, 'time'));
  const readMs = Number(await py(g2.netns, JWKS, 20, 100, 'time'));
  t.comment(`per request over keep-alive: token ${mintMs.toFixed(3)} ms, jwks.json ${readMs.toFixed(3)} ms`);
  t.ok(mintMs < 20, `a token in ${mintMs.toFixed(2)} ms (under 20 ms)`);

  // Minting in a loop: past the burst, 429, audited with how many it stands for.
  const codes = (await py(g1.netns, q(AUD), 0, 40, 'codes')).split(' ').map(Number);
  t.ok(codes.includes(429), `40 tokens at once: ${codes.filter((c) => c === 429).length} refused with 429`);
  t.ok(
    codes.every((c) => c === 200 || c === 429),
    'every other answer a token',
  );
  t.equal((await curl(g1.netns, '/latest/meta-data/instance-id')).status, 200, 'other paths still answer');
  await new Promise((r) => setTimeout(r, 1500));
  const limited = (await lab.d.client.audit({ event: 'metadata.request', outcome: 'refused' })).records.find(
    (r) => r.instance === g1.id && /identity token rate limit/.test(r.reason ?? ''),
  );
  t.match(limited, { mac: g1.mac, port: g1.port }, 'the 429s are audited, naming the guest');
});
