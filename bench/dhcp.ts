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
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthClient } from '../agent/client/client.js';
import { BERTHD, removePrefixed, uniquePrefix } from '../test/helpers/berthd.js';

const N = Number(process.env.BENCH_GUESTS ?? 100);
const LOAD_GUESTS = 20;
const PER_GUEST = 10;
const ROUNDS = 3;
const RESULTS = new URL('./RESULTS.md', import.meta.url).pathname;

const sh = (cmd: string, args: string[]) =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn(argv[0] as string, argv.slice(1), { stdio: 'ignore' });
    p.on('exit', (code) => resolve(code ?? 1));
  });
}

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

async function startBerth(prefix: string, dir: string): Promise<{ proc: ChildProcess; guests: string[] }> {
  const config = join(dir, 'berthd.yaml');
  writeFileSync(
    config,
    `name_prefix: ${prefix}\nlog_level: warn\nnetworks: [{name: bench, subnet: 10.90.0.0/24, gateway: 10.90.0.1, dns: [10.90.0.1], mtu: 1500, domain: bench.test}]\n`,
  );
  const socket = join(dir, 'berthd.sock');
  const proc = spawn(
    process.execPath,
    [BERTHD, '--config', config, '--state-dir', join(dir, 'state'), '--socket', socket],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const client = new BerthClient(socket, 30_000);
  for (let i = 0; ; i++) {
    try {
      await client.status();
      break;
    } catch {
      if (i > 300) throw new Error('berthd did not start');
      await sleep(50);
    }
  }
  const guests: string[] = [];
  for (let i = 0; i < N; i++) {
    const inst = await client.createInstance({ name: `g${i}`, network: 'bench', runtime: 'netns' });
    guests.push(inst.netns as string);
  }
  return { proc, guests };
}

function startDnsmasq(prefix: string, dir: string): { proc: ChildProcess; guests: string[] } {
  const bridge = `${prefix}dbr`;
  const srv = `${prefix}-dsrv`;
  sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
  sh('ip', ['link', 'set', bridge, 'up']);
  sh('ip', ['netns', 'add', srv]);
  sh('ip', ['link', 'add', `${prefix}dsv`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', srv]);
  sh('ip', ['link', 'set', `${prefix}dsv`, 'master', bridge, 'up']);
  sh('ip', ['-n', srv, 'link', 'set', 'lo', 'up']);
  sh('ip', ['-n', srv, 'link', 'set', 'eth0', 'up']);
  sh('ip', ['-n', srv, 'addr', 'add', '10.91.0.254/24', 'dev', 'eth0']);
  const hosts: string[] = [];
  const guests: string[] = [];
  for (let i = 0; i < N; i++) {
    const ns = `${prefix}-dg${i}`;
    const mac = `02:42:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['link', 'add', `${prefix}d${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh('ip', ['link', 'set', `${prefix}d${i}`, 'master', bridge, 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', mac, 'up']);
    hosts.push(`${mac},10.91.0.${i + 2},g${i}`);
    guests.push(ns);
  }
  const hostsFile = join(dir, 'dnsmasq.hosts');
  writeFileSync(hostsFile, `${hosts.join('\n')}\n`);
  const proc = spawn(
    'ip',
    [
      'netns',
      'exec',
      srv,
      'dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--port=0',
      '--user=root',
      '--interface=eth0',
      '--bind-interfaces',
      '--dhcp-authoritative',
      '--no-ping',
      '--dhcp-range=10.91.0.0,static,255.255.255.0,1h',
      `--dhcp-hostsfile=${hostsFile}`,
      `--dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`,
      `--pid-file=${join(dir, 'dnsmasq.pid')}`,
      '--dhcp-option=3,10.91.0.1',
      '--dhcp-option=6,10.91.0.1',
      '--dhcp-option=15,bench.test',
      '--dhcp-option=26,1500',
      '--dhcp-option=121,169.254.169.254/32,0.0.0.0,0.0.0.0/0,10.91.0.1',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return { proc, guests };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function updateResults(section: string): void {
  let text = '';
  try {
    text = readFileSync(RESULTS, 'utf8');
  } catch {
    text = '# Benchmark results\n';
  }
  const start = '<!-- bench:dhcp:start -->';
  const end = '<!-- bench:dhcp:end -->';
  const block = `${start}\n${section}\n${end}`;
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  text = re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(RESULTS, text);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:dhcp needs root (bridges, namespaces, nftables)');
  const prefix = uniquePrefix();
  const dir = mkdtempSync(join(tmpdir(), 'bench-dhcp-'));
  const procs: ChildProcess[] = [];
  const cleanup = () => {
    for (const p of procs) p.kill('SIGKILL');
    removePrefixed(prefix);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const load = loadavg()[0]?.toFixed(1);
    console.log(`setting up ${N} berth guests and ${N} dnsmasq guests (prefix ${prefix})`);
    const berth = await startBerth(prefix, dir);
    procs.push(berth.proc);
    const dnsmasq = startDnsmasq(prefix, dir);
    procs.push(dnsmasq.proc);
    await sleep(1000);

    const r = {
      berth: { rate: [] as number[], storm: [] as number[] },
      dnsmasq: { rate: [] as number[], storm: [] as number[] },
    };
    const failed = { berth: 0, dnsmasq: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, side] of [
        ['berth', berth],
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
    updateResults(
      [
        '## DHCP: berth vs dnsmasq (`npm run bench:dhcp`)',
        '',
        `Measured ${new Date().toISOString().slice(0, 10)} on this host (${process.version}, ${dnsmasqVersion}); median of ${ROUNDS} rounds, servers alternating.`,
        `Client: busybox udhcpc in netns guests (process start included, for both). leases/s: ${LOAD_GUESTS} guests x ${PER_GUEST} back-to-back DORA exchanges.`,
        `Load average at the start: ${load}; with a shared host and client process starts in the figures, rounds vary by about ±20 %.`,
        `Measurements with any failed client are left out of the medians: berth ${failed.berth}, dnsmasq ${failed.dnsmasq}.`,
        '',
        '| figure | berth | dnsmasq | ratio | bar |',
        '| --- | --- | --- | --- | --- |',
        `| leases/s | ${bRate.toFixed(1)} | ${dRate.toFixed(1)} | ${rateRatio.toFixed(2)} | >= 0.8 ${rateRatio >= 0.8 ? 'met' : 'NOT met'} |`,
        `| ${N} guests, all leased (s) | ${bStorm.toFixed(2)} | ${dStorm.toFixed(2)} | ${stormRatio.toFixed(2)} | <= 1.25 ${stormRatio <= 1.25 ? 'met' : 'NOT met'} |`,
      ].join('\n'),
    );
  } finally {
    cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
