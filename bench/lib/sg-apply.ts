// The apply half of bench/secgroups.ts: 1000 guarded ports on 10 bridges in
// 20 groups (each port in 2), 20 address sets of 100 members, 4 rules per
// group (3 naming other groups' sets, 1 a CIDR), applied with the real driver
// (nft transactions on this kernel's path). Rules match interface names, so no
// interface is needed. Each round, from no tables:
// - the first apply (both tables written whole);
// - a second apply of the same state (planned against what the last write left: nothing to do);
// - MEMBER_ADDS members added to one set, one apply each (one element add each: the 1 s bar);
// - one group's rule changed (its 100 ports' chains flushed and refilled);
// - counters() (read and parse every named counter);
// - a reading apply (read both tables back and diff: the watch's heal, a periodic reconcile).
// Every timing includes building the 1000-port state in JavaScript, as berthd does.
import { Names } from '../../hostnet/names.js';
import { NftSecGroupDriver } from '../../hostnet/secgroups/nft-driver.js';
import type { SecGroupState, SgPort, SgRule, SgSet } from '../../hostnet/secgroups/state.js';

export const PORTS = 1000;
export const GROUPS = 20;
const BRIDGES = 10;
const MEMBER_ADDS = 4;

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

function build(prefix: string, variant = 0, extra: string[] = []): SecGroupState {
  const sets: SgSet[] = Array.from({ length: GROUPS }, (_, g) => ({
    name: `s_g${g}`,
    source: `group:g${g}`,
    members: [],
  }));
  const ports: SgPort[] = [];
  for (let i = 0; i < PORTS; i++) {
    const groups = groupsOf(i);
    const ifname = `${prefix}p${i.toString(36).padStart(4, '0')}`;
    const mac = `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    for (const g of groups) sets[g]?.members.push({ ip: ipOf(i), mac, port: ifname });
    ports.push({
      ifname,
      bridge: `${prefix}b${i % BRIDGES}`,
      mac,
      ip: ipOf(i),
      instance: `i-${i}`,
      endpointPorts: [`${prefix}e${i % BRIDGES}`],
      rules: groups.flatMap((g) => rulesOf(g, g === 0 ? variant : 0)),
    });
  }
  // Added members are another host's guests: they arrive on the uplink.
  sets[0]?.members.push(
    ...extra.map((ip, k) => ({
      ip,
      mac: `02:00:00:04:00:${(k & 255).toString(16).padStart(2, '0')}`,
      port: `${prefix}up`,
    })),
  );
  return { ports, sets };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

export interface ApplyTimes {
  mode: string;
  /** Named counters in the tables (what counters() reads). */
  counters: number;
  /** Milliseconds, one sample per round (memberAdd: MEMBER_ADDS per round). */
  first: number[];
  noop: number[];
  memberAdd: number[];
  ruleChange: number[];
  readCounters: number[];
  reading: number[];
}

/** Runs `rounds` rounds against tables named by `prefix`; removes them at the end. */
export async function measureApply(prefix: string, rounds: number): Promise<ApplyTimes> {
  const driver = new NftSecGroupDriver(new Names(prefix));
  const t: ApplyTimes = {
    mode: await driver.mode(),
    counters: 0,
    first: [],
    noop: [],
    memberAdd: [],
    ruleChange: [],
    readCounters: [],
    reading: [],
  };
  try {
    for (let run = 0; run < rounds; run++) {
      await driver.remove();
      t.first.push(await time(() => driver.apply(build(prefix))));
      t.noop.push(
        await time(async () => {
          const r = await driver.apply(build(prefix));
          if (r.changed) throw new Error('the second apply of the same state changed something');
        }),
      );
      const extra: string[] = [];
      for (let k = 1; k <= MEMBER_ADDS; k++) {
        extra.push(`10.99.0.${k}`);
        t.memberAdd.push(await time(() => driver.apply(build(prefix, 0, extra))));
      }
      t.ruleChange.push(await time(() => driver.apply(build(prefix, 1, extra))));
      t.readCounters.push(await time(() => driver.counters()));
      t.reading.push(
        await time(async () => {
          const r = await driver.apply(build(prefix, 1, extra), { read: true });
          if (r.changed) throw new Error('the reading apply found the tables differing from the model');
        }),
      );
    }
    t.counters = (await driver.counters()).length;
  } finally {
    await driver.remove();
  }
  return t;
}
