// Boot storm: N netns guests boot at once, each taking a DHCP lease (busybox
// udhcpc) and then reading its EC2 meta-data tree (the listing and every key,
// curl over one connection). berth against the "physical-ish peer", in the
// same run, with the same guests' script:
//
// - berth: the real berthd (dist/), one network, N instances created at once
//   through the admin API; the guard, the endpoint, the identity check
//   (observed MAC + port) and the policy check are all in the path.
// - peer: a plain bridge and N netns guests (bench/lib/netns-peer.ts),
//   dnsmasq with a static host per guest, nginx (one worker) answering the
//   same bytes, chosen by the client's address.
//
// The first storm is the guests' first boot right after the creates; it
// counts for failures, and its answers become nginx's files (berth guest i's
// tree is peer guest i's). Then ROUNDS rounds, sides alternating. Before every
// storm each guest loses its address, routes and neighbours and the server
// side forgets its neighbours, so each boot is a fresh one: berth's metadata
// cache is cold and its observer learns every guest anew. Figures: time until
// every guest has its tree (median of rounds), failures (a guest without its
// lease or its own instance-id), and per-guest p50/p99. Bars: 0 failed berth
// guests, berth/peer time ≤ 1.25× over the rounds.
//
// Run as root: npm run bench:storm (BENCH_STORM_N, BENCH_STORM_ROUNDS).
// Writes the storm section of bench/RESULTS.md.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uniquePrefix } from '../test/helpers/berthd.js';
import { type BenchBerthd, cleanupBench, startBenchBerthd } from './lib/berthd.js';
import {
  type BootScripts,
  bootStorm,
  type GuestBoot,
  stormFigures,
  writeBootScripts,
} from './lib/guest-boot.js';
import { createPeerNet, startDnsmasq, startNginx, writePeerTrees } from './lib/netns-peer.js';
import { pool, sh, sleep, stopAll } from './lib/proc.js';
import { type Bar, barAtMost, median, percentile, provenance, ratio, updateResults } from './lib/results.js';

const N = Number(process.env.BENCH_STORM_N ?? 200);
const ROUNDS = Number(process.env.BENCH_STORM_ROUNDS ?? 3);
const MTU = 1500;
const DOMAIN = 'bench.test';

interface Side {
  name: 'berth' | 'peer';
  netns: string[];
  /** netns → the instance-id its tree must carry. */
  ids: Map<string, string>;
  /** Namespaces whose neighbour tables the server side answers from. */
  serverNetns: string;
}

/** A fresh boot: no address, route or neighbour in the guest; the server forgets the guests. */
async function reset(side: Side): Promise<void> {
  await pool(side.netns, 16, async (ns) => {
    sh('ip', ['-n', ns, '-batch', '-'], 'addr flush dev eth0\nroute flush dev eth0\nneigh flush all\n');
  });
  sh('ip', ['-n', side.serverNetns, 'neigh', 'flush', 'all']);
  // berth limits DHCP per port (10/s, burst 20): every storm starts with full buckets.
  await sleep(2500);
}

async function storm(side: Side, scripts: BootScripts) {
  await reset(side);
  return bootStorm(side.netns, scripts, (ns, tree) => tree.get('instance-id') === side.ids.get(ns));
}

async function createBerth(
  prefix: string,
  dir: string,
): Promise<{ d: BenchBerthd; side: Side; createS: number }> {
  const d = await startBenchBerthd({
    prefix,
    dir,
    networks: `[{name: storm, subnet: 10.97.0.0/20, gateway: 10.97.0.1, dns: [10.97.0.1], mtu: ${MTU}, domain: ${DOMAIN}}]`,
  });
  const t0 = Date.now();
  // All at once, as the issue asks; berthd takes them one host change at a time.
  const made = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      d.client.createInstance({ name: `s${i}`, network: 'storm', runtime: 'netns' }),
    ),
  );
  const createS = (Date.now() - t0) / 1000;
  const endpoint = (await d.client.network('storm')).endpoint as string;
  const netns = made.map((i) => i.netns as string);
  return {
    d,
    createS,
    side: {
      name: 'berth',
      netns,
      ids: new Map(made.map((i) => [i.netns as string, i.id])),
      serverNetns: endpoint,
    },
  };
}

