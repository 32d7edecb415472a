// Diffs the observed `<prefix>_sg` tables against the desired ports and sets
// and returns one nft script, or undefined when nothing differs. Adds come
// before deletes. A set's members change as element adds and deletes, never
// as a rule rewrite; a port whose rules changed gets its chain flushed and
// refilled in the same transaction; a skeleton that is missing or not this
// version's (or this mode's) makes the whole tables be written afresh.
import type { Names } from '../names.js';
import type { ObservedSg } from './observe.js';
import {
  addSetCommands,
  baseChains,
  fingerprintOf,
  GUARDED_SET,
  PORT_MAP,
  portChain,
  portCommands,
  portCounters,
  portRules,
  renderSecGroups,
  sgTable,
  skeletonFingerprint,
  ZONE_MAP,
  zoneCommands,
  zoneOf,
  zoneTable,
} from './render.js';
import type { SgMode, SgPort, SgSet } from './state.js';

export interface SgPlan {
  script: string;
  /** True when the tables are written whole (the skeleton was missing or differed). */
  whole: boolean;
}

function skeletonOk(names: Names, mode: SgMode, observed: ObservedSg): boolean {
  const want = baseChains(mode);
  const fp = skeletonFingerprint(names, mode);
  if (observed.baseChains.size !== want.length) return false;
  return want.every((c) => observed.baseChains.get(c) === fp);
}

export function planSecGroups(
  names: Names,
  mode: SgMode,
  observed: ObservedSg | undefined,
  ports: SgPort[],
  sets: SgSet[],
): SgPlan | undefined {
  if (!observed || !skeletonOk(names, mode, observed))
    return { script: renderSecGroups(names, mode, ports, sets), whole: true };
  const b = `bridge ${sgTable(names)}`;
  const adds: string[] = [];
  const deletes: string[] = [];

  for (const set of [...sets].sort((x, y) => (x.name < y.name ? -1 : 1))) {
    const have = observed.sets.get(set.name);
    if (!have) {
      adds.push(...addSetCommands(names, set));
      continue;
    }
    const add = set.ips.filter((ip) => !have.has(ip));
    const want = new Set(set.ips);
    const del = [...have].filter((ip) => !want.has(ip)).sort();
    if (add.length > 0) adds.push(`add element ${b} ${set.name} { ${add.join(', ')} }`);
    if (del.length > 0) deletes.push(`delete element ${b} ${set.name} { ${del.join(', ')} }`);
  }

  const wanted = new Set(ports.map((p) => p.ifname));
  const counters = new Set<string>();
  for (const port of [...ports].sort((x, y) => (x.ifname < y.ifname ? -1 : 1))) {
    for (const c of portCounters(port)) counters.add(c);
    const chain = portChain(port.ifname);
    const dispatched = observed.dispatch.get(port.ifname) === chain;
    if (observed.chains.get(port.ifname) !== fingerprintOf(portRules(names, mode, port)))
      adds.push(...portCommands(names, mode, port, false));
    if (!dispatched) {
      if (observed.dispatch.has(port.ifname))
        adds.push(`delete element ${b} ${PORT_MAP} { "${port.ifname}" }`);
      adds.push(`add element ${b} ${PORT_MAP} { "${port.ifname}" : jump ${chain} }`);
    }
    if (!observed.guarded.has(port.ifname)) adds.push(`add element ${b} ${GUARDED_SET} { "${port.ifname}" }`);
  }

  for (const ifname of [...observed.guarded].sort())
    if (!wanted.has(ifname)) deletes.push(`delete element ${b} ${GUARDED_SET} { "${ifname}" }`);
  for (const ifname of [...observed.dispatch.keys()].sort())
    if (!wanted.has(ifname)) deletes.push(`delete element ${b} ${PORT_MAP} { "${ifname}" }`);
  for (const ifname of [...observed.chains.keys()].sort())
    if (!wanted.has(ifname))
      deletes.push(`flush chain ${b} ${portChain(ifname)}`, `delete chain ${b} ${portChain(ifname)}`);
  for (const name of [...observed.counters.keys()].sort())
    if (name.includes('.') && !counters.has(name)) deletes.push(`delete counter ${b} ${name}`);
  const setNames = new Set(sets.map((s) => s.name));
  for (const name of [...observed.sets.keys()].sort())
    if (!setNames.has(name)) deletes.push(`delete set ${b} ${name}`);

  const bridges = [...new Set(ports.map((p) => p.bridge))].sort();
  const zoned = (br: string) =>
    observed.zones.get(br) === zoneOf(br) && (mode === 'bridge-ct' || observed.bridges.has(br));
  adds.push(
    ...zoneCommands(
      names,
      mode,
      bridges.filter((br) => !zoned(br)),
      'add',
    ),
  );
  const stale = [...new Set([...observed.zones.keys(), ...observed.bridges])]
    .filter(
      (br) => !bridges.includes(br) || (observed.zones.has(br) && observed.zones.get(br) !== zoneOf(br)),
    )
    .sort();
  // A wrong zone value is deleted first, so the add below it can put the right one.
  const wrong = stale.filter((br) => bridges.includes(br));
  const gone = stale.filter((br) => !bridges.includes(br));
  const z = zoneTable(names, mode);
  const pre = wrong.map((br) => `delete element ${z} ${ZONE_MAP} { "${br}" }`);
  for (const br of gone) {
    if (observed.zones.has(br)) deletes.push(`delete element ${z} ${ZONE_MAP} { "${br}" }`);
    if (observed.bridges.has(br)) deletes.push(`delete element ${z} bridges { "${br}" }`);
  }
  const lines = [...pre, ...adds, ...deletes];
  if (lines.length === 0) return undefined;
  return { script: `${lines.join('\n')}\n`, whole: false };
}
