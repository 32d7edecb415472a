// Diffs the observed `<prefix>_sg` tables against the desired ports and sets
// and returns one nft script, or undefined when nothing differs. Adds come
// before deletes. A set's members change as element adds and deletes, never
// as a rule rewrite; a port whose rules changed gets its chain flushed and
// refilled in the same transaction; a skeleton that is missing or not this
// version's (or this mode's) makes the whole tables be written afresh.
import type { Names } from '../names.js';
import { type ObservedSg, zoneMapOf } from './observe.js';
import {
  addSetCommands,
  BRIDGE_SET,
  baseChains,
  fingerprintOf,
  GUARDED_SET,
  PORT_MAP,
  PVID_ZONE_MAP,
  portChain,
  portCommands,
  portCounters,
  portRules,
  renderSecGroups,
  sgTable,
  skeletonFingerprint,
  TAG_ZONE_MAP,
  ZONE_MAP,
  zoneCommands,
  zoneElement,
  zoneKeysOf,
  zoneMapsOf,
  zoneTable,
  zoneValue,
} from './render.js';
import { memberElement, type SgMode, type SgPort, type SgSet } from './state.js';

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
    const want = new Set(set.members.map(memberElement));
    const add = [...want].filter((e) => !have.has(e)).sort();
    const del = [...have].filter((e) => !want.has(e)).sort();
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

  // Zones: a key is right when every map it belongs in holds its zone (and, in
  // br-netfilter mode, its bridge is in the bridge set).
  const keys = zoneKeysOf(ports);
  const z = zoneTable(names, mode);
  const zoneMaps = [ZONE_MAP, TAG_ZONE_MAP, PVID_ZONE_MAP];
  const zoned = (key: string) =>
    zoneMapsOf(key).every((m) => zoneMapOf(observed, m)?.get(key) === zoneValue(key)) &&
    (mode === 'bridge-ct' || key.includes('/') || observed.bridges.has(key));
  adds.push(
    ...zoneCommands(
      names,
      mode,
      keys.filter((k) => !zoned(k)),
      'add',
    ),
  );
  // A wrong zone value is deleted first, so the add below it can put the right one.
  const pre: string[] = [];
  for (const map of zoneMaps)
    for (const [key, zone] of [...(zoneMapOf(observed, map) ?? [])].sort()) {
      const elem = zoneElement(key);
      if (!keys.includes(key) || !zoneMapsOf(key).includes(map))
        deletes.push(`delete element ${z} ${map} { ${elem} }`);
      else if (zone !== zoneValue(key)) pre.push(`delete element ${z} ${map} { ${elem} }`);
    }
  for (const br of [...observed.bridges].sort())
    if (!keys.includes(br)) deletes.push(`delete element ${z} ${BRIDGE_SET} { "${br}" }`);
  const lines = [...pre, ...adds, ...deletes];
  if (lines.length === 0) return undefined;
  return { script: `${lines.join('\n')}\n`, whole: false };
}