/** Boots the failed guests again, one at a time, so their trees exist for nginx; throws when one still fails. */
async function retryAlone(failed: GuestBoot[], side: Side, scripts: BootScripts): Promise<void> {
  for (const f of failed) {
    const again = await bootStorm(
      [f.netns],
      scripts,
      (ns, tree) => tree.get('instance-id') === side.ids.get(ns),
    );
    const boot = again.boots[0] as GuestBoot;
    if (!boot.ok) throw new Error(`${f.netns} fails even alone: ${boot.why}`);
    Object.assign(f, { tree: boot.tree });
  }
}

/** What berth refused during the run and why, from its audit log: "3 × metadata.request no-neighbour". */
async function auditRefusals(d: BenchBerthd): Promise<string> {
  const { records } = await d.client.audit({ outcome: 'refused', limit: 10_000 });
  const count = new Map<string, number>();
  for (const r of records)
    count.set(`${r.event} ${r.reason}`, (count.get(`${r.event} ${r.reason}`) ?? 0) + 1);
  return [...count].map(([what, n]) => `${n} × ${what}`).join(', ');
}

/** "3 × listing curl=22, 1 × no DHCP lease". */
function reasons(boots: GuestBoot[]): string {
  const count = new Map<string, number>();
  for (const b of boots) if (!b.ok) count.set(b.why, (count.get(b.why) ?? 0) + 1);
  return [...count].map(([why, n]) => `${n} × ${why}`).join(', ');
}

