// Small holes of issue 12 at the service layer: a name shaped like an id is
// refused, an id collision never overwrites an instance, and a network's IP
// quarantine survives the network's delete and re-create.
import pino from 'pino';
import t from 'tap';
import { InstanceService } from '../../agent/services/instances.js';
import { NetworkService } from '../../agent/services/networks.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { MacPool } from '../../hostnet/alloc/mac-pool.js';
import { Names } from '../../hostnet/names.js';
import { FakeDriver } from '../fakes/fake-driver.js';

const log = pino({ level: 'silent' });

async function setup(opts: { ipQuarantineSeconds?: number; hex?: () => string } = {}) {
  const store = new MemoryStore();
  const driver = new FakeDriver();
  let instances: InstanceService | undefined;
  const networks = new NetworkService({
    store,
    driver,
    log,
    ipQuarantineSeconds: opts.ipQuarantineSeconds ?? 600,
    instancesOn: (n) => instances?.countOn(n) ?? 0,
    portsOn: (n) => instances?.portsOn(n) ?? [],
  });
  await networks.load([]);
  const macs = await MacPool.load(store, { prefixes: ['0a:b7:e7'], quarantineSeconds: 3600 });
  instances = new InstanceService({
    store,
    driver,
    networks,
    macs,
    names: new Names('tst'),
    log,
    ...(opts.hex ? { newIdHex: opts.hex } : {}),
  });
  await instances.load();
  return { store, networks, instances, macs };
}

t.test('a name shaped like an instance id is refused, naming the field', async (t) => {
  const { networks, instances, store } = await setup();
  await networks.create({ name: 'a', subnet: '10.0.0.0/24' });
  for (const name of ['i-0', 'i-deadbeef', 'i-0123456789abcdef']) {
    await t.rejects(instances.create({ name, network: 'a' }), {
      code: 'BERTH_ERR_INVALID_ARGUMENT',
      field: 'name',
      message: `name: "${name}" looks like an instance id ("i-" and hex); instance ids are berth's to give, choose another name`,
    });
  }
  t.same(await store.list('instance'), [], 'nothing stored');
  // Close to the shape but not it: fine.
  for (const name of ['i-web', 'i-', 'ix-dead', 'web-i-dead']) await instances.create({ name, network: 'a' });
  t.equal(instances.all().length, 4);
});

t.test('instance ids: a collision is skipped in memory, and the store guard refuses the rest', async (t) => {
  const seq = ['0000000a', '0000000a', '0000000b', '0000000c'];
  const { networks, instances, store, macs } = await setup({ hex: () => seq.shift() ?? '0000000c' });
  await networks.create({ name: 'a', subnet: '10.0.0.0/24' });
  const a = await instances.create({ name: 'ga', network: 'a' });
  t.equal(a.id, 'i-0000000a');
  const b = await instances.create({ name: 'gb', network: 'a' });
  t.equal(b.id, 'i-0000000b', 'an id berth already tracks is not chosen again');

  // A record berth does not track (another writer, a restore): only the guard knows.
  const foreign = { id: 'i-0000000c', name: 'theirs', marker: 'do-not-overwrite' };
  await store.batch([{ type: 'put', key: 'instance/i-0000000c', value: foreign }]);
  const before = macs.usage();
  await t.rejects(instances.create({ name: 'gc', network: 'a' }), {
    code: 'BERTH_ERR_CONFLICT',
    field: 'id',
    message:
      'could not create instance "gc": its new id "i-0000000c" is already taken by another instance; nothing was written, try again',
  });
  t.same(await store.get('instance/i-0000000c'), foreign, 'the existing record is untouched');
  t.equal(await store.get('instance-name/gc'), undefined, 'no name record');
  t.same(macs.usage(), before, 'the MAC went back');
  t.equal(networks.ipam('a').usage().assigned, 2, 'the IP went back');
});

t.test("a network's IP quarantine survives delete and re-create", async (t) => {
  const { networks, instances, store } = await setup();
  // A /29 with a gateway: 10.9.0.1 gateway, .6 service, .2-.5 for guests.
  await networks.create({ name: 'q', subnet: '10.9.0.0/29', gateway: '10.9.0.1' });
  const made = [];
  for (let i = 0; i < 4; i++) made.push(await instances.create({ name: `q${i}`, network: 'q' }));
  for (const m of made) await instances.delete(m.name);
  await networks.delete('q');
  t.equal(
    (await store.list('ip/q/')).length,
    4,
    'the four quarantine records are kept with the network gone',
  );
  await networks.create({ name: 'q', subnet: '10.9.0.0/29', gateway: '10.9.0.1' });
  t.match(networks.ipam('q').usage(), { quarantined: 4, free: 0 }, 'the re-created network sees them');
  await t.rejects(instances.create({ name: 'next', network: 'q' }), {
    code: 'BERTH_ERR_EXHAUSTED',
    message: /all 4 are taken \(0 assigned, 4 in quarantine\)/,
  });

  // Re-created with another subnet: the old addresses are not in it, so their records go.
  await networks.delete('q');
  await networks.create({ name: 'q', subnet: '10.8.0.0/29' });
  t.same(await store.list('ip/q/'), [], 'records outside the new subnet are dropped');
  t.match(networks.ipam('q').usage(), { quarantined: 0 });
});

t.test('an expired quarantine does not outlive the network', async (t) => {
  const { networks, instances, store } = await setup({ ipQuarantineSeconds: 0 });
  await networks.create({ name: 'e', subnet: '10.7.0.0/29' });
  await instances.create({ name: 'e0', network: 'e' });
  await instances.delete('e0');
  t.equal((await store.list('ip/e/')).length, 1, 'a (zero-length) quarantine record');
  await networks.delete('e');
  t.same(await store.list('ip/e/'), [], 'gone with the network');
});
