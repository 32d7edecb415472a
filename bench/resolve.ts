// Identity resolution benchmark: IdentityObserver.resolve() with 1000 real
// ports. A bridge gets 1000 veth pairs; the far end of each carries a guest
// MAC and sends one gratuitous ARP, so the bridge *learns* every MAC on its
// own port, as it does for a booting guest. An endpoint namespace on the
// bridge holds a neighbour entry (IP → MAC) per guest. The observer reads
// both with its real dumps (`bridge -j fdb show`, `ip -j neigh show`) and
// keeps its real monitors running; the port table is an in-memory
// directory, as in berthd. Then every guest IP is resolved ROUNDS times and
// each call is timed: p50/p99 of `await resolve()` (the metadata path) and
// of resolveNow() (the synchronous core).
//
// The benchmark re-runs itself inside a namespace of its own, which is its
// "root" namespace: the observer runs unchanged, and deleting that namespace
// at the end takes the 2000 interfaces in one batch (deleting them one by one
// waits for an RCU grace period each: minutes).
//
// Run as root: npm run bench:resolve. Writes the resolve section of bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { intToIp, ipToInt } from '../hostnet/ipv4.js';
import { Names } from '../hostnet/names.js';
import { IdentityObserver } from '../hostnet/observe/observer.js';
import { MemoryPortDirectory } from '../hostnet/observe/resolve.js';
import { removePrefixed, uniquePrefix } from '../test/helpers/berthd.js';
import { sh, sleep } from './lib/proc.js';
import { barAtMost, percentile, provenance, updateResults } from './lib/results.js';

const PORTS = Number(process.env.BENCH_RESOLVE_PORTS ?? 1000);
const ROUNDS = Number(process.env.BENCH_RESOLVE_ROUNDS ?? 100);

interface Guest {
  port: string;
  peer: string;
  mac: string;
  ip: string;
}

