// The logic under the cluster's operator surface, over fakes of the mirror
// and the store: which keys verify (live, lost, forgotten within the window),
// the JWKS shape a guest reads, every reason a document fails, the bundle
// formats `identity verify` reads, and the transactions `host forget` writes
// (guards on the exact records it read; records that changed are left alone).
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import t from 'tap';
import { parseVerifyInput } from '../../agent/cli/commands/identity.js';
import { type ForgottenHost, type HostRecord, keyFingerprint } from '../../agent/cluster/registry.js';
import { ClusterService } from '../../agent/services/cluster.js';
import { entryBatch, forgetHost, hostBatch } from '../../agent/services/host-forget.js';
import { jwks, nextExpiry, trustedKeys, verifyIdentity } from '../../agent/services/host-keys.js';
import type { DirectoryEntry } from '../../agent/services/instances.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import type { Store } from '../../base/store.js';

const NOW = Date.parse('2026-12-03T12:00:00Z');
const HOUR = 3_600_000;

function host(id: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const record: HostRecord = {
    id,
    address: `10.0.0.${id.length}`,
    public_key_pem: pem,
    fingerprint: keyFingerprint(pem),
    registered_at: '2026-12-01T00:00:00.000Z',
    version: 'test',
    capacity: { vcpus: 2, memory_mib: 1024 },
  };
  const doc = (instance: string) => `${JSON.stringify({ instanceId: instance, hostId: id }, null, 2)}\n`;
  return { record, sign: (d: string) => sign(null, Buffer.from(d), privateKey).toString('base64'), doc };
}

const hv1 = host('hv1');
const hv2 = host('hv2');
const hv3 = host('hv3');
const hv4 = host('hv4');
const forgotten = (h: typeof hv1, hoursAgo: number): ForgottenHost => ({
  ...h.record,
  forgotten_at: new Date(NOW - hoursAgo * HOUR).toISOString(),
  forgotten_by: 'uid 0 (pid 1) on hv1',
});
const sources = {
  hosts: [
    { record: hv1.record, alive: true },
    { record: hv2.record, alive: false },
  ],
  forgotten: [forgotten(hv3, 1), forgotten(hv4, 30)],
  forgottenKeyHours: 24,
  now: NOW,
};

t.test('trusted keys: alive, lost, and forgotten only inside the window', async (t) => {
  const keys = trustedKeys(sources);
  t.same(
    keys.map((k) => [k.host, k.state]),
    [
      ['hv1', 'alive'],
      ['hv2', 'lost'],
      ['hv3', 'forgotten'],
    ],
  );
  t.equal(nextExpiry(sources), NOW + 23 * HOUR, 'the key set next changes when hv3’s window closes');
  t.same(
    trustedKeys({ ...sources, forgottenKeyHours: 0 }).length,
    2,
    'a zero window trusts no forgotten key',
  );
});

t.test('JWKS: RFC 8037 OKP keys named by host id that verify the host’s documents', async (t) => {
  const set = jwks(trustedKeys(sources));
  t.equal(set.keys.length, 3);
  const k1 = set.keys[0];
  t.match(k1, { kty: 'OKP', crv: 'Ed25519', kid: 'hv1', use: 'sig', alg: 'EdDSA' });
  t.match(k1?.x, /^[A-Za-z0-9_-]{43}$/, 'x is the 32-byte key, base64url');
  const doc = hv1.doc('i-1');
  const key = createPublicKey({ key: k1 as never, format: 'jwk' });
  t.ok(verify(null, Buffer.from(doc), key, Buffer.from(hv1.sign(doc), 'base64')), 'the JWK verifies');
  t.notOk(
    verify(
      null,
      Buffer.from(doc),
      createPublicKey({ key: set.keys[1] as never, format: 'jwk' }),
      Buffer.from(hv1.sign(doc), 'base64'),
    ),
    'another host’s JWK does not',
  );
});

