// The reconcile of a network's edges: its chains, sets and counters, and the
// elements its guests put in those sets. Elements are diffed as sets (add
// what is missing, delete what is extra), so a port that moves, changes its
// IP or goes away costs a few element commands and no rule is rewritten.
import { fingerprintOfRules } from './fingerprint.js';
import type { ObservedGuard } from './observe.js';
import { EDGE_REASONS } from './reasons.js';
import { endpointFor, type GuardState } from './render.js';
import {
  EDGE_SETS,
  ENDPOINT_MAP,
  edgeChain,
  edgeCounter,
  edgeRules,
  edgeSet,
  edgeSetDeclaration,
  elementText,
  endpointChain,
  endpointRules,
  type GuardEndpoint,
  parseEdgeSet,
  portEdgeValues,
} from './render-edges.js';

/** Commands that make one network's own objects as desired; its guests' elements are left to diffElements. */
export function changeEndpoint(t: string, observed: ObservedGuard, ep: GuardEndpoint): string[] {
  const e = ep.ifname;
  const out: string[] = [];
  for (const r of EDGE_REASONS) {
    if (!observed.counters.has(edgeCounter(e, r))) out.push(`add counter ${t} ${edgeCounter(e, r)}`);
  }
  for (const k of EDGE_SETS) {
    if (!observed.edgeSets.has(edgeSet(k, e))) out.push(edgeSetDeclaration(t, k, e));
  }
  const chains: [string, Map<string, string | undefined>, string[]][] = [
    [endpointChain(e), observed.endpointChains, endpointRules(ep)],
    [edgeChain(e), observed.edgeChains, edgeRules(ep)],
  ];
  for (const [chain, seen, rules] of chains) {
    const print = fingerprintOfRules(rules);
    if (!seen.has(e)) out.push(`add chain ${t} ${chain}`);
    else if (seen.get(e) !== print) out.push(`flush chain ${t} ${chain}`);
    if (seen.get(e) !== print) out.push(...rules.map((r) => `add rule ${t} ${chain} ${r}`));
  }
  const jump = observed.endpoints.get(e);
  if (jump !== endpointChain(e)) {
    if (jump !== undefined) out.push(`delete element ${t} ${ENDPOINT_MAP} { "${e}" }`);
    out.push(`add element ${t} ${ENDPOINT_MAP} { "${e}" : jump ${endpointChain(e)} }`);
  }
  return out;
}

/** Every network the table holds objects of, by endpoint ifname. */
export function observedEndpoints(observed: ObservedGuard): string[] {
  const owners = [...observed.counters.keys()]
    .filter((c) => (EDGE_REASONS as readonly string[]).includes(c.slice(c.indexOf('.') + 1)))
    .map((c) => c.slice(0, c.indexOf('.')));
  const sets = [...observed.edgeSets.keys()].map((s) => parseEdgeSet(s)?.endpoint as string);
  return [
    ...new Set([
      ...observed.endpoints.keys(),
      ...observed.endpointChains.keys(),
      ...observed.edgeChains.keys(),
      ...sets,
      ...owners,
    ]),
  ].sort();
}

/** Map element first, then the chains (whose rules name the sets), then sets and counters. */
export function removeEndpointCommands(t: string, observed: ObservedGuard, e: string): string[] {
  const out: string[] = [];
  if (observed.endpoints.has(e)) out.push(`delete element ${t} ${ENDPOINT_MAP} { "${e}" }`);
  if (observed.endpointChains.has(e)) out.push(`delete chain ${t} ${endpointChain(e)}`);
  if (observed.edgeChains.has(e)) out.push(`delete chain ${t} ${edgeChain(e)}`);
  for (const k of EDGE_SETS) {
    if (observed.edgeSets.has(edgeSet(k, e))) out.push(`delete set ${t} ${edgeSet(k, e)}`);
  }
  for (const r of EDGE_REASONS) {
    if (observed.counters.has(edgeCounter(e, r))) out.push(`delete counter ${t} ${edgeCounter(e, r)}`);
  }
  return out;
}

/**
 * Element adds, then deletes, for the edge sets of the desired networks.
 * With `only`, just that port's elements: the hosts/addrs elements keyed by
 * it, and the MACs and IPs those elements carry.
 */
export function diffElements(
  t: string,
  observed: ObservedGuard,
  want: GuardState,
  only: string | undefined,
): string[] {
  const desired = new Map<string, Map<string, string[]>>();
  for (const ep of want.endpoints) for (const k of EDGE_SETS) desired.set(edgeSet(k, ep.ifname), new Map());
  for (const port of want.ports) {
    const ep = endpointFor(port, want.endpoints);
    if (!ep || (only !== undefined && port.ifname !== only)) continue;
    const values = portEdgeValues(port);
    for (const k of EDGE_SETS) {
      for (const v of values[k]) desired.get(edgeSet(k, ep.ifname))?.set(elementText(v), v);
    }
  }
  const adds: string[] = [];
  const deletes: string[] = [];
  const names = new Set([...desired.keys(), ...observed.edgeSets.keys()]);
  for (const name of [...names].sort()) {
    const parsed = parseEdgeSet(name);
    const kept = want.endpoints.some((e) => e.ifname === parsed?.endpoint);
    // A network that is going away loses its sets whole; in one-port mode nothing is going away.
    if (!kept && only === undefined) continue;
    const seen = observed.edgeSets.get(name) ?? [];
    const have = new Set(seen.map(elementText));
    const scope = only === undefined ? seen : ownedBy(observed, name, only);
    const wanted = desired.get(name) ?? new Map<string, string[]>();
    const add = [...wanted.keys()].filter((x) => !have.has(x));
    const extra = scope.map(elementText).filter((x) => !wanted.has(x));
    if (add.length > 0) adds.push(`add element ${t} ${name} { ${add.join(', ')} }`);
    if (extra.length > 0) deletes.push(`delete element ${t} ${name} { ${[...new Set(extra)].join(', ')} }`);
  }
  return [...adds, ...deletes];
}

/** The elements of one set that belong to port `ifname` (for MACs and IPs: those its addrs elements carry). */
function ownedBy(observed: ObservedGuard, set: string, ifname: string): string[][] {
  const parsed = parseEdgeSet(set);
  const elems = observed.edgeSets.get(set) ?? [];
  if (!parsed) return [];
  if (parsed.kind === 'hosts' || parsed.kind === 'addrs') return elems.filter((v) => v[0] === ifname);
  const mine = (observed.edgeSets.get(edgeSet('addrs', parsed.endpoint)) ?? []).filter(
    (v) => v[0] === ifname,
  );
  const values = new Set(mine.map((v) => (parsed.kind === 'macs' ? v[1] : v[2])));
  values.delete('0.0.0.0');
  return elems.filter((v) => values.has(v[0] as string));
}
