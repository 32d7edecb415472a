// Security-group forwarding cost, in one run: a client and a server netns on
// one bridge, TCP bulk (64 KiB writes, echoed back) and 1-byte request/response
// through it (test/helpers/sg_flow.py), in three configurations:
// - plain: bridge-nf-call-iptables=0 and no security-group tables (a bridge
//   without groups, as berth ran before);
// - loaded: br_netfilter on and the tables of 1000 guarded ports in 20 groups
//   (bench/secgroups-apply.ts's shape), the server's port not among them;
// - guarded: the same, and the server's port guarded (its rule names a set
//   of 100 members holding the client).
// It runs in a network namespace of its own, so the sysctl and the ruleset
// it changes are its own. Run as root:
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import bench/secgroups-forward.ts
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Names } from '../hostnet/names.js';
import { NftSecGroupDriver } from '../hostnet/secgroups/nft-driver.js';
import type { SecGroupState, SgPort } from '../hostnet/secgroups/state.js';

const FLOW = fileURLToPath(new URL('../test/helpers/sg_flow.py', import.meta.url));
const NS = 'sabf-root';
const SECONDS = '3';
const ROUNDS = 3;

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const quiet = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' });

function guarded(i: number, bridge: string, ifname: string, ip: string, clientIp?: string): SgPort {
  return {
    ifname,
    bridge,
    mac: `02:00:00:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    ip,
    instance: `i-${i}`,
    endpointPorts: ['sabfe0'],
    rules: [
      { id: 'sr-app', group: 'g0', proto: 'tcp', ports: { from: 5001, to: 5001 }, from: { set: 's_g0' } },
      ...(clientIp
        ? []
        : [{ id: 'sr-icmp', group: 'g0', proto: 'icmp' as const, from: { cidr: '10.0.0.0/8' } }]),
    ],
  };
}

function state(server?: SgPort): SecGroupState {
  const ports = Array.from({ length: 1000 }, (_, i) =>
    guarded(i, `sabfb${i % 10}`, `sabfp${i.toString(36).padStart(4, '0')}`, `10.90.${i >> 8}.${i & 255}`),
  );
  const members = Array.from({ length: 99 }, (_, i) => `10.91.0.${i + 10}`);
  const sets = Array.from({ length: 20 }, (_, g) => ({
    name: `s_g${g}`,
    source: `group:g${g}`,
    ips: g === 0 ? ['10.92.0.2', ...members] : members,
  }));
  return { ports: server ? [...ports, server] : ports, sets };
}

function measure(): { mbit: number; rr: number } {
  const run = (mode: string) =>
    Number(
      sh('ip', [
        'netns',
        'exec',
        'sabf-c',
        '/usr/bin/python3',
        FLOW,
        mode,
        '10.92.0.3',
        '5001',
        SECONDS,
      ]).trim(),
    );
  return { mbit: run('blast'), rr: run('rr') };
}

async function inner(): Promise<void> {
  const bridge = 'sabfbr';
  sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
  sh('ip', ['link', 'set', bridge, 'up']);
  for (const [ns, port, ip] of [
    ['sabf-c', 'sabfpc', '10.92.0.2'],
    ['sabf-s', 'sabfps', '10.92.0.3'],
  ] as const) {
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh('ip', ['link', 'set', port, 'master', bridge, 'up']);
    sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up']);
    sh('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${ip}/16`, 'dev', 'eth0']);
  }
  const child = spawn('ip', ['netns', 'exec', 'sabf-s', '/usr/bin/python3', FLOW, 'serve', '5001']);
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  const rows: string[] = [];
  try {
    // Interleaved rounds, medians: a shared host's noise hits every configuration alike.
    const driver = new NftSecGroupDriver(new Names('sabf'), { mode: 'br-netfilter' });
    const runs: Record<'plain' | 'loaded' | 'guard', { mbit: number; rr: number }[]> = {
      plain: [],
      loaded: [],
      guard: [],
    };
    for (let round = 0; round < ROUNDS; round++) {
      await driver.remove();
      writeFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', '0\n');
      runs.plain.push(measure());
      writeFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', '1\n');
      await driver.apply(state());
      runs.loaded.push(measure());
      await driver.apply(state(guarded(5000, bridge, 'sabfps', '10.92.0.3', '10.92.0.2')));
      runs.guard.push(measure());
    }
    const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const med = (ms: { mbit: number; rr: number }[]) => ({
      mbit: mid(ms.map((m) => m.mbit)),
      rr: mid(ms.map((m) => m.rr)),
    });
    const plain = med(runs.plain);
    const loaded = med(runs.loaded);
    const guard = med(runs.guard);
    const row = (what: string, m: { mbit: number; rr: number }) =>
      `| ${what} | ${m.mbit} | ${(((m.mbit - plain.mbit) / plain.mbit) * 100).toFixed(0)}% | ${m.rr} | ${(((m.rr - plain.rr) / plain.rr) * 100).toFixed(0)}% |`;
    rows.push(
      `### Security-group forwarding cost (br-netfilter), one run, median of ${ROUNDS} interleaved rounds of ${SECONDS} s`,
      '',
      '| configuration | TCP bulk Mbit/s | vs plain | 1-byte RR/s | vs plain |',
      '|---|---|---|---|---|',
      row('plain bridge (bridge-nf-call-iptables=0, no tables)', plain),
      row('br_netfilter on, 1000 other ports guarded, this port not', loaded),
      row('this port guarded (rule on a 100-member set)', guard),
    );
    console.log(rows.join('\n'));
  } finally {
    child.kill();
  }
}

function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('needs root (nftables, namespaces)');
  const cleanup = () => {
    for (const ns of ['sabf-c', 'sabf-s', NS]) quiet('ip', ['netns', 'del', ns]);
  };
  cleanup();
  try {
    sh('ip', ['netns', 'add', NS]);
    const r = spawnSync(
      'ip',
      ['netns', 'exec', NS, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)],
      { stdio: 'inherit', env: { ...process.env, BENCH_SGF_INSIDE: '1' } },
    );
    if (r.status !== 0) throw new Error(`the benchmark in namespace ${NS} failed (exit ${r.status})`);
  } finally {
    cleanup();
  }
}

if (process.env.BENCH_SGF_INSIDE) {
  inner().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else outer();
