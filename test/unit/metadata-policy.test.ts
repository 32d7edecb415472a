// Policy evaluation tables, the policy store, the endpoint cache's
// invalidation, and the host keys kept in the store.
import { createHash } from 'node:crypto';
import t from 'tap';
import {
  type CallerIdentity,
  compileRules,
  evaluate,
  type PolicyRecord,
  parseIdentity,
  validatePolicy,
} from '../../agent/auth/policy.js';
import { identityDocument } from '../../agent/metadata/doc.js';
import { EndpointCache } from '../../agent/metadata/endpoint-cache.js';
import { prepareInputs } from '../../agent/metadata/inputs.js';
import { KEYS_KEY, loadOrCreateKeys, verifySignature } from '../../agent/metadata/keys.js';
import { PolicyService } from '../../agent/services/policies.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { BerthError } from '../../base/errors.js';

const web: CallerIdentity = {
  instance: 'i-0001',
  name: 'web1',
  mac: '0a:b7:e7:00:01:05',
  role: 'web',
  image: 'f'.repeat(64),
};
const db: CallerIdentity = { instance: 'i-0002', name: 'db1', mac: '0a:b7:e8:00:00:01', role: 'db' };

/** The field a BerthError names, or undefined when fn did not throw one. */
function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof BerthError ? err.field : 'not a BerthError';
  }
  return undefined;
}

const P = (name: string, identities: string[], allow: string[], deny: string[]): PolicyRecord => ({
  name,
  identities,
  allow,
  deny,
});

t.test('identity syntax', async (t) => {
  for (const ok of [
    '*',
    'instance:i-0001',
    'instance:web1',
    'mac:0a:b7:e7:00:01:05',
    'mac:0a:b7:e7:00:00:00/24',
    'role:web',
    `image:${'f'.repeat(64)}`,
  ])
    t.ok(parseIdentity(ok), ok);
  for (const bad of ['', 'mac:zz', 'mac:0a:b7:e7:00:00:00/49', 'image:abc', 'role:', 'user:x', 'role:Web!'])
    t.notOk(parseIdentity(bad), `"${bad}" refused`);
  t.equal(
    fieldOf(() => validatePolicy(P('x', ['role:web'], ['read:user-data', 'exec:x'], []))),
    'allow.1',
  );
  t.equal(
    fieldOf(() => validatePolicy(P('x', [], ['read:user-data'], []))),
    'identities',
  );
  t.equal(
    fieldOf(() => validatePolicy(P('Bad', ['*'], ['read:*'], []))),
    'name',
  );
});

t.test('decision table', async (t) => {
  const policies = [
    P('everyone-no-ud', ['*'], [], ['read:user-data']),
    P('web-ud', ['role:web'], ['read:user-data'], []),
    P('range-no-keys', ['mac:0a:b7:e7:00:00:00/24'], [], ['read:meta-data/public-keys']),
    P('web1-keys', ['instance:web1'], ['read:meta-data/public-keys'], []),
    P('img', [`image:${'f'.repeat(64)}`], [], ['write:password']),
    P('db-no-md', ['mac:0a:b7:e8:00:00:01'], [], ['read:meta-data/*']),
  ];
  const rows: [CallerIdentity, 'read' | 'write', string, boolean, RegExp | string][] = [
    [web, 'read', 'user-data', true, /web-ud/], // role (more specific) beats *
    [db, 'read', 'user-data', false, /everyone-no-ud/],
    [web, 'read', 'meta-data/public-keys', true, /web1-keys/], // instance beats MAC range
    [web, 'read', 'meta-data/instance-id', true, 'default'],
    [web, 'write', 'password', false, /img/],
    [db, 'write', 'password', true, 'default'],
    [db, 'write', 'user-data', false, /no policy allows/],
    [db, 'read', 'meta-data/instance-id', false, /db-no-md/],
    [db, 'read', 'meta-data', false, /db-no-md/],
    [db, 'read', 'index', true, 'index'],
  ];
  for (const [who, op, resource, allowed, reason] of rows) {
    const d = evaluate(compileRules(policies, who), op, resource);
    t.equal(d.allowed, allowed, `${who.name} ${op}:${resource} -> ${allowed}`);
    t.match(d.reason, reason);
  }
  // Same rank: deny beats allow.
  const both = [P('a', ['role:web'], ['read:user-data'], []), P('b', ['role:web'], [], ['read:user-data'])];
  t.equal(evaluate(compileRules(both, web), 'read', 'user-data').allowed, false);
});

t.test('policy store: put, list, delete, change events', async (t) => {
  const store = new MemoryStore();
  const svc = new PolicyService(store);
  let changes = 0;
  svc.onChange(() => changes++);
  await svc.put(P('p1', ['role:web'], [], ['read:user-data']));
  t.same((await store.get<PolicyRecord>('policy/p1'))?.deny, ['read:user-data']);
  const again = new PolicyService(store);
  await again.load();
  t.same(
    again.all().map((p) => p.name),
    ['p1'],
    'survives a reload',
  );
  await t.rejects(svc.put(P('p2', ['nobody'], ['read:*'], [])), { code: 'BERTH_ERR_INVALID_ARGUMENT' });
  await svc.delete('p1');
  t.throws(() => svc.get('p1'), BerthError);
  t.equal(changes, 2);
});

