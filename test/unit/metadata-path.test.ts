// Path normalization (agent/metadata/path.ts): every shape of repeated and
// trailing slashes, the clean path returned untouched, and through the HTTP
// app: each tree answers a misspelled path like the clean one, the token and
// password routes are found under any spelling, and a deny is not bypassed by
// one (the refusal is audited under the normalized path).
import t from 'tap';
import type { PolicyRecord } from '../../agent/auth/policy.js';
import { itemAt, requestPath } from '../../agent/metadata/path.js';
import type { Item } from '../../agent/metadata/tree.js';
import {
  instanceDoc as doc,
  H,
  metadataHarness as harness,
  callerView as view,
} from '../helpers/metadata_unit.js';

t.test('requestPath: runs of slashes merge anywhere; the query is cut; nothing else changes', async (t) => {
  const cases: [string, string][] = [
    ['//latest/meta-data/instance-id', '/latest/meta-data/instance-id'],
    ['/latest//meta-data/', '/latest/meta-data/'],
    ['///latest///meta-data////instance-id', '/latest/meta-data/instance-id'],
    ['/latest/meta-data/instance-id//', '/latest/meta-data/instance-id/'],
    ['//', '/'],
    ['////', '/'],
    ['//openstack//latest//meta_data.json', '/openstack/latest/meta_data.json'],
    ['/nocloud//meta-data', '/nocloud/meta-data'],
    ['/berth//identity', '/berth/identity'],
    ['//latest/meta-data/?a=b//c', '/latest/meta-data/'],
    // A `//` only in the query is the query's business.
    ['/latest/meta-data/instance-id?next=http://x//y', '/latest/meta-data/instance-id'],
    ['/latest/meta-data?', '/latest/meta-data'],
    // Not rewritten: dot segments and escapes name nothing berth serves.
    ['/latest/./meta-data//x/../instance-id', '/latest/./meta-data/x/../instance-id'],
    ['/latest%2F%2Fmeta-data', '/latest%2F%2Fmeta-data'],
  ];
  for (const [raw, want] of cases) t.equal(requestPath(raw), want, raw);
});

t.test('requestPath: a clean path comes back as is, with no new string built', async (t) => {
  const clean = [
    '/',
    '/latest/meta-data/instance-id',
    '/latest/meta-data/',
    '/latest/meta-data/placement/availability-zone/',
    '/openstack/latest/meta_data.json',
    '/nocloud/meta-data',
    '/berth/identity',
  ];
  // Counts every String method that could build a new string; a clean path must call none.
  const proto = String.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const names = ['slice', 'substring', 'replace', 'replaceAll', 'concat', 'split', 'toLowerCase'];
  const saved = names.map((n) => [n, proto[n] as (...a: unknown[]) => unknown] as const);
  let built = 0;
  for (const [n, fn] of saved)
    proto[n] = function (this: string, ...a: unknown[]) {
      built += 1;
      return fn.apply(this, a);
    };
  let out: string[] = [];
  let forClean = 0;
  let dirty = '';
  try {
    out = clean.map(requestPath);
    forClean = built;
    dirty = requestPath('//latest/meta-data/instance-id');
  } finally {
    for (const [n, fn] of saved) proto[n] = fn;
  }
  t.equal(forClean, 0, 'no string method called for a clean path');
  t.ok(built > forClean, 'control: a path to normalize does build one (the counter works)');
  t.same(out, clean, 'each clean path returned unchanged');
  t.equal(dirty, '/latest/meta-data/instance-id');
});

t.test('itemAt: the path, else its other trailing-slash spelling', async (t) => {
  const leaf = { body: Buffer.from('i-1') } as Item;
  const listing = { body: Buffer.from('instance-id') } as Item;
  const items = new Map<string, Item>([
    ['/latest/meta-data/instance-id', leaf],
    ['/latest/meta-data', listing],
    ['/latest/meta-data/', listing],
    ['/', listing],
  ]);
  t.equal(itemAt(items, '/latest/meta-data/instance-id'), leaf);
  t.equal(itemAt(items, '/latest/meta-data/instance-id/'), leaf, 'a leaf with a trailing slash');
  t.equal(itemAt(items, '/latest/meta-data'), listing);
  t.equal(itemAt(items, '/latest/meta-data/'), listing);
  t.equal(itemAt(items, '/'), listing);
  t.equal(itemAt(items, '/latest/meta-data/mac'), undefined);
  t.equal(itemAt(items, '/latest/meta-data/mac/'), undefined);
  t.equal(itemAt(new Map(), '/'), undefined, 'the root has no other spelling');
});

