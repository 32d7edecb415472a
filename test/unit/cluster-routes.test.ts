// The cluster admin routes through fastify inject, single-host mode: hosts,
// status and directory answer for this host; an identity document that does
// not verify is answered valid=false and audited as a refusal under
// admin.identity.verify; a forget refused is audited with the host it named.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import type { PeerCredentials } from '../../agent/api/peer-credentials.js';
import { buildAdminServer } from '../../agent/api/server.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { buildServices } from '../../agent/daemon/services.js';
import { loadOrCreateKeys } from '../../agent/metadata/keys.js';
import { ClusterService } from '../../agent/services/cluster.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { FakeDriver } from '../fakes/fake-driver.js';
import { FakeObserver } from '../fakes/fake-observer.js';
import { instanceDoc } from '../helpers/metadata_unit.js';

const peers: PeerCredentials = { of: async () => ({ pid: 77, uid: 0, gid: 0 }) };

t.test('cluster routes in single-host mode', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-cluster-routes-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const log = pino({ level: 'silent' });
  const driver = new FakeDriver();
  const services = await buildServices(
    store,
    { ...EMBEDDED_DEFAULT, networks: [], name_prefix: 'tst', state_dir: dir },
    log,
    () => driver,
    () => new FakeObserver(),
  );
  const keys = await loadOrCreateKeys(store);
  const service = new ClusterService({
    cluster: undefined,
    instances: services.instances,
    hostId: 'hv-test',
    publicKeyPem: keys.publicKeyPem,
    quarantine: EMBEDDED_DEFAULT.quarantine,
  });
  const audit = await AuditLog.open(store);
  const app = await buildAdminServer(
    {
      status: { status: async () => ({}) as never },
      audit,
      ...services,
      peers,
      clusterService: { service, hostId: 'hv-test' },
    },
    log,
  );
  t.teardown(() => app.close());

  const hosts = (await app.inject({ method: 'GET', url: '/v1/hosts' })).json();
  t.match(hosts, { mode: 'single-host', self: 'hv-test', hosts: [{ id: 'hv-test', state: 'alive' }] });
  t.same((await app.inject({ method: 'GET', url: '/v1/cluster/status' })).json(), {
    mode: 'single-host',
    host_id: 'hv-test',
  });
  t.same((await app.inject({ method: 'GET', url: '/v1/directory' })).json(), { instances: [] });

  const { document } = instanceDoc('i-0a', '0a:b7:e7:00:00:01', '10.77.0.2', { hostId: 'hv-test' }).identity;
  const good = await app.inject({
    method: 'POST',
    url: '/v1/identity/verify',
    payload: { document, signature: keys.sign(document) },
  });
  t.match(good.json(), { valid: true, host: 'hv-test', instance_id: 'i-0a' });
  const tampered = document.replace('10.77.0.2', '10.77.0.3');
  const bad = await app.inject({
    method: 'POST',
    url: '/v1/identity/verify',
    payload: { document: tampered, signature: keys.sign(document) },
  });
  t.equal(bad.statusCode, 200);
  t.match(bad.json(), { valid: false, reason: /does not match/ });

  const forget = await app.inject({ method: 'POST', url: '/v1/hosts/hv-test/forget' });
  t.equal(forget.statusCode, 409);
  const records = (await audit.query({})).filter((r) => r.event.startsWith('admin.'));
  t.match(
    records.map((r) => [r.event, r.outcome]),
    [
      ['admin.identity.verify', 'allowed'],
      ['admin.identity.verify', 'refused'],
      ['admin.request', 'refused'],
    ],
  );
  t.match(records[1], { reason: /not verified: .*does not match/, instance: 'i-0a', peer: { pid: 77 } });
  t.match(records[2], { path: 'POST /v1/hosts/hv-test/forget', detail: { change: 'admin.host.forget' } });
});
