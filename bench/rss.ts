// Memory benchmark: berthd's resident set with 1000 registered instances.
// The real berthd (dist/) with one network and 1000 netns guests (the
// cheapest real runtime: a namespace and a veth each, guarded, observed, in
// the store). berthd's own RSS (VmRSS of /proc/<pid>/status) is read with no
// instances, then with N: once right after it answers, and again after
// SETTLE_S seconds idle (the bar). Its helpers (the network's endpoint, the
// FDB and neighbour monitors) are reported separately.
//
// The instances are registered through berth's own services with no host
// work (bench/lib/register.ts), then the real berthd builds every guest in
// its reconcile at start: through the admin API, N creates cost O(N²) today.
//
// Run as root: npm run bench:rss. Writes the rss section of bench/RESULTS.md.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uniquePrefix } from '../test/helpers/berthd.js';
import { type BenchBerthdOptions, cleanupBench, startBenchBerthd } from './lib/berthd.js';
import { descendants, processesWith, rssMiB, sh, sleep } from './lib/proc.js';
import { registerOffline } from './lib/register.js';
import { barAtMost, provenance, updateResults } from './lib/results.js';

const N = Number(process.env.BENCH_RSS_N ?? 1000);
const SETTLE_S = Number(process.env.BENCH_RSS_SETTLE_S ?? 10);

/** Peak resident set (VmHWM) in MiB. */
function peakMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** What a child is, in a word: endpoint, FDB monitor, neighbour monitor, or its command. */
function role(cmd: string): string {
  if (cmd.includes('endpoint/main.js')) return 'endpoint (node)';
  if (cmd.startsWith('bridge monitor')) return 'FDB monitor (bridge monitor)';
  if (cmd.includes('monitor neigh')) return 'neighbour monitor (ip monitor)';
  return cmd.slice(0, 60);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:rss needs root (bridges, namespaces, nftables)');
  const prefix = uniquePrefix();
  const dir = mkdtempSync(join(tmpdir(), 'bench-rss-'));
  process.on('SIGINT', () => void cleanupBench(dir, [prefix]).then(() => process.exit(130)));
  const o: BenchBerthdOptions = {
    prefix,
    dir,
    networks: '[{name: mem, subnet: 10.96.0.0/20, gateway: 10.96.0.1}]',
    readyTimeoutS: 900,
  };
  try {
    console.log(`prefix ${prefix}`);
    const empty = await startBenchBerthd(o);
    await sleep(SETTLE_S * 1000);
    const baseline = rssMiB(empty.pid);
    await empty.stop();
    console.log(`no instances: berthd RSS ${baseline.toFixed(1)} MiB`);

    let t0 = Date.now();
    await registerOffline(o, 'mem', N);
    const registerS = (Date.now() - t0) / 1000;
    t0 = Date.now();
    const d = await startBenchBerthd(o);
    const startS = (Date.now() - t0) / 1000;
    const failed = d.logs().filter((l) => l.msg === 'host reconcile had failures');
    if (failed.length > 0)
      throw new Error(`reconcile at start failed: ${JSON.stringify(failed[0]).slice(0, 2000)}`);
    const list = (await d.client.instances()).instances;
    const netns = sh('ip', ['netns', 'list']);
    const realised = list.filter((i) => i.state === 'running' && netns.includes(i.netns as string)).length;
    if (realised !== N) throw new Error(`${realised} of ${N} instances are running with their namespace`);
    const atReady = rssMiB(d.pid);
    console.log(
      `${N} instances: berthd RSS ${atReady.toFixed(1)} MiB when ready (start took ${startS.toFixed(0)} s)`,
    );
    await sleep(SETTLE_S * 1000);
    const settled = rssMiB(d.pid);
    const peak = peakMiB(d.pid);
    // The endpoint outlives the berthd that started it (the empty one above) and is
    // taken over by the next, so it is found by its state dir, not as a child.
    const kids = new Map([...descendants(d.pid), ...processesWith(dir)].map((c) => [c.pid, c.cmd]));
    kids.delete(d.pid);
    const children = [...kids].map(([pid, cmd]) => ({ role: role(cmd), rss: rssMiB(pid) }));
    console.log(`after ${SETTLE_S} s idle: ${settled.toFixed(1)} MiB (peak ${peak.toFixed(1)} MiB)`);
    for (const c of children) console.log(`  helper ${c.role}: ${c.rss.toFixed(1)} MiB`);
    const bar = barAtMost(`berthd RSS with ${N} instances`, settled, 150, ' MiB', 1);
    updateResults(
      'rss',
      [
        `## berthd memory with ${N} instances (\`npm run bench:rss\`)`,
        '',
        provenance(),
        '',
        `The real berthd (dist/) with one network and ${N} netns guests. The instances were registered through berth's own services with no host work (${registerS.toFixed(1)} s), then berthd built every guest in its reconcile at start (${startS.toFixed(0)} s): ${N} creates through the admin API cost O(N²) today, since each lists the whole nft guard table. RSS is VmRSS of berthd's own process; its helper processes are listed separately.`,
        '',
        '| berthd | RSS MiB |',
        '| --- | --- |',
        `| no instances, after ${SETTLE_S} s idle | ${baseline.toFixed(1)} |`,
        `| ${N} instances, when ready | ${atReady.toFixed(1)} |`,
        `| ${N} instances, after ${SETTLE_S} s idle | ${settled.toFixed(1)} |`,
        `| peak (VmHWM) | ${peak.toFixed(1)} |`,
        '',
        '| helper process | RSS MiB |',
        '| --- | --- |',
        ...children.map((c) => `| ${c.role} | ${c.rss.toFixed(1)} |`),
        '',
        `Bar ${bar.bar} (after idle): ${bar.pass ? 'met' : 'NOT met'}. ${(((settled - baseline) / N) * 1024).toFixed(0)} KiB per instance over the empty berthd.`,
      ].join('\n'),
      [bar],
    );
    await d.stop();
  } finally {
    await cleanupBench(dir, [prefix]);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
