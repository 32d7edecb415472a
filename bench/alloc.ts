// MAC + IP allocation benchmark: the allocation step of `instance create`,
// on the real LevelDB store in a temp dir. Each allocation is what
// InstanceService.create does before it touches the host: reserve a MAC from
// the pool and an IP from the network's IPAM, then one durable atomic batch
// with the instance record, its name index and both reservations, guarded so
// that no two writers can win the same name, MAC or IP; then commit.
//
// Figures:
// - 100k allocations with BENCH_ALLOC_INFLIGHT (128) in flight: the bar
//   (≥ 20k/s). Batches waiting behind a write share the next one (one fsync),
//   see agent/store/group-commit.ts; while one group is on disk the next one
//   gathers, so CPU and disk overlap. Rates of the first and last 10k show
//   whether a filling pool slows down.
// - one at a time (BENCH_ALLOC_SERIAL, 5000): what a single stream of creates
//   pays, one fsync each. berthd creates instances one at a time (host
//   changes are serialised), where the host work (~100 ms) dwarfs this.
// - reload: MacPool.load + Ipam.load over 100k records each (berthd start).
//
// Run: npm run bench:alloc. Writes the alloc section of bench/RESULTS.md.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INSTANCE_PREFIX, NAME_PREFIX } from '../agent/services/instances.js';
import { LevelStore } from '../agent/store/level-store.js';
import type { Store } from '../base/store.js';
import { Ipam } from '../hostnet/alloc/ipam.js';
import { MacPool } from '../hostnet/alloc/mac-pool.js';
import { barAtLeast, provenance, updateResults } from './lib/results.js';

const TOTAL = Number(process.env.BENCH_ALLOC_N ?? 100_000);
const IN_FLIGHT = Number(process.env.BENCH_ALLOC_INFLIGHT ?? 128);
const SERIAL = Number(process.env.BENCH_ALLOC_SERIAL ?? 5000);
const SLICE = 10_000;

interface Pools {
  macs: MacPool;
  ipam: Ipam;
}

async function load(store: Store, prefix: string): Promise<Pools> {
  // berthd's conflict check (a MAC live on a bridge or in libvirt) is a set lookup too.
  const live = new Set<string>();
  const macs = await MacPool.load(store, {
    prefixes: [prefix],
    quarantineSeconds: 3600,
    conflicts: (mac) => live.has(mac),
  });
  // A /14: 262k addresses, so 100k guests fit in one network.
  const ipam = await Ipam.load(store, { name: 'bench', subnet: '10.64.0.0/14' }, { quarantineSeconds: 600 });
  return { macs, ipam };
}

/** One allocation, as InstanceService.create makes it; returns the MAC and IP. */
async function allocate(store: Store, p: Pools, n: number): Promise<[string, string]> {
  const hex = n.toString(16).padStart(8, '0');
  const id = `i-${hex}`;
  const name = `g${n}`;
  const mac = p.macs.reserve({ instance: id, nic: 0 });
  let ip: ReturnType<Ipam['reserve']>;
  try {
    ip = p.ipam.reserve({ instance: id, nic: 0 });
  } catch (err) {
    mac.abort();
    throw err;
  }
  const rec = {
    id,
    uuid: randomUUID(),
    name,
    runtime: 'netns',
    state: 'creating',
    created_at: new Date().toISOString(),
    netns: `bth-g-${name}`,
    nics: [{ network: 'bench', mac: mac.mac, ip: ip.ip, port: `bthp${hex}0` }],
  };
  try {
    await store.batch(
      [
        { type: 'put', key: `${INSTANCE_PREFIX}${id}`, value: rec },
        { type: 'put', key: `${NAME_PREFIX}${name}`, value: id },
        mac.op,
        ip.op,
      ],
      { guards: [{ key: `${NAME_PREFIX}${name}`, absent: true }, mac.guard, ip.guard] },
    );
  } catch (err) {
    mac.abort();
    ip.abort();
    throw err;
  }
  mac.commit();
  ip.commit();
  return [mac.mac, ip.ip];
}