t.test('verify: each outcome and its reason', async (t) => {
  const keys = trustedKeys(sources);
  const old = (h: string) => sources.forgotten.find((f) => f.id === h);
  const check = (doc: string, sig: string) => verifyIdentity(doc, sig, keys, old);
  const d1 = hv1.doc('i-aa');
  t.match(check(d1, hv1.sign(d1)), { valid: true, host: 'hv1', host_state: 'alive', instance_id: 'i-aa' });
  t.match(check(hv2.doc('i-b'), hv2.sign(hv2.doc('i-b'))), { valid: true, host_state: 'lost' });
  t.match(check(hv3.doc('i-c'), hv3.sign(hv3.doc('i-c'))), { valid: true, host_state: 'forgotten' });
  const tampered = d1.replace('i-aa', 'i-ab');
  t.match(check(tampered, hv1.sign(d1)), { valid: false, host: 'hv1', reason: /does not match/ });
  const forged = hv1.doc('i-x');
  t.match(
    check(forged, hv2.sign(forged)),
    { valid: false, reason: /does not match/ },
    'signed by another host',
  );
  t.match(check(hv4.doc('i-d'), hv4.sign(hv4.doc('i-d'))), {
    valid: false,
    host_state: 'forgotten',
    reason: /longer ago than its key is trusted/,
  });
  const stranger = host('hv9');
  t.match(check(stranger.doc('i-e'), stranger.sign(stranger.doc('i-e'))), {
    valid: false,
    reason: /not known to this cluster/,
  });
  t.match(check('{"instanceId":"i-1"}', hv1.sign('x')), { valid: false, reason: /names no hostId/ });
  t.match(check('not json', hv1.sign('x')), { valid: false, reason: /not JSON/ });
  t.match(check(d1, 'c2hvcnQ='), { valid: false, reason: /not a base64 Ed25519 signature/ });
});

t.test('identity verify reads a bundle or a raw document with a signature file', async (t) => {
  const doc = hv1.doc('i-1');
  const sig = hv1.sign(doc);
  t.same(parseVerifyInput(JSON.stringify({ document: doc, signature: sig })), {
    document: doc,
    signature: sig,
  });
  t.same(
    parseVerifyInput(doc, `${sig}\n`),
    { document: doc, signature: sig },
    'raw bytes kept, signature trimmed',
  );
  t.match(parseVerifyInput(doc), { error: /bare identity document/ });
  t.match(parseVerifyInput('nope'), { error: /not JSON/ });
  t.match(parseVerifyInput('{"document": 1}'), { error: /not a bundle/ });
  t.match(parseVerifyInput(doc, '  \n'), { error: /empty/ });
});

/** A fake mirror over a MemoryStore: synchronous reads of the same data. */
async function cluster(entries: Record<string, unknown>) {
  const store = new MemoryStore();
  await store.batch(Object.entries(entries).map(([key, value]) => ({ type: 'put' as const, key, value })));
  const data = new Map<string, unknown>();
  const refresh = async () => {
    data.clear();
    for (const e of await store.list<unknown>('')) data.set(e.key, e.value);
  };
  await refresh();
  const view = {
    get: <T>(k: string) => data.get(k) as T | undefined,
    list: <T>(p: string) =>
      [...data.keys()]
        .filter((k) => k.startsWith(p))
        .sort()
        .map((key) => ({ key, value: data.get(key) as T })),
  };
  const shared: Store = {
    get: (k) => store.get(k),
    list: (p, o) => store.list(p, o),
    batch: async (ops, o) => {
      await store.batch(ops, o);
      await refresh();
    },
    close: async () => {},
  };
  return { store, view, shared, data };
}

const entry = (id: string, name: string, h: string, n: number): DirectoryEntry => ({
  id,
  name,
  host: h,
  runtime: 'netns',
  nics: [{ network: 'shared', mac: `0a:b7:e7:00:00:0${n}`, ip: `10.9.0.${n}` }],
  created_at: '2026-12-01T00:00:00.000Z',
});
const assigned = (instance: string) => ({ state: 'assigned', instance, nic: 0 });