t.test('instance inputs: blobs by hash only, validation', async (t) => {
  const p = prepareInputs({
    user_data: Buffer.from('#cloud-config\n').toString('base64'),
    ssh_keys: [{ name: 'k', key: 'ssh-ed25519 AAAA k' }],
    tokens: 'required',
    meta: { a: 'b' },
  });
  t.same(p.fields.user_data, {
    bytes: 14,
    sha256: createHash('sha256').update('#cloud-config\n').digest('hex'),
  });
  t.same(p.fields.tokens, 'required');
  t.notOk(JSON.stringify(p.fields).includes('cloud-config'), 'the record never holds user-data');
  t.same(
    p.ops('i-1').map((o) => o.key),
    ['userdata/i-1'],
  );
  t.equal(
    fieldOf(() => prepareInputs({ user_data: '***' })),
    'user_data',
  );
  t.equal(
    fieldOf(() => prepareInputs({ ssh_keys: [{ name: 'k', key: 'not a key' }] })),
    'ssh_keys.0',
  );
  t.equal(
    fieldOf(() => prepareInputs({ meta: { 'a b': 'x' } })),
    'meta.a b',
  );
});

t.test('host keys are made once and kept', async (t) => {
  const store = new MemoryStore();
  const [a, b] = await Promise.all([loadOrCreateKeys(store), loadOrCreateKeys(store)]);
  t.equal(a.publicKeyPem, b.publicKeyPem, 'two racing loads agree on one key set');
  t.ok(await store.get(KEYS_KEY));
  const c = await loadOrCreateKeys(store);
  t.equal(c.tokenKey.toString('hex'), a.tokenKey.toString('hex'));
  const sig = c.sign('hello');
  t.ok(verifySignature(a.publicKeyPem, 'hello', sig));
});

t.test('endpoint cache: one berthd call per IP, invalidation, in-flight epoch', async (t) => {
  const calls: string[] = [];
  let release: () => void = () => {};
  let hold = false;
  const base = {
    id: 'i-1',
    uuid: 'u',
    name: 'n',
    hostname: 'n',
    runtime: 'netns',
    mac: '0a:b7:e7:00:00:01',
    ip: '10.0.0.5',
    port: 'p1',
    network: { name: 'net', subnet: '10.0.0.0/24', mtu: 1500, dns: [] },
    sshKeys: [],
    meta: {},
    hostId: 'h',
    createdAt: 'now',
  };
  const bundle = {
    ok: true as const,
    mac: base.mac,
    port: 'p1',
    instance: 'i-1',
    identity: 'instance:i-1',
    rules: [],
    tokens: 'optional' as const,
    tokenKey: Buffer.alloc(32),
    doc: { ...base, identity: { document: identityDocument(base), signature: 's' } },
  };
  const cache = new EndpointCache('net', async <T>(method: string, params: unknown): Promise<T> => {
    calls.push(`${method} ${(params as { ip: string }).ip}`);
    if (hold)
      await new Promise<void>((r) => {
        release = r;
      });
    return bundle as T;
  });
  const r1 = await cache.lookup('10.0.0.5');
  t.ok(r1.ok);
  await cache.lookup('10.0.0.5');
  t.equal(calls.length, 1, 'second lookup is served from memory');
  cache.invalidate(['10.0.0.5']);
  await cache.lookup('10.0.0.5');
  t.equal(calls.length, 2, 'after invalidation berthd is asked again');
  await cache.lookup('10.0.0.6');
  t.equal(calls.length, 3);
  cache.invalidate([], ['0A:B7:E7:99:99:99']);
  await cache.lookup('10.0.0.5');
  t.equal(calls.length, 3, 'another MAC moving leaves cached callers alone');
  cache.invalidate([], [base.mac.toUpperCase()]);
  await cache.lookup('10.0.0.5');
  await cache.lookup('10.0.0.6');
  t.equal(calls.length, 5, "the moved MAC's callers are asked again (both IPs resolved to it here)");
  hold = true;
  const pending = cache.lookup('10.0.0.9');
  cache.invalidate();
  release();
  await pending;
  t.equal(cache.size, 0, 'a lookup in flight across an invalidation is not kept');
});

t.test(
  'a stored policy with a resource name from before the one-resource model never guards less',
  async (t) => {
    const who: CallerIdentity = { instance: 'i-1', name: 'old', mac: '0a:b7:e7:00:00:01' };
    const stored = (deny: string[], allow: string[] = []): PolicyRecord[] => [
      { name: 'legacy', identities: ['*'], deny, allow },
      { name: 'none', identities: ['*'], deny: ['read:meta-data/*', 'read:user-data'], allow: [] },
    ];
    const decide = (p: PolicyRecord[], resource: string) =>
      evaluate(compileRules(p.slice(0, 1), who), 'read', resource).allowed;
    t.equal(
      decide(stored(['read:meta-data/local-hostname']), 'meta-data/hostname'),
      false,
      'a rename maps across',
    );
    t.equal(decide(stored(['read:meta-data/reservation-id']), 'meta-data/instance-id'), false);
    for (const doc of ['meta-data/openstack', 'meta-data/nocloud', 'meta-data/identity']) {
      t.equal(
        decide(stored([`read:${doc}`]), 'meta-data/public-keys'),
        false,
        `deny ${doc} still denies the keys`,
      );
      const allowOnly = evaluate(compileRules(stored([], [`read:${doc}`]), who), 'read', 'meta-data/tags');
      t.equal(allowOnly.allowed, false, `allow ${doc} allows nothing under a wider deny`);
    }
    t.throws(
      () =>
        validatePolicy({
          name: 'new',
          identities: ['*'],
          deny: ['read:meta-data/local-hostname'],
          allow: [],
        }),
      /deny\.0: "meta-data\/local-hostname" is now called "meta-data\/hostname"/,
      'new policies must use the current names',
    );
  },
);
