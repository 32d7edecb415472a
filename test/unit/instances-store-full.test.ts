// A store write that fails half-way through a create or a delete (the disk
// filled between two batches): the host is rolled back or torn down at once,
// the record says 'creating' or 'deleting' meanwhile, and the next reconcile
// pass after space is back finishes the change, without waiting for a restart.
import pino from 'pino';
import t, { type Test } from 'tap';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { buildServices, reconcileHost } from '../../agent/daemon/services.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { BerthError } from '../../base/errors.js';
import type { BatchOp, BatchOptions } from '../../base/store.js';
import { FakeDriver } from '../fakes/fake-driver.js';
import { FakeObserver } from '../fakes/fake-observer.js';

/** A memory store whose writes fail, like a full disk's, while `full` matches the batch. */
class FillingStore extends MemoryStore {
  full: ((ops: BatchOp[]) => boolean) | undefined;

  override async batch(ops: BatchOp[], options?: BatchOptions): Promise<void> {
    if (this.full?.(ops))
      throw new BerthError('BERTH_ERR_STORE_FULL', `could not write key "${ops[0]?.key}": the disk is full`);
    return super.batch(ops, options);
  }
}

async function setup(t: Test) {
  const store = new FillingStore();
  const driver = new FakeDriver();
  const log = pino({ level: 'silent' });
  const services = await buildServices(
    store,
    {
      ...EMBEDDED_DEFAULT,
      networks: [{ name: 'a', subnet: '10.0.0.0/24', mtu: 1500, dns: [] }],
      name_prefix: 'tst',
    },
    log,
    () => driver,
    () => new FakeObserver(),
  );
  t.teardown(() => store.close());
  return { store, driver, services, log };
}

t.test(
  'the disk fills after a create reserved: host rolled back, record finished by reconcile',
  async (t) => {
    const { store, driver, services, log } = await setup(t);
    // The reservation (record, name, MAC, IP) lands; every write after it meets a full disk.
    const reservation = (ops: BatchOp[]) =>
      ops.some((op) => op.type === 'put' && op.key.startsWith('instance-name/'));
    store.full = (ops) => !reservation(ops);
    await t.rejects(services.instances.create({ name: 'g1', network: 'a' }), {
      code: 'BERTH_ERR_STORE_FULL',
      message:
        /^could not create instance "g1": could not write key "instance\/i-[0-9a-f]+": the disk is full/,
    });
    t.same([...driver.guests, ...driver.guarded], [], 'the host was rolled back at once');
    t.same(
      services.instances.all().map((i) => [i.name, i.state]),
      [['g1', 'creating']],
      'the record could not be released yet',
    );
    await reconcileHost(services, log);
    t.equal(services.instances.all().length, 1, 'still full: the record waits');

    store.full = undefined;
    await reconcileHost(services, log);
    t.same(services.instances.all(), [], 'space back: the next reconcile pass finished it');
    t.equal(await store.get('instance-name/g1'), undefined, 'name released');
    t.match(services.macs.usage(), [{ assigned: 0 }], 'MAC released');
    t.equal(
      (await services.instances.create({ name: 'g1', network: 'a' })).state,
      'running',
      'the name works again',
    );
  },
);

t.test('the disk fills mid-delete: host torn down, record finished by reconcile', async (t) => {
  const { store, driver, services, log } = await setup(t);
  await services.instances.create({ name: 'g1', network: 'a' });
  // 'deleting' lands; the batch that drops the records does not.
  store.full = (ops) => ops.some((op) => op.type === 'del' && op.key.startsWith('instance/'));
  await t.rejects(services.instances.delete('g1'), { code: 'BERTH_ERR_STORE_FULL' });
  t.same([...driver.guests, ...driver.guarded], [], 'the host side is gone');
  t.same(
    services.instances.all().map((i) => [i.name, i.state]),
    [['g1', 'deleting']],
    'the record says so',
  );
  store.full = undefined;
  await reconcileHost(services, log);
  t.same(services.instances.all(), [], 'the next reconcile pass finished the delete');
  t.match(services.macs.usage(), [{ assigned: 0 }]);
});