/** Spellings of a clean path: doubled slashes at the front, in the middle and at the end. */
function spellings(clean: string): string[] {
  const parts = clean.split('/');
  const out = [`/${clean}`, `${clean}/`, `${clean}//`, parts.join('//'), parts.join('///')];
  if (parts.length > 2) out.push([...parts.slice(0, 2), '', ...parts.slice(2)].join('/'));
  return out;
}

t.test('every tree answers a misspelled path like the clean one', async (t) => {
  const d = doc('i-7a01', '0a:b7:e7:00:7a:01', '10.77.0.71', {
    userData: Buffer.from('#cloud-config\n'),
    vendorData: Buffer.from('#cloud-config\nruncmd: [true]\n'),
  });
  const { app } = harness(view(d));
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  const paths = [
    '/latest/meta-data/instance-id',
    '/latest/meta-data/placement/availability-zone',
    '/2009-04-04/meta-data/public-keys/0/openssh-key',
    '/latest/user-data',
    '/latest/meta-data/',
    '/latest/dynamic/instance-identity/document',
    '/openstack/latest/meta_data.json',
    '/openstack/2018-08-27/network_data.json',
    '/openstack/latest/user_data',
    '/nocloud/meta-data',
    '/nocloud/network-config',
    '/nocloud/user-data',
    '/berth/identity',
  ];
  for (const clean of paths) {
    const want = await get(clean);
    t.equal(want.statusCode, 200, `control: ${clean} is served`);
    for (const s of spellings(clean)) {
      const r = await get(s);
      t.same([r.statusCode, r.body], [200, want.body], `${s} answers as ${clean}`);
    }
  }
  t.equal((await get('/latest/meta-data/nosuch/')).statusCode, 404, 'a path that is not there stays 404');
});

t.test('the token PUT and the password POST are found under any spelling', async (t) => {
  const d = doc('i-7a02', '0a:b7:e7:00:7a:02', '10.77.0.72');
  const { app, state } = harness(view(d, [], 'required'));
  const put = await app.inject({
    method: 'PUT',
    url: '//latest//api/token/',
    headers: { ...H, 'x-aws-ec2-metadata-token-ttl-seconds': '60' },
  });
  t.equal(put.statusCode, 200, 'PUT //latest//api/token/ issues a token');
  const token = { ...H, 'x-aws-ec2-metadata-token': put.body };
  const id = await app.inject({ method: 'GET', url: '//latest/meta-data/instance-id', headers: token });
  t.same([id.statusCode, id.body], [200, 'i-7a02'], 'and the token reads');
  const bare = await app.inject({ method: 'GET', url: '//latest/meta-data/instance-id', headers: H });
  t.equal(bare.statusCode, 401, 'tokens required still holds on a misspelled path');
  const post = await app.inject({
    method: 'POST',
    url: '/openstack//latest/password/',
    headers: { ...token, 'content-type': 'text/plain' },
    payload: 'pw-7a02',
  });
  t.equal(post.statusCode, 200, 'POST /openstack//latest/password/ stores the password');
  t.equal(state.passwords.get('i-7a02'), 'pw-7a02');
  t.match(state.refusals, [{ status: 401, path: 'GET /latest/meta-data/instance-id' }]);
});

t.test('a deny is not bypassed by a path spelling, and is audited under the normalized path', async (t) => {
  const policies: PolicyRecord[] = [
    { name: 'no-host-7a', identities: ['instance:i-7a03'], allow: [], deny: ['read:meta-data/hostname'] },
  ];
  const d = doc('i-7a03', '0a:b7:e7:00:7a:03', '10.77.0.73');
  const { app, state } = harness(view(d, policies));
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  t.equal((await get('/latest/meta-data/instance-id')).statusCode, 200, 'control: other reads are served');
  const clean = '/latest/meta-data/hostname';
  const tries = [clean, ...spellings(clean), '/latest/meta-data//local-hostname/'];
  for (const p of tries) {
    const r = await get(p);
    t.same([r.statusCode, r.body.includes('vm-i-7a03')], [403, false], `${p}: 403, no hostname`);
  }
  t.equal(state.refusals.length, tries.length, 'every try is a refusal');
  const paths = new Set(state.refusals.map((r) => r.path));
  t.same(
    [...paths].sort(),
    [
      'GET /latest/meta-data/hostname',
      'GET /latest/meta-data/hostname/',
      'GET /latest/meta-data/local-hostname/',
    ],
    'each recorded under the path the decision was made on (merged slashes)',
  );
  t.ok(
    state.refusals.every((r) => /no-host-7a/.test(r.reason)),
    'each refused by the policy, not by a missing path',
  );
});
