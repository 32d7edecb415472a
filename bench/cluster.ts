// Cluster benchmark: what a fleet on etcd costs, beside one host in the same run.
//
// - creates/s: one berthd on its own LevelDB creates 3×N netns instances; then
//   three berthd hosts on a real three-member etcd (loopback) create N each,
//   all at once. Both through the admin API, host work included.
// - policy propagation: a policy set on one host, until both other hosts'
//   admin APIs return it (what their metadata services enforce from); p50/p99.
// - the allocation scheme: three in-process "hosts" (each its own etcd client,
//   mirror and allocators) allocate a MAC and an IP per etcd transaction, all
//   at once, first with every host's cursor in the same place, then spread by
//   host id (what berthd does). Transactions/s and lost races show why a
//   transaction per allocation with spread cursors is enough here, and per-host
//   blocks (Calico's compare-and-swap scheme) are not needed.
//
// Run as root: npm run bench:cluster. Writes the cluster section of bench/RESULTS.md.
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ClusterMirror, MirroredStore } from '../agent/cluster/mirror.js';
import { EtcdKv } from '../agent/store/etcd-kv.js';
import { MemoryStore } from '../agent/store/memory-store.js';
import type { BatchOp, Guard } from '../base/store.js';
import { Ipam } from '../hostnet/alloc/ipam.js';
import { MacPool } from '../hostnet/alloc/mac-pool.js';
import { uniquePrefix } from '../test/helpers/berthd.js';
import { EtcdMembers } from '../test/helpers/etcd-members.js';
import { type BenchBerthd, cleanupBench, createNetnsInstances, startBenchBerthd } from './lib/berthd.js';
import { pool, sleep } from './lib/proc.js';
import { barAtMost, median, percentile, provenance, updateResults } from './lib/results.js';

const N = Number(process.env.BENCH_CLUSTER_N ?? 40);
const ROUNDS = Number(process.env.BENCH_CLUSTER_POLICY_ROUNDS ?? 60);
const ALLOCS = Number(process.env.BENCH_CLUSTER_ALLOCS ?? 400);
const NET = '[{name: shared, subnet: 10.96.0.0/20}]';
const quiet = pino({ level: 'silent' });

async function singleHost(dir: string, prefix: string): Promise<number> {
  const d = await startBenchBerthd({ prefix, dir: join(dir, 'single'), networks: NET });
  const t0 = Date.now();
  await createNetnsInstances(d, 'shared', 3 * N, { inFlight: 8 });
  const rate = (3 * N) / ((Date.now() - t0) / 1000);
  await d.stop();
  return rate;
}

async function clusterHosts(dir: string, etcd: EtcdMembers, prefixes: string[]): Promise<BenchBerthd[]> {
  const hosts: BenchBerthd[] = [];
  for (const [i, prefix] of prefixes.entries())
    hosts.push(
      await startBenchBerthd({
        prefix,
        dir: join(dir, `hv${i + 1}`),
        networks: NET,
        extra: `host_id: hv${i + 1}\ncluster: {etcd: [${etcd.endpoints.join(', ')}], prefix: /bench/}\n`,
      }),
    );
  return hosts;
}

async function propagation(hosts: BenchBerthd[]): Promise<number[]> {
  const ms: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const from = hosts[r % hosts.length] as BenchBerthd;
    const others = hosts.filter((h) => h !== from);
    const who = `instance:bench-r${r}`;
    const t0 = process.hrtime.bigint();
    await from.client.setPolicy({
      name: 'bench',
      identities: [who],
      allow: [],
      deny: ['read:meta-data/tags'],
    });
    await Promise.all(
      others.map(async (h) => {
        for (;;) {
          const p = await h.client.policy('bench').catch(() => undefined);
          if (p?.identities.includes(who)) return;
        }
      }),
    );
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await sleep(20);
  }
  return ms;
}