function row(name: string, seconds: number, boots: GuestBoot[]): string {
  const p = (xs: number[], q: number) => percentile(xs.filter(Number.isFinite), q).toFixed(0);
  const ms = boots.map((x) => x.ms);
  const failed = boots.filter((x) => !x.ok).length;
  const dhcp = boots.map((x) => x.dhcpMs);
  const md = boots.map((x) => x.metadataMs);
  return `| ${name} | ${seconds.toFixed(2)} | ${failed} | ${p(ms, 50)} | ${p(ms, 99)} | ${p(dhcp, 50)} / ${p(dhcp, 99)} | ${p(md, 50)} / ${p(md, 99)} |`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:storm needs root (bridges, namespaces, nftables)');
  const prefix = uniquePrefix();
  const peerPrefix = uniquePrefix();
  const dir = mkdtempSync(join(tmpdir(), 'bench-storm-'));
  const procs: ChildProcess[] = [];
  const cleanup = async () => {
    await stopAll(procs);
    await cleanupBench(dir, [prefix, peerPrefix]);
  };
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    console.log(
      `creating ${N} berth guests at once (prefix ${prefix}) and ${N} peer guests (prefix ${peerPrefix})`,
    );
    const b = await createBerth(prefix, dir);
    console.log(`  berth: ${N} creates through the admin API in ${b.createS.toFixed(1)} s`);
    const t0 = Date.now();
    const peer = createPeerNet(peerPrefix, 98, N);
    const peerSetupS = (Date.now() - t0) / 1000;
    const www = join(dir, 'www');
    procs.push(startDnsmasq(peer, dir, { mtu: MTU, domain: DOMAIN }));
    const scripts = writeBootScripts(dir);
    const peerSide: Side = {
      name: 'peer',
      netns: peer.guests.map((g) => g.netns),
      ids: new Map(),
      serverNetns: peer.server,
    };

    // The first boot of the guests just created: this one counts for failures too.
    const first = await storm(b.side, scripts);
    console.log(
      `first boot, berth: ${first.seconds.toFixed(2)} s, failed: ${reasons(first.boots) || 'none'}`,
    );
    const firstFailed = first.boots.filter((x) => !x.ok);
    await retryAlone(firstFailed, b.side, scripts);
    writePeerTrees(
      www,
      peer,
      first.boots.map((x) => x.tree),
    );
    for (const [i, g] of peer.guests.entries())
      peerSide.ids.set(g.netns, b.side.ids.get(b.side.netns[i] as string) as string);
    procs.push(startNginx(peer, dir, www));
    await sleep(1000);
    const firstPeer = await storm(peerSide, scripts);
    console.log(
      `first boot, peer: ${firstPeer.seconds.toFixed(2)} s, failed: ${reasons(firstPeer.boots) || 'none'}`,
    );

    const seconds = { berth: [] as number[], peer: [] as number[] };
    const boots = { berth: [] as GuestBoot[], peer: [] as GuestBoot[] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const side of [b.side, peerSide]) {
        const s = await storm(side, scripts);
        const f = stormFigures(s);
        seconds[side.name].push(s.seconds);
        boots[side.name].push(...s.boots);
        console.log(
          `round ${r + 1} ${side.name}: ${f.seconds.toFixed(2)} s, ${f.failures} failed, p99 ${f.p99Ms.toFixed(0)} ms`,
        );
      }
    }
    const bs = median(seconds.berth);
    const ps = median(seconds.peer);
    const berthFailures = firstFailed.length + boots.berth.filter((x) => !x.ok).length;
    const peerFailures = firstPeer.boots.filter((x) => !x.ok).length + boots.peer.filter((x) => !x.ok).length;
    console.log(
      `${N}-guest storm: berth ${bs.toFixed(2)} s, peer ${ps.toFixed(2)} s, ratio ${(bs / ps).toFixed(2)}`,
    );
    const bars: Bar[] = [
      {
        figure: `boot storm of ${N}: failed berth guests (first boot + ${ROUNDS} rounds)`,
        bar: '= 0',
        measured: String(berthFailures),
        pass: berthFailures === 0,
      },
      barAtMost(`boot storm of ${N}: berth / dnsmasq + nginx time`, bs / ps, 1.25, '×', 2),
    ];
    const failNote = (name: string, all: GuestBoot[]) => (reasons(all) ? ` ${name}: ${reasons(all)}.` : '');
    const refusals = await auditRefusals(b.d);
    if (refusals) console.log(`berth's audit log: ${refusals}`);
    updateResults(
      'storm',
      [
        `## Boot storm of ${N} netns guests (\`npm run bench:storm\`)`,
        '',
        provenance(),
        '',
        `Each guest runs busybox udhcpc (10 tries, 1 s apart), then curl reads \`/latest/meta-data/\` and every key in it (${(first.boots.find((x) => x.ok)?.tree.size ?? 1) - 1} keys, one connection). berth: the real berthd, ${N} instances created at once through the admin API (${b.createS.toFixed(1)} s), then all booted at once (first boot). Peer: a plain bridge, dnsmasq (static hosts, the same options) and nginx (one worker) serving berth guest i's bytes to peer guest i by source address (set up in ${peerSetupS.toFixed(1)} s). Then ${ROUNDS} rounds, sides alternating; before every storm each guest and the server side are reset to a fresh boot (no address, route or neighbour; berth's metadata cache cold). Time: until the last guest has its tree. Per-guest: process start to its last answer, and its two phases by the guest's own clock (udhcpc; the listing and every key).`,
        '',
        '| storm | all done s | failed | per-guest p50 ms | per-guest p99 ms | DHCP p50 / p99 ms | meta-data tree p50 / p99 ms |',
        '| --- | --- | --- | --- | --- | --- | --- |',
        row('berth, first boot after the creates', first.seconds, first.boots),
        row('dnsmasq + nginx, first boot', firstPeer.seconds, firstPeer.boots),
        row(`berth, ${ROUNDS} rounds (median time)`, bs, boots.berth),
        row(`dnsmasq + nginx, ${ROUNDS} rounds (median time)`, ps, boots.peer),
        '',
        `berth / peer over the rounds: ${ratio(bs, ps)} (bar ≤ 1.25×: ${bars[1]?.pass ? 'met' : 'NOT met'}). Failed berth guests: ${berthFailures} (bar 0: ${bars[0]?.pass ? 'met' : 'NOT met'}); failed peer guests: ${peerFailures}.${failNote('berth', [...first.boots, ...boots.berth])}${failNote('peer', [...firstPeer.boots, ...boots.peer])}${refusals ? ` Refusals in berth's audit log: ${refusals}.` : ''}`,
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
