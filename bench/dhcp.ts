// DHCP benchmark: berth's identity-checked server against dnsmasq, in the same
// run, with the same real client (busybox udhcpc) in netns guests.
//
// - berth: berthd (dist/) with one network and N netns instances; the guard,
//   the endpoint relay and the identity check are all in the path.
// - dnsmasq: its own bridge and server namespace, static dhcp-host entries for
//   N guests, --no-ping, the same options (router, DNS, domain, MTU, 121).
//
// Two figures per server, the median of ROUNDS rounds, servers alternating:
// - leases/s: LOAD_GUESTS guests each run udhcpc PER_GUEST times back to back
//   (a full DISCOVER/OFFER/REQUEST/ACK each); leases / wall time.
// - N-guest time: all N guests start udhcpc at once; time until the last lease.
// The client's process start is in both figures for both servers alike.
//
// Run as root: npm run bench:dhcp. Writes the DHCP section of bench/RESULTS.md.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removePrefixed, uniquePrefix } from '../test/helpers/berthd.js';
import { type BenchBerthd, createNetnsInstances, startBenchBerthd } from './lib/berthd.js';
import { createPeerNet, startDnsmasq } from './lib/netns-peer.js';
import { sh, sleep, stopAll, timed } from './lib/proc.js';
import { type Bar, barAtLeast, barAtMost, median, provenance, updateResults } from './lib/results.js';

const N = Number(process.env.BENCH_GUESTS ?? 100);
const LOAD_GUESTS = 20;
const PER_GUEST = 10;
const ROUNDS = 3;

const run = async (argv: string[]) => (await timed(argv)).code;

const UDHCPC = ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', '/bin/true'];

/** Every guest leases once, all at once; seconds until the last one has its lease. */
async function storm(guests: string[]): Promise<{ seconds: number; ok: number }> {
  const start = process.hrtime.bigint();
  const codes = await Promise.all(guests.map((ns) => run(['ip', 'netns', 'exec', ns, ...UDHCPC])));
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, ok: codes.filter((c) => c === 0).length };
}