function guestsOf(prefix: string): Guest[] {
  const base = ipToInt('10.100.0.10');
  return Array.from({ length: PORTS }, (_, i) => {
    const n = i + 1;
    return {
      port: `${prefix}p${i}`,
      peer: `${prefix}x${i}`,
      mac: `02:0b:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
      ip: intToIp(base + i),
    };
  });
}

// One gratuitous ARP per guest, sent from its end of the veth: "IFACE MAC IP" lines on stdin.
const GRATUITOUS_ARP = `
import socket, sys
for line in sys.stdin:
    iface, mac, ip = line.split()
    m = bytes.fromhex(mac.replace(':', ''))
    a = socket.inet_aton(ip)
    arp = bytes.fromhex('0001080006040001') + m + a + bytes(6) + a
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    s.send(b'\\xff' * 6 + m + b'\\x08\\x06' + arp)
    s.close()
`;

/** Bridge, endpoint namespace and PORTS veth pairs; returns how many MACs the bridge learned. */
async function buildHost(names: Names, guests: Guest[]): Promise<{ learned: number; setupS: number }> {
  const t0 = Date.now();
  const bridge = names.bridge('bench');
  const ep = names.endpointNetns('bench');
  const epVeth = names.endpointVeth('bench');
  sh('ip', ['netns', 'add', ep]);
  const batch = [
    // Learned entries age out after ageing_time; an hour outlasts the run.
    `link add ${bridge} type bridge forward_delay 0 ageing_time 360000`,
    `link set ${bridge} up`,
    `link add ${epVeth} type veth peer name eth0 netns ${ep}`,
    `link set ${epVeth} master ${bridge} up`,
  ];
  for (const g of guests) {
    batch.push(`link add ${g.port} type veth peer name ${g.peer} address ${g.mac}`);
    batch.push(`link set ${g.port} master ${bridge} up`);
    batch.push(`link set ${g.peer} up`);
  }
  sh('ip', ['-batch', '-'], `${batch.join('\n')}\n`);
  const neigh = ['link set lo up', 'link set eth0 up', 'addr add 10.100.255.254/16 dev eth0'];
  for (const g of guests) neigh.push(`neigh replace ${g.ip} lladdr ${g.mac} dev eth0 nud permanent`);
  sh('ip', ['-n', ep, '-batch', '-'], `${neigh.join('\n')}\n`);
  sh('/usr/bin/python3', ['-c', GRATUITOUS_ARP], guests.map((g) => `${g.peer} ${g.mac} ${g.ip}`).join('\n'));
  // Wait for the bridge to have learned every guest MAC from the guests' own frames.
  const want = new Set(guests.map((g) => g.mac));
  let learned = 0;
  for (let i = 0; i < 40; i++) {
    const rows = JSON.parse(sh('bridge', ['-j', 'fdb', 'show', 'br', bridge])) as { mac: string }[];
    learned = rows.filter((r) => want.has(r.mac)).length;
    if (learned === guests.length) break;
    await sleep(500);
  }
  return { learned, setupS: (Date.now() - t0) / 1000 };
}

/** Outside: a namespace of its own, this script again inside it, then the namespaces go. */
function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('bench:resolve needs root (bridges, namespaces)');
  const prefix = uniquePrefix();
  process.on('SIGINT', () => {
    removePrefixed(prefix);
    process.exit(130);
  });
  try {
    sh('ip', ['netns', 'add', `${prefix}-root`]);
    const r = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        `${prefix}-root`,
        process.execPath,
        ...process.execArgv,
        fileURLToPath(import.meta.url),
      ],
      { stdio: 'inherit', env: { ...process.env, BENCH_RESOLVE_PREFIX: prefix } },
    );
    if (r.status !== 0)
      throw new Error(`the benchmark in namespace ${prefix}-root failed (exit ${r.status})`);
  } finally {
    removePrefixed(prefix);
  }
}

async function inner(prefix: string): Promise<void> {
  const names = new Names(prefix);
  const guests = guestsOf(prefix);
  // No IPv6 chatter (MLD, DAD) from 2000 new interfaces; the ARPs are all the learning needed.
  sh('sysctl', ['-qw', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1']);
  let observer: IdentityObserver | undefined;
  try {
    console.log(`building ${PORTS} veth ports on a bridge (prefix ${prefix})`);
    const host = await buildHost(names, guests);
    console.log(`  ${host.learned}/${PORTS} MACs learned by the bridge in ${host.setupS.toFixed(1)} s`);
    if (host.learned !== PORTS)
      throw new Error(`the bridge learned only ${host.learned} of ${PORTS} guest MACs`);
    const directory = new MemoryPortDirectory();
    for (const [i, g] of guests.entries())
      directory.set({ ifname: g.port, mac: g.mac, ip: g.ip, instance: `i-${i}`, network: 'bench' });
    observer = new IdentityObserver({ names, directory });
    await observer.start();
    await observer.addNetwork({
      name: 'bench',
      bridge: names.bridge('bench'),
      netns: names.endpointNetns('bench'),
    });
    const stats = observer.stats();
    console.log(
      `  observer: ${stats.fdbEntries} FDB entries, ${JSON.stringify(stats.neighbours)} neighbours`,
    );

    // Warm the JIT, and check every guest resolves to its own instance.
    for (let r = 0; r < 10; r++) {
      for (const [i, g] of guests.entries()) {
        const res = await observer.resolve('bench', g.ip);
        if (!res.ok || res.instance !== `i-${i}`)
          throw new Error(`${g.ip} resolved to ${JSON.stringify(res)}`);
      }
    }
    const asyncNs: number[] = [];
    const syncNs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const g of guests) {
        const t0 = process.hrtime.bigint();
        await observer.resolve('bench', g.ip);
        asyncNs.push(Number(process.hrtime.bigint() - t0));
        const t1 = process.hrtime.bigint();
        observer.resolveNow('bench', g.ip);
        syncNs.push(Number(process.hrtime.bigint() - t1));
      }
    }
    const us = (xs: number[], p: number) => percentile(xs, p) / 1000;
    const fig = {
      p50: us(asyncNs, 50),
      p99: us(asyncNs, 99),
      max: us(asyncNs, 100),
      nowP50: us(syncNs, 50),
      nowP99: us(syncNs, 99),
    };
    console.log(
      `resolve(): p50 ${fig.p50.toFixed(2)} µs, p99 ${fig.p99.toFixed(2)} µs; resolveNow(): p99 ${fig.nowP99.toFixed(2)} µs`,
    );
    const bar = barAtMost(`resolve() p99, ${PORTS} real ports`, fig.p99, 100, ' µs', 1);
    updateResults(
      'resolve',
      [
        '## Identity resolution with 1000 ports (`npm run bench:resolve`)',
        '',
        provenance(),
        '',
        `Real ports: ${PORTS} veth pairs on a bridge (in a namespace of the benchmark's own); the bridge learned all ${host.learned} guest MACs from the guests' own frames (a gratuitous ARP each). The endpoint namespace holds one permanent neighbour entry per guest. IdentityObserver read both through its real dumps and runs its real monitors (${stats.fdbEntries} FDB entries, ${Object.values(stats.neighbours)[0] ?? 0} neighbours observed). ${ROUNDS} rounds over every guest IP, each call timed alone (hrtime, ~0.1 µs of its own).`,
        '',
        '| call | p50 µs | p99 µs | max µs |',
        '| --- | --- | --- | --- |',
        `| \`await resolve()\` (metadata path) | ${fig.p50.toFixed(2)} | ${fig.p99.toFixed(2)} | ${fig.max.toFixed(1)} |`,
        `| \`resolveNow()\` (the map lookups) | ${fig.nowP50.toFixed(2)} | ${fig.nowP99.toFixed(2)} | ${us(syncNs, 100).toFixed(1)} |`,
        '',
        `Bar p99 ${bar.bar}: ${bar.pass ? 'met' : 'NOT met'}. Host setup (${PORTS} veth pairs, learning) took ${host.setupS.toFixed(1)} s.`,
      ].join('\n'),
      [bar],
    );
  } finally {
    observer?.stop();
  }
}

const innerPrefix = process.env.BENCH_RESOLVE_PREFIX;
(innerPrefix ? inner(innerPrefix) : Promise.resolve().then(outer)).catch((err) => {
  console.error(err);
  process.exit(1);
});
