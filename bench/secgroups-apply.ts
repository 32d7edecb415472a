// Security-group apply benchmark: 1000 guarded ports on 10 bridges in 20
// groups (each port in 2), 20 address sets of 100 members, 4 rules per group
// (3 naming other groups' sets, 1 a CIDR), applied with the real driver (nft
// transactions on this kernel's path). Rules match interface names, so no
// interface is needed. Times, each the median of 5 runs:
// - the first apply (both tables written whole);
// - a second apply of the same state (planned against what the last write left: nothing to do);
// - one member added to one set (one element add);
// - one group's rule changed (its 100 ports' chains flushed and refilled);
// - counters() (read and parse every named counter);
// - a reading apply (read both tables back and diff: the watch's heal, a periodic reconcile).
// Run as root: TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import bench/secgroups-apply.ts
import { Names } from '../hostnet/names.js';
import { NftSecGroupDriver } from '../hostnet/secgroups/nft-driver.js';
import type { SecGroupState, SgPort, SgRule, SgSet } from '../hostnet/secgroups/state.js';

const PORTS = 1000;
const GROUPS = 20;
const BRIDGES = 10;
const names = new Names('sabn');
const driver = new NftSecGroupDriver(names);

const ipOf = (i: number) => `10.${80 + Math.floor(i / 250)}.${i % 250}.${10}`;
const groupsOf = (i: number) => [i % GROUPS, (i * 7 + 3) % GROUPS];

function rulesOf(g: number, variant = 0): SgRule[] {
  return [
    ...[1, 2, 3].map((k) => ({
      id: `sr-g${g}r${k}`,
      group: `g${g}`,
      proto: 'tcp' as const,
      ports: { from: 3000 + k + variant, to: 3000 + k + variant },
      from: { set: `s_g${(g + k) % GROUPS}` },
    })),
    { id: `sr-g${g}icmp`, group: `g${g}`, proto: 'icmp', from: { cidr: '10.0.0.0/8' } },
  ];
}

function build(variant = 0, extra: string[] = []): SecGroupState {
  const sets: SgSet[] = Array.from({ length: GROUPS }, (_, g) => ({
    name: `s_g${g}`,
    source: `group:g${g}`,
    ips: [],
  }));
  const ports: SgPort[] = [];
  for (let i = 0; i < PORTS; i++) {
    const groups = groupsOf(i);
    for (const g of groups) sets[g]?.ips.push(ipOf(i));
    ports.push({
      ifname: `sabnp${i.toString(36).padStart(4, '0')}`,
      bridge: `sabnb${i % BRIDGES}`,
      mac: `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      ip: ipOf(i),
      instance: `i-${i}`,
      endpointPorts: [`sabne${i % BRIDGES}`],
      rules: groups.flatMap((g) => rulesOf(g, g === 0 ? variant : 0)),
    });
  }
  sets[0]?.ips.push(...extra);
  return { ports, sets };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const mode = await driver.mode();
  const first: number[] = [];
  const noop: number[] = [];
  const member: number[] = [];
  const rule: number[] = [];
  const counters: number[] = [];
  const reading: number[] = [];
  for (let run = 0; run < 5; run++) {
    await driver.remove();
    first.push(await time(() => driver.apply(build())));
    noop.push(
      await time(async () => {
        const r = await driver.apply(build());
        if (r.changed) throw new Error('the second apply changed something');
      }),
    );
    member.push(await time(() => driver.apply(build(0, ['10.99.0.1']))));
    rule.push(await time(() => driver.apply(build(1, ['10.99.0.1']))));
    counters.push(await time(() => driver.counters()));
    reading.push(await time(() => driver.apply(build(1, ['10.99.0.1']), { read: true })));
  }
  const n = (await driver.counters()).length;
  await driver.remove();
  const row = (what: string, xs: number[]) => `| ${what} | ${median(xs).toFixed(0)} ms |`;
  console.log(
    [
      `### Security-group apply (${mode}): ${PORTS} ports, ${GROUPS} groups, ${GROUPS} sets of ${(PORTS * 2) / GROUPS}, ${n} named counters`,
      '',
      '| step | median of 5 |',
      '|---|---|',
      row('first apply (both tables whole)', first),
      row('second apply (planned against the last write: nothing to do)', noop),
      row('one member added to one set', member),
      row("one group's rules changed (100 port chains)", rule),
      row('counters()', counters),
      row('a reading apply (read both tables + diff, nothing to do)', reading),
    ].join('\n'),
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