/** Three in-process hosts allocating MAC + IP, one etcd transaction each. */
async function allocations(etcd: EtcdMembers, spread: boolean): Promise<{ rate: number; races: number }> {
  const keyPrefix = `/alloc-${spread ? 's' : 'n'}/`;
  const hosts = await Promise.all(
    ['a', 'b', 'c'].map(async (id) => {
      const kv = new EtcdKv({ endpoints: etcd.endpoints, prefix: keyPrefix });
      const mirror = new ClusterMirror({ kv, local: new MemoryStore(), persist: [], log: quiet });
      await mirror.start();
      const store = new MirroredStore(kv, mirror);
      const macs = await MacPool.load(store, { prefixes: ['0a:b7:e7'], quarantineSeconds: 60 });
      const ipam = await Ipam.load(store, { name: 'n', subnet: '10.64.0.0/14' }, { quarantineSeconds: 60 });
      if (spread) {
        const offset = createHash('sha256').update(id).digest().readUInt32BE(0);
        macs.spreadFrom(offset);
        ipam.spreadFrom(offset);
      }
      mirror.onChange('mac/', (ev) => {
        for (const e of ev) macs.observe(e.key, e.value as never);
      });
      mirror.onChange('ip/', (ev) => {
        for (const e of ev) ipam.observe(e.key, e.value as never);
      });
      return { kv, mirror, store, macs, ipam, id };
    }),
  );
  let races = 0;
  const t0 = Date.now();
  await Promise.all(
    hosts.map((h) =>
      pool(
        Array.from({ length: ALLOCS }, (_, i) => i),
        8,
        async (i) => {
          for (;;) {
            const owner = { instance: `i-${h.id}${i}`, nic: 0 };
            const mac = h.macs.reserve(owner);
            const ip = h.ipam.reserve(owner);
            const ops: BatchOp[] = [mac.op, ip.op];
            const guards: Guard[] = [mac.guard, ip.guard];
            try {
              await h.store.batch(ops, { guards });
              mac.commit();
              ip.commit();
              return;
            } catch {
              mac.abort();
              ip.abort();
              races++;
            }
          }
        },
      ),
    ),
  );
  const rate = (3 * ALLOCS) / ((Date.now() - t0) / 1000);
  for (const h of hosts) {
    await h.mirror.close();
    await h.kv.close();
  }
  return { rate, races };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-cluster-'));
  const prefixes = [uniquePrefix(), uniquePrefix(), uniquePrefix(), uniquePrefix()];
  let etcd: EtcdMembers | undefined;
  try {
    const single = await singleHost(dir, prefixes[3] as string);
    etcd = await EtcdMembers.start(join(dir, 'etcd'), 3);
    const hosts = await clusterHosts(dir, etcd, prefixes.slice(0, 3));
    const t0 = Date.now();
    await Promise.all(
      hosts.map((h, i) => createNetnsInstances(h, 'shared', N, { inFlight: 8, stem: `h${i}g` })),
    );
    const clustered = (3 * N) / ((Date.now() - t0) / 1000);
    const prop = await propagation(hosts);
    const same = await allocations(etcd, false);
    const spread = await allocations(etcd, true);
    const p99 = percentile(prop, 99);
    const bars = [barAtMost('policy propagation p99, 3 hosts', p99, 1000, ' ms', 1)];
    updateResults(
      'cluster',
      [
        '## Cluster on etcd (`npm run bench:cluster`)',
        '',
        provenance(),
        '',
        `Three berthd hosts on a real three-member etcd 3.4 (loopback, one machine), beside one berthd on its own LevelDB in the same run. Creates are netns instances through the admin API, host work included, 8 in flight per host.`,
        '',
        '| figure | value |',
        '| --- | --- |',
        `| single host: ${3 * N} creates | ${single.toFixed(1)}/s |`,
        `| cluster: ${N} creates on each of 3 hosts at once | ${clustered.toFixed(1)}/s (${(clustered / single).toFixed(2)}× one host) |`,
        `| policy propagation, set on one host until both others return it (${ROUNDS} rounds) | p50 ${median(prop).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...prop).toFixed(1)} ms |`,
        `| allocation, one etcd transaction per MAC + IP, 3 × ${ALLOCS}, cursors together | ${same.rate.toFixed(0)}/s, ${same.races} lost races |`,
        `| the same, cursors spread by host id (berthd) | ${spread.rate.toFixed(0)}/s, ${spread.races} lost races |`,
        '',
        `Bar: policy propagation p99 ≤ 1000 ms: ${bars[0]?.pass ? 'met' : '**NOT met**'}. Every host serves metadata from its own copy, so propagation is the watch's delay plus the policy reload. On one machine the three hosts and three etcd members share two cores, so the cluster's creates/s is a floor: each host's creates are serialised by its own host lock, and here they also compete for the same CPUs.`,
      ].join('\n'),
      bars,
    );
    console.log({ single, clustered, prop: { p50: median(prop), p99 }, same, spread });
  } finally {
    await cleanupBench(dir, prefixes);
    await etcd?.stop();
  }
}

await main();
