// The admin API in-process (fastify inject) over the real services, a memory
// store and a recording driver: status codes, error bodies, audit of refusals.
import pino from 'pino';
import t, { type Test } from 'tap';
import { buildAdminServer } from '../../agent/api/server.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { buildServices } from '../../agent/daemon/services.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { FakeDriver } from '../fakes/fake-driver.js';
import { FakeObserver } from '../fakes/fake-observer.js';

async function setup(t: Test) {
  const store = new MemoryStore();
  const driver = new FakeDriver();
  const log = pino({ level: 'silent' });
  const services = await buildServices(
    store,
    { ...EMBEDDED_DEFAULT, networks: [], name_prefix: 'tst' },
    log,
    () => driver,
    () => new FakeObserver(),
  );
  const audit = await AuditLog.open(store);
  const app = await buildAdminServer(
    { status: { status: async () => ({}) as never }, audit, ...services },
    log,
  );
  t.teardown(() => app.close());
  return { app, audit, driver, store };
}

t.test('networks: create, show, list, delete, with catalog errors', async (t) => {
  const { app, audit, driver } = await setup(t);
  const bad = await app.inject({
    method: 'POST',
    url: '/v1/networks',
    payload: { name: 'a', subnet: '10.0.0.0/33' },
  });
  t.equal(bad.statusCode, 400);
  t.same(bad.json(), {
    error: {
      code: 'BERTH_ERR_INVALID_ARGUMENT',
      message: 'subnet: "10.0.0.0/33" is not a CIDR',
      field: 'subnet',
    },
  });
  const badName = await app.inject({
    method: 'POST',
    url: '/v1/networks',
    payload: { name: 'A_B', subnet: '10.0.0.0/24' },
  });
  t.equal(badName.statusCode, 400);
  t.match(badName.json(), { error: { field: 'name' } });
  const missing = await app.inject({ method: 'POST', url: '/v1/networks', payload: { name: 'a' } });
  t.match(missing.json(), {
    error: { code: 'BERTH_ERR_INVALID_ARGUMENT', message: 'subnet: is required', field: 'subnet' },
  });
  const vlan = await app.inject({
    method: 'POST',
    url: '/v1/networks',
    payload: { name: 'v', subnet: '10.1.0.0/24', vlan: 100, uplink: 'eth0' },
  });
  t.equal(vlan.statusCode, 422);
  t.match(vlan.json(), { error: { code: 'BERTH_ERR_KERNEL_FEATURE' } });

  const made = await app.inject({
    method: 'POST',
    url: '/v1/networks',
    payload: { name: 'a', subnet: '10.0.0.0/24', gateway: '10.0.0.1' },
  });
  t.equal(made.statusCode, 201);
  t.match(made.json(), {
    name: 'a',
    bridge: /^tstb/,
    endpoint: 'tst-ep-a',
    service_ip: '10.0.0.254',
    vlan: null,
    guard_drops: [],
  });
  const inst = await app.inject({
    method: 'POST',
    url: '/v1/instances',
    payload: { name: 'g1', network: 'a' },
  });
  t.equal(inst.statusCode, 201);
  const port = inst.json().nics[0].port;
  driver.drops = [
    { port, reason: 'mac-spoof', packets: 3, bytes: 180 },
    { port: 'tstpffffffff0', reason: 'mac-spoof', packets: 1, bytes: 60 },
  ];
  const shown = await app.inject({ method: 'GET', url: '/v1/networks/a' });
  t.same(
    shown.json().guard_drops,
    [{ port, reason: 'mac-spoof', packets: 3, bytes: 180 }],
    'only this network’s ports',
  );
  t.equal((await app.inject({ method: 'GET', url: '/v1/networks' })).json().networks.length, 1);
  const inUse = await app.inject({ method: 'DELETE', url: '/v1/networks/a' });
  t.equal(inUse.statusCode, 409);
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/instances/g1' })).statusCode, 204);
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/networks/a' })).statusCode, 204);
  t.equal((await app.inject({ method: 'GET', url: '/v1/networks/a' })).statusCode, 404);

  const refusals = await audit.query({ event: 'admin.request' });
  t.same(
    refusals.map((r) => r.detail?.status),
    [400, 400, 400, 422, 409, 404],
    'every refusal was audited',
  );
});

t.test('instances: show, list, exec, pool usage, unknown routes', async (t) => {
  const { app } = await setup(t);
  await app.inject({ method: 'POST', url: '/v1/networks', payload: { name: 'a', subnet: '10.0.0.0/24' } });
  const made = (
    await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'g1', network: 'a' } })
  ).json();
  t.match(made, {
    name: 'g1',
    runtime: 'netns',
    state: 'running',
    netns: 'tst-g-g1',
    nics: [{ network: 'a', mac: /^0a:b7:e7:/, ip: '10.0.0.1' }],
  });
  t.same((await app.inject({ method: 'GET', url: '/v1/instances/g1' })).json(), made);
  t.same((await app.inject({ method: 'GET', url: `/v1/instances/${made.id}` })).json(), made, 'by id too');
  t.equal((await app.inject({ method: 'GET', url: '/v1/instances' })).json().instances.length, 1);
  const exec = await app.inject({
    method: 'POST',
    url: '/v1/instances/g1/exec',
    payload: { argv: ['hostname'] },
  });
  t.same(exec.json(), { code: 0, stdout: 'hostname\n', stderr: '' });
  const noArgv = await app.inject({ method: 'POST', url: '/v1/instances/g1/exec', payload: { argv: [] } });
  t.equal(noArgv.statusCode, 400);
  t.match((await app.inject({ method: 'GET', url: '/v1/pool' })).json(), {
    pools: [{ prefix: '0a:b7:e7', assigned: 1, quarantined: 0 }],
  });
  const nope = await app.inject({ method: 'GET', url: '/v1/nope' });
  t.same(nope.json(), {
    error: { code: 'BERTH_ERR_NOT_FOUND', message: 'could not find route "GET /v1/nope": no such endpoint' },
  });
  const badJson = await app.inject({
    method: 'POST',
    url: '/v1/instances',
    payload: '{',
    headers: { 'content-type': 'application/json' },
  });
  t.equal(badJson.statusCode, 400);
  t.match(badJson.json(), {
    error: { code: 'BERTH_ERR_INVALID_ARGUMENT', message: /could not parse request/ },
  });
});

t.test('a MAC already live on a bridge is skipped by the pool', async (t) => {
  const store = new MemoryStore();
  const observer = new FakeObserver();
  observer.liveMacs.add('0a:b7:e7:00:00:01');
  const services = await buildServices(
    store,
    { ...EMBEDDED_DEFAULT, networks: [{ name: 'a', subnet: '10.0.0.0/24' }], name_prefix: 'tst' },
    pino({ level: 'silent' }),
    () => new FakeDriver(),
    () => observer,
  );
  const g = await services.instances.create({ name: 'g', network: 'a' });
  t.equal(g.nics[0]?.mac, '0a:b7:e7:00:00:02');
});
