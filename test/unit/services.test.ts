import pino from 'pino';
import t from 'tap';
import { InstanceService } from '../../agent/services/instances.js';
import { NetworkService } from '../../agent/services/networks.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { MacPool } from '../../hostnet/alloc/mac-pool.js';
import { Names } from '../../hostnet/names.js';
import { FakeDriver } from '../fakes/fake-driver.js';

const log = pino({ level: 'silent' });

async function setup() {
  const store = new MemoryStore();
  const driver = new FakeDriver();
  let instances: InstanceService | undefined;
  const networks = new NetworkService({
    store,
    driver,
    log,
    ipQuarantineSeconds: 600,
    instancesOn: (n) => instances?.countOn(n) ?? 0,
    portsOn: (n) => instances?.portsOn(n) ?? [],
  });
  await networks.load([]);
  const macs = await MacPool.load(store, { prefixes: ['0a:b7:e7'], quarantineSeconds: 3600 });
  instances = new InstanceService({ store, driver, networks, macs, names: new Names('tst'), log });
  await instances.load();
  return { store, driver, networks, instances, macs };
}

t.test('network create validates fields, refuses duplicates and VLANs the kernel cannot tag', async (t) => {
  const { networks, driver, store } = await setup();
  await t.rejects(networks.create({ name: 'a', subnet: '10.0.0.0/33' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'subnet',
    message: 'subnet: "10.0.0.0/33" is not a CIDR',
  });
  await t.rejects(networks.create({ name: 'a', subnet: '10.0.0.0/24', gateway: '10.9.0.1' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'gateway',
  });
  const rec = await networks.create({
    name: 'a',
    subnet: '10.0.0.0/24',
    gateway: '10.0.0.1',
    dns: ['10.0.0.1'],
  });
  t.match(rec, { name: 'a', mtu: 1500, source: 'api' });
  t.same(driver.calls, ['ensureNetwork a']);
  await t.rejects(networks.create({ name: 'a', subnet: '10.1.0.0/24' }), {
    code: 'BERTH_ERR_ALREADY_EXISTS',
  });
  await t.rejects(networks.create({ name: 'v', subnet: '10.2.0.0/24', vlan: 100, uplink: 'eth1' }), {
    code: 'BERTH_ERR_KERNEL_FEATURE',
    message: 'could not create VLAN network "v": the kernel has neither "bridge vlan_filtering" nor "8021q"',
  });
  t.equal(await store.get('network/v'), undefined, 'nothing stored for the refused network');
  driver.featureSet = { dot1q: true, vlanFiltering: true };
  await networks.create({ name: 'v', subnet: '10.2.0.0/24', vlan: 100, uplink: 'eth1' });
  await t.rejects(networks.create({ name: 'w', subnet: '10.3.0.0/24', vlan: 100, uplink: 'eth1' }), {
    code: 'BERTH_ERR_CONFLICT',
    message: /VLAN 100 on uplink "eth1" is already used by network "v"/,
  });
  // Overlapping subnets are fine: each network has its own endpoint namespace.
  await networks.create({ name: 'b', subnet: '10.0.0.0/24' });
  t.same(
    networks.all().map((n) => n.name),
    ['a', 'b', 'v'],
  );
});

t.test('a failed host step leaves no network record behind', async (t) => {
  const { networks, driver, store } = await setup();
  driver.failOn.add('ensureNetwork');
  await t.rejects(networks.create({ name: 'a', subnet: '10.0.0.0/24' }), /ensureNetwork failed on purpose/);
  t.equal(await store.get('network/a'), undefined);
  t.same(networks.all(), []);
  t.same(driver.calls, ['ensureNetwork a', 'removeNetwork a']);
});

t.test('instances: distinct MACs and IPs, guard before port, delete quarantines', async (t) => {
  const { networks, instances, driver, store } = await setup();
  await networks.create({ name: 'a', subnet: '10.0.0.0/24', gateway: '10.0.0.1' });
  const made = [];
  for (let i = 0; i < 20; i++) made.push(await instances.create({ name: `g${i}`, network: 'a' }));
  t.equal(new Set(made.map((m) => m.nics[0]?.mac)).size, 20);
  t.equal(new Set(made.map((m) => m.nics[0]?.ip)).size, 20);
  t.ok(
    made.every((m) => m.state === 'running' && m.id.startsWith('i-') && m.nics[0]?.port.startsWith('tstp')),
  );
  const first = made[0];
  const port = first?.nics[0]?.port as string;
  t.ok(
    driver.calls.indexOf(`guardPort ${port}`) < driver.calls.indexOf(`ensureNetnsGuest tst-g-g0`),
    'guard goes in first',
  );
  await t.rejects(instances.create({ name: 'g0', network: 'a' }), { code: 'BERTH_ERR_ALREADY_EXISTS' });
  await t.rejects(networks.delete('a'), {
    code: 'BERTH_ERR_CONFLICT',
    message: /20 instance\(s\) still use it/,
  });

  for (const m of made) await instances.delete(m.name);
  t.same(instances.all(), []);
  t.equal(driver.guarded.size, 0);
  t.equal(driver.guests.size, 0);
  t.same(await store.list('instance'), [], 'no instance or name records left');
  t.equal((await store.list('mac/')).length, 20, 'MACs stay as quarantine records');
  const next = await instances.create({ name: 'new', network: 'a' });
  t.notOk(
    made.some((m) => m.nics[0]?.mac === next.nics[0]?.mac || m.nics[0]?.ip === next.nics[0]?.ip),
    'a new instance gets neither a quarantined MAC nor a quarantined IP',
  );
  await instances.delete('new');
  await networks.delete('a');
  t.equal(
    (await store.list<{ state: string }>('ip/a/')).filter((r) => r.value.state === 'quarantined').length,
    21,
    "the network's delete keeps its 21 running IP quarantines",
  );
});

t.test('a failed create rolls back the host and releases what it took', async (t) => {
  const { networks, instances, driver, store } = await setup();
  await networks.create({ name: 'a', subnet: '10.0.0.0/24' });
  driver.failOn.add('ensureNetnsGuest');
  await t.rejects(instances.create({ name: 'x', network: 'a' }), {
    code: 'BERTH_ERR_HOST_OP',
    message: /could not create instance "x": ensureNetnsGuest failed on purpose/,
  });
  t.equal(driver.guarded.size, 0, 'the guard rule was removed again');
  t.same(await store.list('instance'), []);
  t.same(instances.all(), []);
});

t.test('recover() undoes an interrupted create and finishes an interrupted delete', async (t) => {
  const { networks, instances, driver, store, macs } = await setup();
  await networks.create({ name: 'a', subnet: '10.0.0.0/24' });
  const keep = await instances.create({ name: 'keep', network: 'a' });
  const gone = await instances.create({ name: 'gone', network: 'a' });
  // Simulate a crash after the batch but before the host work finished.
  await store.batch([{ type: 'put', key: `instance/${gone.id}`, value: { ...gone, state: 'creating' } }]);
  const again = new InstanceService({ store, driver, networks, macs, names: new Names('tst'), log });
  await again.load();
  await again.recover();
  t.same(
    again.all().map((i) => i.name),
    ['keep'],
  );
  t.equal(await store.get(`instance-name/gone`), undefined);
  t.ok(driver.guarded.has(keep.nics[0]?.port as string));
  t.notOk(driver.guests.has('tst-g-gone'));
});

t.test('exec and libvirt runtime answers', async (t) => {
  const { networks, instances } = await setup();
  await networks.create({ name: 'a', subnet: '10.0.0.0/24' });
  await instances.create({ name: 'g', network: 'a' });
  t.same(await instances.exec('g', ['ip', 'addr']), { code: 0, stdout: 'ip addr\n', stderr: '' });
  await t.rejects(instances.create({ name: 'v', network: 'a', runtime: 'libvirt' }), {
    code: 'BERTH_ERR_NOT_IMPLEMENTED',
  });
  await t.rejects(instances.create({ name: 'v', network: 'nope' }), {
    code: 'BERTH_ERR_NOT_FOUND',
    message: 'could not find network "nope": no such network',
  });
});
