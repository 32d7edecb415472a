import t from 'tap';
import { MemoryStore } from '../../agent/store/memory-store.js';
import type { Store } from '../../base/store.js';
import type { Reservation } from '../../hostnet/alloc/allocator.js';
import { Ipam, serviceAddress } from '../../hostnet/alloc/ipam.js';
import { MacPool } from '../../hostnet/alloc/mac-pool.js';

async function land(store: Store, ...rs: Reservation[]): Promise<void> {
  await store.batch(
    rs.map((r) => r.op),
    { guards: rs.map((r) => r.guard) },
  );
  for (const r of rs) r.commit();
}

t.test('IPAM hands out distinct addresses, never network, broadcast, gateway or service', async (t) => {
  const store = new MemoryStore();
  const net = { name: 'lab', subnet: '10.0.0.0/29', gateway: '10.0.0.1' };
  t.equal(serviceAddress(net), '10.0.0.6');
  t.equal(serviceAddress({ name: 'x', subnet: '10.0.0.0/29', gateway: '10.0.0.6' }), '10.0.0.5');
  const ipam = await Ipam.load(store, net, { quarantineSeconds: 60 });
  const got: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = ipam.reserve({ instance: `i${i}`, nic: 0 });
    await land(store, r);
    got.push(r.ip);
  }
  t.same(got, ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
  t.throws(() => ipam.reserve({ instance: 'x', nic: 0 }), {
    code: 'BERTH_ERR_EXHAUSTED',
    message: 'could not allocate IP address in network "lab": all 4 are taken (4 assigned, 0 in quarantine)',
  });
  t.same(ipam.usage(), { size: 4, assigned: 4, quarantined: 0, free: 0 });
});

t.test('a released address is quarantined, then reusable; state survives reload', async (t) => {
  let now = 1_000_000;
  const store = new MemoryStore();
  const net = { name: 'lab', subnet: '10.0.0.0/29' };
  const ipam = await Ipam.load(store, net, { quarantineSeconds: 10, now: () => now });
  const rs = [0, 1, 2, 3, 4].map((i) => ipam.reserve({ instance: `i${i}`, nic: 0 }));
  await land(store, ...rs);
  const rel = ipam.releaseOp('10.0.0.3');
  t.ok(rel);
  await store.batch([rel?.op as never]);
  rel?.apply();
  t.equal(ipam.usage().quarantined, 1);
  t.throws(
    () => ipam.reserve({ instance: 'new', nic: 0 }),
    { code: 'BERTH_ERR_EXHAUSTED' },
    'quarantined IP is not reused',
  );

  const reloaded = await Ipam.load(store, net, { quarantineSeconds: 10, now: () => now });
  t.match(reloaded.owner('10.0.0.3'), { state: 'quarantined', instance: 'i2' });
  t.throws(() => reloaded.reserve({ instance: 'new', nic: 0 }), { code: 'BERTH_ERR_EXHAUSTED' });
  now += 10_001;
  const again = reloaded.reserve({ instance: 'new', nic: 0 });
  t.equal(again.ip, '10.0.0.3', 'after the quarantine the address comes back');
  t.match(again.guard, { key: 'ip/lab/10.0.0.3', equals: { state: 'quarantined' } });
  await land(store, again);
  t.match(await store.get('ip/lab/10.0.0.3'), { state: 'assigned', instance: 'new' });
});

t.test('a reservation pending in one batch is not handed out twice', async (t) => {
  const store = new MemoryStore();
  const ipam = await Ipam.load(store, { name: 'n', subnet: '10.0.0.0/24' }, { quarantineSeconds: 0 });
  const a = ipam.reserve({ instance: 'a', nic: 0 });
  const b = ipam.reserve({ instance: 'b', nic: 0 });
  t.not(a.ip, b.ip);
  a.abort();
  t.throws(() => ipam.reserve({ instance: 'c', nic: 0 }, b.ip), {
    code: 'BERTH_ERR_CONFLICT',
    message: `could not reserve IP address "${b.ip}": it is taken, quarantined or reserved in network "n"`,
  });
  t.equal(ipam.reserve({ instance: 'c', nic: 0 }, a.ip).ip, a.ip, 'an aborted value is free again');
});

t.test('MAC pool: unicast, locally administered, skips live MACs, reports usage', async (t) => {
  const store = new MemoryStore();
  const live = new Set(['0a:b7:e7:00:00:02']);
  const pool = await MacPool.load(store, {
    prefixes: ['0a:b7:e7'],
    quarantineSeconds: 60,
    conflicts: (m) => live.has(m),
  });
  const a = pool.reserve({ instance: 'a', nic: 0 });
  const b = pool.reserve({ instance: 'b', nic: 0 });
  await land(store, a, b);
  t.equal(a.mac, '0a:b7:e7:00:00:01');
  t.equal(b.mac, '0a:b7:e7:00:00:03', 'a MAC already live on the bridge is skipped');
  t.match(await store.get('mac/0a:b7:e7:00:00:01'), { state: 'assigned', instance: 'a', nic: 0 });
  t.match(pool.usage(), [{ prefix: '0a:b7:e7', assigned: 2, quarantined: 0, size: 0xffffff }]);
  const rel = pool.releaseOp(a.mac);
  await store.batch([rel?.op as never]);
  rel?.apply();
  t.match(pool.owner(a.mac), { state: 'quarantined' });
  const reloaded = await MacPool.load(store, { prefixes: ['0a:b7:e7'], quarantineSeconds: 60 });
  const c = reloaded.reserve({ instance: 'c', nic: 0 });
  t.equal(c.mac, '0a:b7:e7:00:00:04', 'continues after the newest MAC; the quarantined one is skipped');
});

t.test('MAC pool: 100k allocations are distinct (rate reported, not asserted)', async (t) => {
  const store = new MemoryStore();
  const pool = await MacPool.load(store, { prefixes: ['0a:b7:e7'], quarantineSeconds: 60 });
  const seen = new Set<string>();
  const start = process.hrtime.bigint();
  for (let i = 0; i < 100_000; i++) {
    const r = pool.reserve({ instance: `i${i}`, nic: 0 });
    r.commit();
    seen.add(r.mac);
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  t.equal(seen.size, 100_000);
  t.comment(`in-memory reservation rate: ${Math.round(100_000 / (ms / 1000))}/s`);
});