/** LOAD_GUESTS guests lease PER_GUEST times each, back to back; leases per second. */
async function rate(guests: string[]): Promise<{ perSecond: number; ok: number }> {
  const loop = `for i in $(seq ${PER_GUEST}); do ${UDHCPC.join(' ')} >/dev/null 2>&1 || exit 1; done`;
  const start = process.hrtime.bigint();
  const codes = await Promise.all(
    guests.slice(0, LOAD_GUESTS).map((ns) => run(['ip', 'netns', 'exec', ns, 'sh', '-c', loop])),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const ok = codes.filter((c) => c === 0).length * PER_GUEST;
  return { perSecond: ok / seconds, ok };
}

async function startBerth(prefix: string, dir: string): Promise<{ d: BenchBerthd; guests: string[] }> {
  const d = await startBenchBerthd({
    prefix,
    dir,
    networks:
      '[{name: bench, subnet: 10.90.0.0/24, gateway: 10.90.0.1, dns: [10.90.0.1], mtu: 1500, domain: bench.test}]',
  });
  const made = await createNetnsInstances(d, 'bench', N);
  return { d, guests: made.map((i) => i.netns as string) };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:dhcp needs root (bridges, namespaces, nftables)');
  const prefix = uniquePrefix();
  // The dnsmasq side has a prefix of its own: berthd sweeps namespaces under its prefix.
  const peerPrefix = uniquePrefix();
  const dir = mkdtempSync(join(tmpdir(), 'bench-dhcp-'));
  const procs: ChildProcess[] = [];
  let berthd: BenchBerthd | undefined;
  const cleanup = async () => {
    await stopAll(procs);
    await berthd?.stop();
    removePrefixed(prefix);
    removePrefixed(peerPrefix);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    console.log(`setting up ${N} berth guests and ${N} dnsmasq guests (prefixes ${prefix}, ${peerPrefix})`);
    const berth = await startBerth(prefix, dir);
    berthd = berth.d;
    const peer = createPeerNet(peerPrefix, 91, N);
    const dnsmasqProc = startDnsmasq(peer, dir, { mtu: 1500, domain: 'bench.test' });
    procs.push(dnsmasqProc);
    const dnsmasq = { proc: dnsmasqProc, guests: peer.guests.map((g) => g.netns) };
    await sleep(1000);

    const r = {
      berth: { rate: [] as number[], storm: [] as number[] },
      dnsmasq: { rate: [] as number[], storm: [] as number[] },
    };
    const failed = { berth: 0, dnsmasq: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, side] of [
        ['berth', { proc: berth.d.proc, guests: berth.guests }],
        ['dnsmasq', dnsmasq],
      ] as const) {
        const l = await rate(side.guests);
        // Let berth's per-port buckets refill, so every round starts alike.
        await sleep(2500);
        const s = await storm(side.guests);
        await sleep(2500);
        console.log(
          `round ${round + 1} ${name}: ${l.perSecond.toFixed(1)} leases/s (${l.ok} leases); ${N} guests in ${s.seconds.toFixed(2)} s (${s.ok}/${N} ok)`,
        );
        if (l.ok !== Math.min(LOAD_GUESTS, N) * PER_GUEST || s.ok !== N) {
          const alive = side.proc.exitCode === null ? 'running' : `exited ${side.proc.exitCode}`;
          console.log(`  ${name}: some clients failed (server process ${alive})`);
        }
        // A round where any client failed measures something else; it is counted, not averaged.
        if (l.ok === Math.min(LOAD_GUESTS, N) * PER_GUEST) r[name].rate.push(l.perSecond);
        else failed[name] += 1;
        if (s.ok === N) r[name].storm.push(s.seconds);
        else failed[name] += 1;
      }
    }
    const bRate = median(r.berth.rate);
    const dRate = median(r.dnsmasq.rate);
    const bStorm = median(r.berth.storm);
    const dStorm = median(r.dnsmasq.storm);
    const rateRatio = bRate / dRate;
    const stormRatio = bStorm / dStorm;
    console.log(
      `leases/s: berth ${bRate.toFixed(1)}, dnsmasq ${dRate.toFixed(1)}, ratio ${rateRatio.toFixed(2)} (bar >= 0.8)`,
    );
    console.log(
      `${N}-guest time: berth ${bStorm.toFixed(2)} s, dnsmasq ${dStorm.toFixed(2)} s, ratio ${stormRatio.toFixed(2)} (bar <= 1.25)`,
    );
    const dnsmasqVersion = sh('dnsmasq', ['--version']).split('\n')[0];
    const bars: Bar[] = [
      barAtLeast('DHCP leases/s, berth / dnsmasq', rateRatio, 0.8, '×', 2),
      barAtMost(`DHCP ${N} guests all leased, berth / dnsmasq time`, stormRatio, 1.25, '×', 2),
    ];
    updateResults(
      'dhcp',
      [
        '## DHCP: berth vs dnsmasq (`npm run bench:dhcp`)',
        '',
        provenance(),
        '',
        `${dnsmasqVersion}; median of ${ROUNDS} rounds, servers alternating.`,
        `Client: busybox udhcpc in netns guests (process start included, for both). leases/s: ${LOAD_GUESTS} guests x ${PER_GUEST} back-to-back DORA exchanges.`,
        'With a shared host and client process starts in the figures, rounds vary by about ±20 %.',
        `Measurements with any failed client are left out of the medians: berth ${failed.berth}, dnsmasq ${failed.dnsmasq}.`,
        '',
        '| figure | berth | dnsmasq | ratio | bar |',
        '| --- | --- | --- | --- | --- |',
        `| leases/s | ${bRate.toFixed(1)} | ${dRate.toFixed(1)} | ${rateRatio.toFixed(2)} | >= 0.8 ${bars[0]?.pass ? 'met' : 'NOT met'} |`,
        `| ${N} guests, all leased (s) | ${bStorm.toFixed(2)} | ${dStorm.toFixed(2)} | ${stormRatio.toFixed(2)} | <= 1.25 ${bars[1]?.pass ? 'met' : 'NOT met'} |`,
      ].join('\n'),
      bars,
    );
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