function layout(extra: Record<string, unknown> = {}) {
  const e1 = entry('i-01', 'web1', 'hv2', 1);
  const e2 = entry('i-02', 'web2', 'hv2', 2);
  const e3 = entry('i-03', 'db1', 'hv1', 3);
  const keys: Record<string, unknown> = {
    'host/hv1': hv1.record,
    'host/hv2': hv2.record,
    'alive/hv1': { pid: 1, since: 'x' },
  };
  for (const e of [e1, e2, e3]) {
    keys[`directory/${e.id}`] = e;
    keys[`instance-name/${e.name}`] = e.id;
    keys[`mac/${e.nics[0]?.mac}`] = assigned(e.id);
    keys[`ip/shared/${e.nics[0]?.ip}`] = assigned(e.id);
  }
  return { e1, e2, e3, keys: { ...keys, ...extra } };
}

t.test('forget: one guarded transaction per instance, quarantine not free', async (t) => {
  const { e1, keys } = layout({ 'ip/shared/10.9.0.1': assigned('i-99') });
  const c = await cluster(keys);
  const b = entryBatch(e1, c.view, { macSeconds: 3600, ipSeconds: 600 }, NOW);
  t.same(
    b.ops.map((o) => [o.type, o.key]),
    [
      ['del', 'directory/i-01'],
      ['del', 'instance-name/web1'],
      ['put', 'mac/0a:b7:e7:00:00:01'],
    ],
    'the IP now assigned to another instance is not touched',
  );
  t.same(b.leftAlone, ['ip/shared/10.9.0.1']);
  t.match(b.ops[2], { value: { state: 'quarantined', instance: 'i-01', until: NOW + 3600 * 1000 } });
  t.same(b.guards, [
    { key: 'directory/i-01', equals: e1 },
    { key: 'instance-name/web1', equals: 'i-01' },
    { key: 'mac/0a:b7:e7:00:00:01', equals: assigned('i-01') },
  ]);
  const h = hostBatch(hv2.record, 'me', NOW);
  t.same(h.guards, [
    { key: 'host/hv2', equals: hv2.record },
    { key: 'alive/hv2', absent: true },
  ]);
  t.match(h.forgotten, { id: 'hv2', forgotten_by: 'me', forgotten_at: new Date(NOW).toISOString() });
});

t.test('forget: refusals, the whole job, and idempotence', async (t) => {
  const { keys } = layout();
  const c = await cluster(keys);
  const deps = {
    view: c.view,
    store: c.shared,
    quarantine: { macSeconds: 3600, ipSeconds: 600 },
    selfId: 'hv1',
    isAlive: (h: string) => c.view.get(`alive/${h}`) !== undefined,
    now: () => NOW,
  };
  await t.rejects(forgetHost('hv1', 'me', deps), { code: 'BERTH_ERR_CONFLICT', message: /this host/ });
  await t.rejects(forgetHost('hv7', 'me', deps), { code: 'BERTH_ERR_NOT_FOUND' });
  await t.rejects(forgetHost('hv1', 'me', { ...deps, selfId: 'hv3' }), {
    code: 'BERTH_ERR_CONFLICT',
    message: /it is alive/,
  });
  const r = await forgetHost('hv2', 'uid 0 (pid 7) on hv1', deps);
  t.same(
    r.instances.map((i) => i.id),
    ['i-01', 'i-02'],
  );
  t.equal(r.quarantined.length, 4);
  t.equal(c.view.get('host/hv2'), undefined, 'the host record moved');
  t.match(c.view.get('forgotten/hv2'), { id: 'hv2', forgotten_by: 'uid 0 (pid 7) on hv1' });
  t.same(
    c.view.list<DirectoryEntry>('directory/').map((e) => e.value.host),
    ['hv1'],
    'none of its instances are in the directory',
  );
  t.equal(c.view.get('instance-name/web1'), undefined);
  t.match(c.view.get('mac/0a:b7:e7:00:00:02'), { state: 'quarantined', until: NOW + 3600 * 1000 });
  t.match(c.view.get('ip/shared/10.9.0.2'), { state: 'quarantined', until: NOW + 600 * 1000 });
  t.same(c.view.get('mac/0a:b7:e7:00:00:03'), assigned('i-03'), 'another host’s records untouched');
  const again = await forgetHost('hv2', 'someone else', deps);
  t.match(again, { already: true, instances: [], forgotten_by: 'uid 0 (pid 7) on hv1' }, 'idempotent');
});