/** count allocations from `first`, inFlight at a time; per-slice seconds for the rate curve. */
async function run(store: Store, p: Pools, first: number, count: number, inFlight: number) {
  const got: [string, string][] = [];
  const sliceEnds: number[] = [];
  let next = first;
  let done = 0;
  const start = process.hrtime.bigint();
  const worker = async () => {
    while (next < first + count) {
      got.push(await allocate(store, p, next++));
      done++;
      if (done % SLICE === 0) sliceEnds.push(Number(process.hrtime.bigint() - start) / 1e9);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { got, seconds, perSecond: count / seconds, sliceEnds };
}

/** Reopens the store and loads both pools: "412 ms", or why it could not (not the bar: reported as found). */
async function timeReload(dir: string): Promise<string> {
  const t0 = process.hrtime.bigint();
  let store: LevelStore | undefined;
  try {
    store = await LevelStore.open(dir);
    const again = await load(store, '0a:b8:02');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const assigned = again.macs.usage()[0]?.assigned;
    return assigned === TOTAL ? `${ms.toFixed(0)} ms` : `found ${assigned} MACs, not ${TOTAL}`;
  } catch (err) {
    console.error(err);
    return `failed: ${(err as Error).message.replace(/\|/g, '/')}`;
  } finally {
    await store?.close();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-alloc-'));
  try {
    const store = await LevelStore.open(dir);
    const pools = await load(store, '0a:b8:01');
    console.log(`${SERIAL} allocations one at a time (durable)`);
    const serial = await run(store, pools, 0, SERIAL, 1);
    console.log(`  ${serial.perSecond.toFixed(0)}/s`);
    // The bar run starts on a fresh store, so it covers exactly TOTAL allocations from empty.
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    const bigStore = await LevelStore.open(dir);
    const big = await load(bigStore, '0a:b8:02');
    console.log(`${TOTAL} allocations, ${IN_FLIGHT} in flight (durable)`);
    const bulk = await run(bigStore, big, 0, TOTAL, IN_FLIGHT);
    console.log(`  ${bulk.perSecond.toFixed(0)}/s in ${bulk.seconds.toFixed(2)} s`);
    const macs = new Set(bulk.got.map((g) => g[0]));
    const ips = new Set(bulk.got.map((g) => g[1]));
    if (macs.size !== TOTAL || ips.size !== TOTAL)
      throw new Error(`duplicates: ${macs.size} distinct MACs and ${ips.size} distinct IPs for ${TOTAL}`);
    const slices = bulk.sliceEnds.map((end, i) => SLICE / (end - (bulk.sliceEnds[i - 1] ?? 0)));
    await bigStore.close();
    const reload = await timeReload(dir);

    const bar = barAtLeast(
      `MAC + IP allocations/s, ${TOTAL / 1000}k, ${IN_FLIGHT} in flight, durable`,
      bulk.perSecond,
      20_000,
      '/s',
    );
    const rate = (x: number | undefined) => (x === undefined ? 'n/a' : `${x.toFixed(0)}/s`);
    updateResults(
      'alloc',
      [
        '## MAC + IP allocation (`npm run bench:alloc`)',
        '',
        provenance(),
        '',
        'The allocation step of `instance create` on the real LevelDB store (temp dir): MAC from the pool, IP from a /14 IPAM, one durable batch with the instance record, name index and both reservations, guarded (name, MAC, IP), then commit. No host work.',
        '',
        '| figure | value |',
        '| --- | --- |',
        `| ${TOTAL} allocations, ${IN_FLIGHT} in flight (group commit) | ${rate(bulk.perSecond)} (${bulk.seconds.toFixed(2)} s) |`,
        `| first / last ${SLICE / 1000}k of them | ${rate(slices[0])} / ${rate(slices.at(-1))} |`,
        `| ${SERIAL} allocations one at a time (one fsync each) | ${rate(serial.perSecond)} |`,
        `| reload of ${TOTAL} MAC + ${TOTAL} IP records (berthd start) | ${reload} |`,
        '',
        `Bar ${bar.bar}: ${bar.pass ? 'met' : 'NOT met'}. berthd makes host changes one at a time, so one stream of creates sees the one-at-a-time rate; each create's host work (guard, veth, namespace: ~100 ms) is far larger.`,
      ].join('\n'),
      [bar],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
