// The reconcile core: desired state vs what the table holds -> one nft
// transaction, or nothing when they already agree. Only the ports that
// differ appear in it, so every other port keeps its rule handles.
import { BerthError } from '../../base/errors.js';
import type { Names } from '../names.js';
import type { ObservedGuard } from './observe.js';
import { changeEndpoint, diffElements, observedEndpoints, removeEndpointCommands } from './plan-edges.js';
import {
  addEdgeDispatch,
  counterName,
  DHCP_PATHS,
  DROP_REASONS,
  deleteEdgeDispatch,
  endpointFor,
  type GuardEndpoint,
  type GuardPort,
  type GuardState,
  PORT_MAP,
  portChain,
  portCommands,
  portFingerprint,
  portRules,
  renderGuard,
  replyElement,
  skeletonFingerprint,
  validateState,
} from './render.js';
import { edgeChain } from './render-edges.js';

export interface PlanOptions {
  /** Reconcile this one port only and leave every other port as observed (addPort/removePort). */
  only?: string;
}

/** The nft script that takes `observed` to `desired`, or undefined when there is nothing to do. */
export function planGuard(
  names: Names,
  observed: ObservedGuard | undefined,
  desired: GuardState,
  options: PlanOptions = {},
): string | undefined {
  const want = validateState(names, desired);
  const ports = options.only === undefined ? want.ports : want.ports.filter((p) => p.ifname === options.only);
  const t = `bridge ${names.guardTable()}`;
  if (!observed) {
    // Removing a port from a table that is not there is already done; do not create the table for it.
    if (options.only !== undefined && ports.length === 0) return undefined;
    return renderGuard(names, { ports, endpoints: want.endpoints });
  }
  if (observed.skeleton !== skeletonFingerprint(names)) {
    if (options.only !== undefined) {
      throw new BerthError(
        'BERTH_ERR_CONFLICT',
        `could not change port "${options.only}" in guard table "${names.guardTable()}": the table was written by another berth version; reconcile the whole guard first`,
      );
    }
    // Rebuilt whole in the same transaction, so there is no instant without a guard.
    return `delete table ${t}\n${renderGuard(names, want)}`;
  }

  // Networks first (a port's elements need its network's chains and sets), then ports, then elements;
  // removals last, elements before the chains and sets they name.
  const lines: string[] = [];
  const scoped =
    options.only === undefined ? want.endpoints : ports.map((p) => endpointFor(p, want.endpoints));
  for (const ep of new Set(scoped)) if (ep) lines.push(...changeEndpoint(t, observed, ep));
  for (const port of ports)
    lines.push(...changePort(names, observed, port, endpointFor(port, want.endpoints)));
  lines.push(...diffElements(t, observed, want, options.only));

  const keep = new Set(want.ports.map((p) => p.ifname));
  for (const ifname of observedPorts(observed)) {
    if (keep.has(ifname) || (options.only !== undefined && ifname !== options.only)) continue;
    lines.push(...removePortCommands(names, observed, ifname));
  }
  if (options.only === undefined) {
    const endpoints = new Set(want.endpoints.map((e) => e.ifname));
    for (const e of observedEndpoints(observed))
      if (!endpoints.has(e)) lines.push(...removeEndpointCommands(t, observed, e));
  }
  return lines.length === 0 ? undefined : `${lines.join('\n')}\n`;
}

function observedPorts(observed: ObservedGuard): string[] {
  const owners = [...observed.counters.keys()]
    .filter((c) => (DROP_REASONS as readonly string[]).includes(c.slice(c.indexOf('.') + 1)))
    .map((c) => c.slice(0, c.indexOf('.')));
  const all = [
    ...observed.chains.keys(),
    ...observed.dispatch.keys(),
    ...observed.edges.keys(),
    ...observed.paths.map((p) => p[0]),
    ...observed.replies.keys(),
    ...owners,
  ];
  return [...new Set(all)].sort();
}

function changePort(
  names: Names,
  observed: ObservedGuard,
  port: GuardPort,
  ep: GuardEndpoint | undefined,
): string[] {
  const t = `bridge ${names.guardTable()}`;
  const chain = portChain(port.ifname);
  const endpoint = ep?.ifname;
  if (
    !observed.chains.has(port.ifname) &&
    !observed.dispatch.has(port.ifname) &&
    !observed.edges.has(port.ifname)
  ) {
    const fresh = portCommands(names, port, ep);
    // Leftover counters of an earlier port with this name keep their numbers; re-adding them would fail.
    return fresh.filter(
      (c) => !c.startsWith('add counter') || !observed.counters.has(c.split(' ').at(-1) as string),
    );
  }
  const out: string[] = [];
  for (const reason of DROP_REASONS) {
    const name = counterName(port.ifname, reason);
    if (!observed.counters.has(name)) out.push(`add counter ${t} ${name}`);
  }
  const print = observed.chains.get(port.ifname);
  if (!observed.chains.has(port.ifname)) out.push(`add chain ${t} ${chain}`);
  else if (print !== portFingerprint(port)) out.push(`flush chain ${t} ${chain}`);
  if (print !== portFingerprint(port)) out.push(...portRules(port).map((r) => `add rule ${t} ${chain} ${r}`));

  const jump = observed.dispatch.get(port.ifname);
  if (jump !== chain) {
    if (jump !== undefined) out.push(`delete element ${t} ${PORT_MAP} { "${port.ifname}" }`);
    out.push(`add element ${t} ${PORT_MAP} { "${port.ifname}" : jump ${chain} }`);
  }
  const paths = observed.paths.filter(([p]) => p === port.ifname);
  for (const [p, e] of paths) {
    if (e !== endpoint) out.push(`delete element ${t} ${DHCP_PATHS} { "${p}" . "${e}" }`);
  }
  if (endpoint && !paths.some(([, e]) => e === endpoint)) {
    out.push(`add element ${t} ${DHCP_PATHS} { "${port.ifname}" . "${endpoint}" }`);
  }
  const reply = observed.replies.get(port.ifname);
  if (reply !== port.mac) {
    if (reply !== undefined) out.push(replyElement(t, port.ifname, reply, 'delete'));
    out.push(replyElement(t, port.ifname, port.mac, 'add'));
  }
  const edge = observed.edges.get(port.ifname);
  if (edge !== (endpoint ? edgeChain(endpoint) : undefined)) {
    if (edge !== undefined) out.push(deleteEdgeDispatch(t, port.ifname));
    if (endpoint) out.push(addEdgeDispatch(t, port.ifname, endpoint));
  }
  return out;
}

/** Elements first, then chain (the jump holds a reference to it), then the counters its rules used; diffElements drops its edge set elements. */
function removePortCommands(names: Names, observed: ObservedGuard, ifname: string): string[] {
  const t = `bridge ${names.guardTable()}`;
  const out: string[] = [];
  if (observed.dispatch.has(ifname)) out.push(`delete element ${t} ${PORT_MAP} { "${ifname}" }`);
  for (const [p, e] of observed.paths) {
    if (p === ifname) out.push(`delete element ${t} ${DHCP_PATHS} { "${p}" . "${e}" }`);
  }
  const reply = observed.replies.get(ifname);
  if (reply !== undefined) out.push(replyElement(t, ifname, reply, 'delete'));
  if (observed.edges.has(ifname)) out.push(deleteEdgeDispatch(t, ifname));
  if (observed.chains.has(ifname)) out.push(`delete chain ${t} ${portChain(ifname)}`);
  for (const name of observed.counters.keys()) {
    if (name.startsWith(`${ifname}.`)) out.push(`delete counter ${t} ${name}`);
  }
  return out;
}