t.test('forget: a host that comes back mid-way is not forgotten', async (t) => {
  const { keys } = layout();
  const c = await cluster(keys);
  const deps = {
    view: c.view,
    store: {
      ...c.shared,
      // The host's lease is granted again just before the last transaction.
      batch: async (ops: Parameters<Store['batch']>[0], o?: Parameters<Store['batch']>[1]) => {
        if (ops.some((op) => op.key === 'host/hv2'))
          await c.store.batch([{ type: 'put', key: 'alive/hv2', value: {} }]);
        return c.shared.batch(ops, o);
      },
    },
    quarantine: { macSeconds: 1, ipSeconds: 1 },
    selfId: 'hv1',
    isAlive: () => false,
  };
  await t.rejects(forgetHost('hv2', 'me', deps), { code: 'BERTH_ERR_CONFLICT', message: /came back/ });
  t.ok(await c.store.get('host/hv2'), 'its host record stays');
});

t.test('single host: this host alone, verifying with its own key', async (t) => {
  const svc = new ClusterService({
    cluster: undefined,
    instances: { all: () => [] },
    hostId: 'hv1',
    publicKeyPem: hv1.record.public_key_pem,
    quarantine: { mac_seconds: 1, ip_seconds: 1 },
  });
  t.match(svc.hosts(), [{ id: 'hv1', state: 'alive', fingerprint: hv1.record.fingerprint, instances: 0 }]);
  t.same(await svc.status(), { mode: 'single-host', host_id: 'hv1' });
  t.same(svc.directory(), []);
  await t.rejects(svc.forget('hv1', 'me'), { code: 'BERTH_ERR_CONFLICT' });
  await t.rejects(svc.forget('hv2', 'me'), { code: 'BERTH_ERR_NOT_FOUND', message: /single host/ });
  const d = hv1.doc('i-1');
  t.match(svc.verify(d, hv1.sign(d)), { valid: true, host: 'hv1' });
  t.match(svc.verify(hv2.doc('i-2'), hv2.sign(hv2.doc('i-2'))), { valid: false });
  t.match(JSON.parse(svc.keySet()), { keys: [{ kid: 'hv1', kty: 'OKP' }] });
});

t.test('cluster status answers with the watch part while etcd is away', async (t) => {
  const { keys } = layout();
  const c = await cluster(keys);
  const svc = new ClusterService({
    cluster: {
      settings: { forgotten_key_hours: 24 },
      kv: { endpoints: ['http://127.0.0.1:1'], status: () => new Promise(() => {}) },
      mirror: {
        ...c.view,
        state: 'disconnected',
        appliedRevision: 41,
        lastEventAt: NOW - 500,
        onChange: () => () => {},
      },
      shared: c.shared,
      requireConnected: () => {
        throw new Error('unreachable');
      },
    },
    instances: { all: () => [] },
    hostId: 'hv1',
    publicKeyPem: hv1.record.public_key_pem,
    quarantine: { mac_seconds: 1, ip_seconds: 1 },
    now: () => NOW,
    statusTimeoutMs: 50,
  });
  const s = await svc.status();
  t.match(s, {
    mode: 'cluster',
    etcd: { endpoints: ['http://127.0.0.1:1'], error: /no answer within 50 ms/ },
    watch: { state: 'disconnected', applied_revision: 41, ms_since_last_event: 500 },
  });
  t.same(
    svc.hosts().map((h) => [h.id, h.state, h.instances]),
    [
      ['hv1', 'alive', 1],
      ['hv2', 'lost', 2],
    ],
  );
  t.same(
    svc.directory().map((e) => `${e.host}/${e.name}`),
    ['hv1/db1', 'hv2/web1', 'hv2/web2'],
    'by host, then name',
  );
  await t.rejects(svc.forget('hv2', 'me'), /unreachable/, 'forget needs etcd');
});
