// Reconcile-at-start benchmark: berthd restarts with 200 instances in its
// store. The real berthd (dist/) with one network and 200 netns guests; it is
// stopped (guests, and the endpoint, keep running) and started again ROUNDS
// times. Each start opens the store, loads the instances, runs a full host
// reconcile (network, guard, every guest's namespace and veth checked, orphan
// sweep), starts observing, takes over the endpoint and answers on its socket.
//
// Figures (median of ROUNDS restarts):
// - ready: from spawn until the admin API answers: the bar (≤ 3 s).
// - reconcile: the pass itself, from berthd's own log ("host reconciled").
// The guests are registered through berth's own services with no host work
// (bench/lib/register.ts), so berthd's first start is a cold one, as after a
// host reboot: reconcile builds the bridge, the guard and all 200 guests.
// That start is reported too (no bar).
//
// Run as root: npm run bench:reconcile. Writes the reconcile section of bench/RESULTS.md.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uniquePrefix } from '../test/helpers/berthd.js';
import { type BenchBerthd, type BenchBerthdOptions, cleanupBench, startBenchBerthd } from './lib/berthd.js';
import { sh } from './lib/proc.js';
import { registerOffline } from './lib/register.js';
import { barAtMost, median, provenance, updateResults } from './lib/results.js';

const N = Number(process.env.BENCH_RECONCILE_N ?? 200);
const ROUNDS = Number(process.env.BENCH_RECONCILE_ROUNDS ?? 3);
const NETWORKS = '[{name: rec, subnet: 10.95.0.0/20, gateway: 10.95.0.1}]';

interface Start {
  readyMs: number;
  reconcileMs: number;
}

/** Starts berthd on the existing state, checks every instance is there, and stops it again. */
async function start(o: BenchBerthdOptions): Promise<Start> {
  const d = await startBenchBerthd({ ...o, logLevel: 'debug', readyTimeoutS: 600 });
  try {
    const reconciled = d
      .logs()
      .find((l) => l.msg === 'host reconciled' || l.msg === 'host reconcile had failures');
    if (reconciled?.msg !== 'host reconciled')
      throw new Error(`reconcile at start failed: ${JSON.stringify(reconciled).slice(0, 2000)}`);
    await check(d);
    return { readyMs: d.readyMs, reconcileMs: Number(reconciled.ms) };
  } finally {
    await d.stop();
  }
}

async function check(d: BenchBerthd): Promise<void> {
  const list = await d.client.instances();
  const running = list.instances.filter((i) => i.state === 'running').length;
  if (running !== N) throw new Error(`${running} of ${N} instances running after the restart`);
  const netns = sh('ip', ['netns', 'list']);
  const missing = list.instances.filter((i) => !netns.includes(i.netns as string));
  if (missing.length > 0)
    throw new Error(`${missing.length} guest namespaces missing, e.g. ${missing[0]?.netns}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:reconcile needs root (bridges, namespaces, nftables)');
  const prefix = uniquePrefix();
  const dir = mkdtempSync(join(tmpdir(), 'bench-rec-'));
  process.on('SIGINT', () => void cleanupBench(dir, [prefix]).then(() => process.exit(130)));
  const o: BenchBerthdOptions = { prefix, dir, networks: NETWORKS };
  try {
    console.log(`registering ${N} netns instances (prefix ${prefix})`);
    await registerOffline(o, 'rec', N);
    const cold = await start(o);
    console.log(`cold start: ready in ${cold.readyMs.toFixed(0)} ms, reconcile ${cold.reconcileMs} ms`);
    const warm: Start[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const s = await start(o);
      console.log(`restart ${r + 1}: ready in ${s.readyMs.toFixed(0)} ms, reconcile ${s.reconcileMs} ms`);
      warm.push(s);
    }
    const ready = median(warm.map((s) => s.readyMs));
    const reconcile = median(warm.map((s) => s.reconcileMs));
    const bar = barAtMost(`berthd restart with ${N} instances, until ready`, ready / 1000, 3, ' s', 2);
    updateResults(
      'reconcile',
      [
        `## Reconcile at start with ${N} instances (\`npm run bench:reconcile\`)`,
        '',
        provenance(),
        '',
        `The real berthd with one network and ${N} netns guests, stopped and started again; guests and the endpoint keep running across a restart. A start opens the store, runs a full host reconcile (network, guard, each guest's namespace and veth checked, orphan sweep), starts observing, takes over the endpoint, and then answers. Median of ${ROUNDS} restarts; every start is checked: ${N} instances running, every namespace there. The first start was cold, as after a host reboot: the instances were registered through berth's own services without host work, and that start built every guest.`,
        '',
        '| start | until the admin API answers | reconcile pass (berthd log) |',
        '| --- | --- | --- |',
        `| restart (guests running) | ${(ready / 1000).toFixed(2)} s | ${(reconcile / 1000).toFixed(2)} s |`,
        `| cold, as after a reboot (all host objects built) | ${(cold.readyMs / 1000).toFixed(2)} s | ${(cold.reconcileMs / 1000).toFixed(2)} s |`,
        '',
        `Bar ${bar.bar} (restart): ${bar.pass ? 'met' : 'NOT met'}. The time until ready includes Node's own start (~0.3 s).`,
      ].join('\n'),
      [bar],
    );
  } finally {
    await cleanupBench(dir, [prefix]);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
