// Guard restore benchmark: how long guests go unguarded after somebody
// else deletes or flushes berth's guard table, with 200 guarded ports.
// The real Guard (nft transactions) and the real GuardWatch (an `nft monitor`
// child, berth's own writes told apart by pid) heal exactly as berthd's host
// driver does: a table seen deleted is written whole without reading it
// first; any other change is read, planned and patched.
//
// Each round tampers with the table with the nft CLI, as an operator or
// `systemctl reload nftables` would:
// - `nft delete table bridge <prefix>_guard`
// - `nft flush ruleset` (every table: why this runs in a namespace of its own)
// - `nft flush chain bridge <prefix>_guard port_<one port>`
// and times from just before that command is spawned until the healing
// transaction has committed; then the table is read back and must equal the
// desired state. The delete is measured twice: with the fast path and with
// the read-then-plan path it replaced, so the gain is measured, not assumed.
//
// The benchmark re-runs itself inside a namespace of its own ("root"), so the
// ruleset it flushes is its own. Run as root: npm run bench:guard-heal.
// Writes the guard-heal section of bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Guard } from '../hostnet/guard/guard.js';
import { CommandNftApplier } from '../hostnet/guard/nft.js';
import { observeGuard } from '../hostnet/guard/observe.js';
import { planGuard } from '../hostnet/guard/plan.js';
import type { GuardState } from '../hostnet/guard/render.js';
import { GuardWatch } from '../hostnet/guard/watch.js';
import { intToIp, ipToInt } from '../hostnet/ipv4.js';
import { Names } from '../hostnet/names.js';
import { removePrefixed, uniquePrefix } from '../test/helpers/berthd.js';
import { sh, sleep } from './lib/proc.js';
import { barAtMost, median, provenance, updateResults } from './lib/results.js';

const PORTS = Number(process.env.BENCH_GUARD_PORTS ?? 200);
const ROUNDS = Number(process.env.BENCH_GUARD_ROUNDS ?? 5);

