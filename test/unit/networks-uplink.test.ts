// The network service's uplink checks, with the recording driver: two flat
// networks never share an uplink, nor a flat network and a filtering-mode VLAN
// trunk; a subinterface-mode VLAN may; berth's own interfaces are refused; a
// refused network leaves no record and never reaches the host.
import pino from 'pino';
import t from 'tap';
import { NetworkService } from '../../agent/services/networks.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { Names } from '../../hostnet/names.js';
import { FakeDriver } from '../fakes/fake-driver.js';

const log = pino({ level: 'silent' });

async function setup(features = { dot1q: true, vlanFiltering: true }) {
  const store = new MemoryStore();
  const driver = new FakeDriver();
  driver.featureSet = features;
  const networks = new NetworkService({
    store,
    driver,
    log,
    ipQuarantineSeconds: 600,
    instancesOn: () => 0,
    portsOn: () => [],
  });
  await networks.load([]);
  return { store, driver, networks };
}

t.test('flat networks: one per uplink, refused before anything is stored or touched', async (t) => {
  const { networks, driver, store } = await setup();
  const a = await networks.create({ name: 'a', subnet: '10.0.0.0/24', uplink: 'eth1' });
  t.match(a, { uplink: 'eth1' });
  t.equal(a.vlan, undefined);
  t.match((await networks.view(a)).uplink, 'eth1', 'the view reports the uplink');
  driver.calls.length = 0;
  await t.rejects(networks.create({ name: 'b', subnet: '10.1.0.0/24', uplink: 'eth1' }), {
    code: 'BERTH_ERR_CONFLICT',
    field: 'uplink',
    message: /^could not create network "b": uplink "eth1" is already used by flat network "a"/,
  });
  t.equal(await store.get('network/b'), undefined, 'no record');
  t.same(driver.calls, [], 'the host was never asked');
  await networks.create({ name: 'c', subnet: '10.2.0.0/24', uplink: 'eth2' });
  t.same(
    networks.all().map((n) => n.name),
    ['a', 'c'],
  );
  // Deleting "a" frees its uplink.
  await networks.delete('a');
  await networks.create({ name: 'b', subnet: '10.1.0.0/24', uplink: 'eth1' });
});

t.test('flat and a filtering-mode VLAN trunk clash both ways; subinterface mode does not', async (t) => {
  const filtering = await setup({ dot1q: true, vlanFiltering: true });
  await filtering.networks.create({ name: 'v', subnet: '10.0.0.0/24', vlan: 100, uplink: 'eth1' });
  await t.rejects(filtering.networks.create({ name: 'f', subnet: '10.1.0.0/24', uplink: 'eth1' }), {
    code: 'BERTH_ERR_CONFLICT',
    field: 'uplink',
    message: /uplink "eth1" is already used by the VLAN trunk of network "v" \(filtering mode/,
  });
  await filtering.networks.create({ name: 'g', subnet: '10.2.0.0/24', uplink: 'eth2' });
  await t.rejects(filtering.networks.create({ name: 'w', subnet: '10.3.0.0/24', vlan: 7, uplink: 'eth2' }), {
    code: 'BERTH_ERR_CONFLICT',
    message: /^could not create network "w": uplink "eth2" is already used by flat network "g"/,
  });
  // Another VLAN on the same trunk shares its bridge.
  await filtering.networks.create({ name: 'v2', subnet: '10.4.0.0/24', vlan: 200, uplink: 'eth1' });

  const sub = await setup({ dot1q: true, vlanFiltering: false });
  await sub.networks.create({ name: 'v', subnet: '10.0.0.0/24', vlan: 100, uplink: 'eth1' });
  await sub.networks.create({ name: 'f', subnet: '10.1.0.0/24', uplink: 'eth1' });
  t.same(
    sub.networks.all().map((n) => n.name),
    ['f', 'v'],
    'flat next to eth1.100: tagged frames reach the subinterface before the bridge',
  );
});

t.test("berth's own interfaces are refused as uplinks", async (t) => {
  const { networks, store } = await setup();
  const own = new Names('tst');
  for (const uplink of [own.port('0a0b0c0d', 0), own.endpointVeth('x'), own.bridge('x')]) {
    await t.rejects(networks.create({ name: 'f', subnet: '10.1.0.0/24', uplink }), {
      code: 'BERTH_ERR_INVALID_ARGUMENT',
      field: 'uplink',
      message: new RegExp(`uplink "${uplink}" is one of berth's own interfaces`),
    });
    await t.rejects(networks.create({ name: 'f', subnet: '10.1.0.0/24', vlan: 5, uplink }), {
      code: 'BERTH_ERR_INVALID_ARGUMENT',
      field: 'uplink',
    });
  }
  t.equal(await store.get('network/f'), undefined);
});

t.test('config networks that clash on an uplink stop the load, naming both', async (t) => {
  const store = new MemoryStore();
  const networks = new NetworkService({
    store,
    driver: new FakeDriver(),
    log,
    ipQuarantineSeconds: 600,
    instancesOn: () => 0,
    portsOn: () => [],
  });
  await t.rejects(
    networks.load([
      { name: 'p1', subnet: '10.0.0.0/24', uplink: 'eth1' },
      { name: 'p2', subnet: '10.1.0.0/24', uplink: 'eth1' },
    ]),
    {
      code: 'BERTH_ERR_CONFLICT',
      message: /network "p2": uplink "eth1" is already used by flat network "p1"/,
    },
  );
});
