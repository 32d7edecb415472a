// berthd's metadata side in-process: real services over a memory store, a
// fake observer for "who is at this IP", the admin API for policies and
// instance inputs, and the endpoint's cache and HTTP app calling berthd's
// handlers directly instead of over IPC.
import pino from 'pino';
import t from 'tap';
import { buildAdminServer } from '../../agent/api/server.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { buildServices } from '../../agent/daemon/services.js';
import type { Notice } from '../../agent/endpoint/protocol.js';
import type { EndpointSupervisor } from '../../agent/endpoint/supervisor.js';
import { EndpointCache } from '../../agent/metadata/endpoint-cache.js';
import { buildMetadataApp } from '../../agent/metadata/http.js';
import { verifySignature } from '../../agent/metadata/keys.js';
import { startMetadata } from '../../agent/metadata/wire.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { FakeDriver } from '../fakes/fake-driver.js';
import { FakeObserver } from '../fakes/fake-observer.js';

const H = { host: '169.254.169.254' };

t.test('instance inputs, policies and the endpoint path, in-process', async (t) => {
  const store = new MemoryStore();
  const log = pino({ level: 'silent' });
  const observer = new FakeObserver();
  const services = await buildServices(
    store,
    { ...EMBEDDED_DEFAULT, networks: [], name_prefix: 'tmd' },
    log,
    () => new FakeDriver(),
    () => observer,
  );
  const audit = await AuditLog.open(store);
  const md = await startMetadata({ store, audit, services, hostId: () => 'hv-unit', log });
  const notices: Notice[] = [];
  md.attach({ broadcast: (n: Notice) => notices.push(n) } as unknown as EndpointSupervisor);
  const api = await buildAdminServer(
    {
      status: { status: async () => ({}) as never },
      audit,
      ...services,
      policies: md.policies,
      metadataPublicKey: md.keys.publicKeyPem,
    },
    log,
  );
  t.teardown(() => api.close());

  t.equal(
    (
      await api.inject({
        method: 'POST',
        url: '/v1/networks',
        payload: { name: 'n', subnet: '10.5.0.0/24', gateway: '10.5.0.1', dns: ['10.5.0.1'] },
      })
    ).statusCode,
    201,
  );
  const ud = Buffer.from('#!/bin/sh\necho hi\n');
  const created = await api.inject({
    method: 'POST',
    url: '/v1/instances',
    payload: {
      name: 'g1',
      network: 'n',
      user_data: ud.toString('base64'),
      ssh_keys: [{ name: 'k1', key: 'ssh-ed25519 AAAAkey k1' }],
      role: 'web',
      meta: { tier: 'front' },
    },
  });
  t.equal(created.statusCode, 201, created.body);
  const g1 = created.json();
  t.match(g1, { role: 'web', tokens: 'optional', meta: { tier: 'front' }, user_data: { bytes: ud.length } });
  t.notOk(created.body.includes(ud.toString('base64')), 'the record carries no user-data');
  t.ok(
    notices.some(
      (n) => n.t === 'invalidate' && n.ips?.includes(g1.nics[0].ip) && n.macs?.includes(g1.nics[0].mac),
    ),
    "a created instance invalidates the endpoints' views at its addresses",
  );
  const bad = await api.inject({
    method: 'POST',
    url: '/v1/instances',
    payload: { name: 'g2', network: 'n', tokens: 'sometimes' },
  });
  t.equal(bad.statusCode, 400);

  const nic = g1.nics[0];
  observer.byIp.set(`n/${nic.ip}`, { ok: true, mac: nic.mac, port: nic.port, instance: g1.id });
  // The endpoint's side, calling berthd's handlers directly; inject comes from 127.0.0.1.
  const call = async <T>(method: string, params: unknown): Promise<T> => {
    const p = params as { ip?: string };
    const fixed = p.ip === '127.0.0.1' ? { ...p, ip: nic.ip } : p;
    return (await (md.calls[method] as (n: string, p: unknown) => Promise<unknown>)('n', fixed)) as T;
  };
  const cache = new EndpointCache('n', call);
  const { app } = buildMetadataApp(cache);
  const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
  t.equal((await get('/latest/meta-data/instance-id')).body, g1.id);
  t.equal((await get('/latest/user-data')).body, ud.toString());
  t.equal((await get('/openstack/latest/meta_data.json')).json().uuid, g1.uuid);
  const doc = (await get('/latest/dynamic/instance-identity/document')).body;
  const sig = (await get('/latest/dynamic/instance-identity/signature')).body;
  t.ok(
    verifySignature(md.keys.publicKeyPem, doc, sig),
    'the document is signed by the key kept in the store',
  );
  const hostKey = (await api.inject({ method: 'GET', url: '/v1/metadata/host-key' })).json();
  t.ok(
    verifySignature(hostKey.public_key_pem, doc, sig),
    'and verifies with the key the admin API publishes',
  );
  t.match(JSON.parse(doc), { instanceId: g1.id, hostId: 'hv-unit', mac: nic.mac, privateIp: nic.ip });
  // The document, then the cache emptied (a create elsewhere on the host), then the
  // signature: still a pair that verifies, because the signed document is kept.
  cache.invalidate();
  await new Promise((r) => setTimeout(r, 5));
  const sigLater = (await get('/latest/dynamic/instance-identity/signature')).body;
  t.equal(sigLater, sig, 'the same signature after the cache was emptied');
  t.ok(
    verifySignature(md.keys.publicKeyPem, doc, sigLater),
    'document and signature from two lookups still pair',
  );

  // Policies through the admin API; the change invalidates, the next request sees it.
  const put = await api.inject({
    method: 'PUT',
    url: '/v1/policies/no-ud',
    payload: { name: 'no-ud', identities: ['role:web'], allow: [], deny: ['read:user-data'] },
  });
  t.equal(put.statusCode, 200, put.body);
  t.equal(
    (
      await api.inject({
        method: 'PUT',
        url: '/v1/policies/x',
        payload: { name: 'y', identities: ['*'], allow: ['read:*'], deny: [] },
      })
    ).statusCode,
    400,
  );
  t.equal((await api.inject({ method: 'GET', url: '/v1/policies' })).json().policies.length, 1);
  t.equal((await api.inject({ method: 'GET', url: '/v1/policies/no-ud' })).json().name, 'no-ud');
  const last = notices.at(-1);
  if (last?.t === 'invalidate') cache.invalidate(last.all ? undefined : last.ips);
  t.equal((await get('/latest/user-data')).statusCode, 403);
  const refusals = await audit.query({ event: 'metadata.request', outcome: 'refused' });
  t.match(refusals.at(-1), {
    mac: nic.mac,
    port: nic.port,
    ip: nic.ip,
    network: 'n',
    instance: g1.id,
    path: 'GET /latest/user-data',
    reason: /no-ud/,
  });
  t.equal((await api.inject({ method: 'DELETE', url: '/v1/policies/no-ud' })).statusCode, 204);
  t.equal((await api.inject({ method: 'DELETE', url: '/v1/policies/no-ud' })).statusCode, 404);

  // An update through the admin API: the endpoints drop the views at g1's
  // addresses (by MAC here: inject's caller is 127.0.0.1), and the next
  // read serves the new value under a new ETag; the unchanged id keeps its.
  const tier = await get('/latest/meta-data/tags/instance/tier');
  const idTag = (await get('/latest/meta-data/instance-id')).headers.etag;
  t.equal(tier.body, 'front');
  const patched = await api.inject({
    method: 'PATCH',
    url: '/v1/instances/g1',
    payload: { meta: { tier: 'back' } },
  });
  t.equal(patched.statusCode, 200, patched.body);
  t.equal(patched.json().metadata_version, 2);
  const told = notices.at(-1);
  t.match(told, { t: 'invalidate', ips: [nic.ip], macs: [nic.mac] }, 'only g1 is forgotten');
  if (told?.t === 'invalidate') cache.invalidate(told.ips, told.macs);
  const tier2 = await get('/latest/meta-data/tags/instance/tier');
  t.equal(tier2.body, 'back', 'the next read has the new value');
  t.not(tier2.headers.etag, tier.headers.etag, 'under a new ETag');
  t.equal(
    (await get('/latest/meta-data/instance-id')).headers.etag,
    idTag,
    'an unchanged path keeps its tag',
  );

  // Password: once, bounded, then 409; berthd re-resolves the caller.
  const post = (payload: string) =>
    app.inject({
      method: 'POST',
      url: '/openstack/latest/password',
      headers: { ...H, 'content-type': 'text/plain' },
      payload,
    });
  t.equal((await post('x'.repeat(1021))).statusCode, 400, 'more than 4x255 bytes: 400');
  t.equal((await post('pw1')).statusCode, 200);
  t.equal((await post('pw2')).statusCode, 409);
  t.equal((await get('/openstack/latest/password')).body, 'pw1', 'the stored password is served back');

  // An unresolved caller: 403 and an audit record written by berthd.
  observer.byIp.delete(`n/${nic.ip}`);
  cache.invalidate();
  t.equal((await get('/latest/meta-data/instance-id')).statusCode, 403);
  t.match((await audit.query({ event: 'metadata.request' })).at(-1), { reason: 'no-neighbour', ip: nic.ip });

  // Deleting the instance drops its blobs with it.
  t.equal((await api.inject({ method: 'DELETE', url: `/v1/instances/g1` })).statusCode, 204);
  t.equal(await store.get(`userdata/${g1.id}`), undefined);
  t.equal(await store.get(`password/${g1.id}`), undefined);
  md.service.decisions('n', { counts: { x: 1 } });
});