function desiredOf(names: Names): GuardState {
  const base = ipToInt('10.101.0.10');
  const ports = Array.from({ length: PORTS }, (_, i) => ({
    ifname: `${names.prefix}p${i.toString(16).padStart(8, '0')}0`,
    mac: `0a:b7:e8:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
    ipv4: intToIp(base + i),
    network: 'bench',
    bridge: names.bridge('bench'),
  }));
  return {
    ports,
    endpoints: [
      {
        network: 'bench',
        bridge: names.bridge('bench'),
        ifname: names.endpointVeth('bench'),
        serviceIp: intToIp(base + 250),
      },
    ],
  };
}

interface Case {
  name: string;
  tamper: string[];
  /** The watch's fast paths (no read of a table known gone, one port repaired alone); off to measure what they replaced. */
  fast: boolean;
  /** Only a port chain changes: its port falls through to the "unguarded" drop until repaired. */
  portOnly?: boolean;
}

async function inner(prefix: string): Promise<void> {
  const names = new Names(prefix);
  const desired = desiredOf(names);
  const nft = new CommandNftApplier();
  const guard = new Guard(names, nft);
  let fast = true;
  let healed: ((ms: number) => void) | undefined;
  const watch = new GuardWatch({
    table: guard.table,
    ownTransaction: (pid) => guard.ownTransaction(pid),
    writing: () => guard.writing(),
    heal: async (tamper) => {
      // As HostDriver.healGuard does.
      if (fast && tamper && !tamper.whole && tamper.ports.length > 0)
        await guard.repairPorts(desired, tamper.ports);
      else await guard.apply(desired, { absent: fast && tamper?.tableGone === true });
      if (tamper) healed?.(performance.now());
    },
  });
  const t0 = performance.now();
  await guard.apply(desired);
  const fullMs = performance.now() - t0;
  console.log(`${PORTS} ports: first whole-table write ${fullMs.toFixed(0)} ms`);
  const readStart = performance.now();
  await nft.listTable('bridge', guard.table);
  const readMs = performance.now() - readStart;
  console.log(`  reading the table back: ${readMs.toFixed(0)} ms`);
  watch.start();
  await sleep(500);
  await watch.idle();

  const victim = desired.ports[PORTS >> 1]?.ifname as string;
  const cases: Case[] = [
    { name: '`nft delete table`', tamper: ['delete', 'table', 'bridge', guard.table], fast: true },
    { name: '`nft flush ruleset`', tamper: ['flush', 'ruleset'], fast: true },
    {
      name: '`nft flush chain … port_x`',
      tamper: ['flush', 'chain', 'bridge', guard.table, `port_${victim}`],
      fast: true,
      portOnly: true,
    },
    {
      name: '`nft flush chain … port_x`, whole-table reconcile (before)',
      tamper: ['flush', 'chain', 'bridge', guard.table, `port_${victim}`],
      fast: false,
      portOnly: true,
    },
  ];
  const rows: { c: Case; ms: number[]; closed: number[] }[] = [];
  for (const c of cases) {
    fast = c.fast;
    const ms: number[] = [];
    const closed: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      guard.failClosedAt = 0;
      const done = new Promise<number>((resolve) => {
        healed = resolve;
      });
      const start = performance.now();
      sh('nft', c.tamper);
      const end = await Promise.race([done, sleep(30_000).then(() => Number.NaN)]);
      healed = undefined;
      await watch.idle();
      if (Number.isNaN(end)) throw new Error(`${c.name}: no heal within 30 s`);
      const left = planGuard(names, observeGuard(await nft.listTable('bridge', guard.table)), desired);
      if (left !== undefined) throw new Error(`${c.name}: the healed table differs:\n${left.slice(0, 500)}`);
      ms.push(end - start);
      // A whole-table write holds every guest port closed after its first transaction.
      const shut = guard.failClosedAt > start ? guard.failClosedAt - start : c.portOnly ? 0 : end - start;
      closed.push(shut);
      console.log(
        `  ${c.name} round ${r + 1}: fail-closed in ${shut.toFixed(0)} ms, complete in ${(end - start).toFixed(0)} ms`,
      );
      await sleep(300);
    }
    rows.push({ c, ms, closed });
  }
  watch.stop();

  const worst = Math.max(...rows.filter((r) => r.c.fast).flatMap((r) => r.ms));
  const bar = barAtMost(
    `guard restored after delete/flush, ${PORTS} ports (worst of all rounds)`,
    worst,
    1000,
    ' ms',
  );
  updateResults(
    'guard-heal',
    [
      `## Guard restore after a flush or delete, ${PORTS} ports (\`npm run bench:guard-heal\`)`,
      '',
      provenance(),
      '',
      `The real Guard and GuardWatch (an \`nft monitor\` child; berth's own writes ignored by pid) in a namespace of the benchmark's own, ${PORTS} guarded ports. Each round runs the tampering command with the nft CLI and times from just before it is spawned until the healing transaction has committed; the table is then read back and must equal the desired state. ${ROUNDS} rounds each. A skeleton change is healed from its first event line when berth has no write of its own in flight (a flush prints thousands of lines before the one naming its writer); a table that is gone is written in two transactions, the skeleton (every guest port closed) and then the ports. A change to port chains or elements only is repaired for those ports without reading the table; the "before" row is that case through the whole-table reconcile it replaced. For scale: the first whole-table write took ${fullMs.toFixed(0)} ms, reading the table back ${readMs.toFixed(0)} ms.`,
      '',
      'Fail-closed: every guest port drops everything (the skeleton of a whole-table write is in; a flushed port chain is closed from the start, since its port falls through to the "unguarded" drop). Complete: every port guarded as desired again.',
      '',
      '| tamper | fail-closed median ms | max ms | complete median ms | max ms |',
      '| --- | --- | --- | --- | --- |',
      ...rows.map(
        (r) =>
          `| ${r.c.name} | ${median(r.closed).toFixed(0)} | ${Math.max(...r.closed).toFixed(0)} | ${median(r.ms).toFixed(0)} | ${Math.max(...r.ms).toFixed(0)} |`,
      ),
    ].join('\n'),
    [bar],
  );
  console.log(`worst restore ${worst.toFixed(0)} ms (bar ≤ 1000 ms): ${bar.pass ? 'met' : 'NOT met'}`);
}

/** Outside: a namespace of its own, this script again inside it, then the namespace goes. */
function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('bench:guard-heal needs root (nftables, namespaces)');
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
      { stdio: 'inherit', env: { ...process.env, BENCH_GUARD_PREFIX: prefix } },
    );
    if (r.status !== 0)
      throw new Error(`the benchmark in namespace ${prefix}-root failed (exit ${r.status})`);
  } finally {
    removePrefixed(prefix);
  }
}

const inside = process.env.BENCH_GUARD_PREFIX;
if (inside) {
  inner(inside).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else outer();
