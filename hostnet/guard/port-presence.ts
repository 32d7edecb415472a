// One port's footprint in the guard table, read from the element sets and
// maps it has elements in and the chain names: a few small listings instead
// of the whole table, whose listing grows with every port (0.5 s at 350
// ports, most of it counters). addPort and removePort use it for the common
// case, a port wholly absent or wholly present; anything in between goes
// through the full reconcile, and so does a script nft refuses (an element
// the listing did not show, say), since one transaction applies all or nothing.

import type { Names } from '../names.js';
import type { NftApplier } from './nft.js';
import { observeGuard } from './observe.js';
import {
  addPortCommands,
  CHAIN_PREFIX,
  counterName,
  DHCP_PATHS,
  DHCP_REPLIES,
  DROP_REASONS,
  deleteEdgeDispatch,
  endpointFor,
  type GuardEndpoint,
  type GuardPort,
  PORT_MAP,
  portChain,
  replyElement,
} from './render.js';
import { EDGE_CHAIN_PREFIX, EDGE_MAP, edgeSet, portEdgeCommands } from './render-edges.js';

export interface PortPresence {
  chain: boolean;
  /** The chain the dispatch element jumps to. */
  dispatch: string | undefined;
  /** Endpoints the port's DHCP is steered to. */
  paths: string[];
  /** The MAC its DHCP replies may carry. */
  reply: string | undefined;
  /** The endpoint whose edge chain its `edges` element jumps to (read only when asked for). */
  edge: string | undefined;
  /** Its (port . MAC . IP) elements in that network's addrs set (read only when asked for). */
  addrs: string[][];
}

/**
 * Reads the port's footprint. Adding needs only the chain and the elements
 * keyed by the port in the table-wide maps and sets: the edge elements a new
 * port adds are idempotent, and an edges element left with another target
 * makes nft refuse the script. Removing a port nobody described reads its
 * `edges` element and its network's addrs set too (`edges: true`), to learn
 * the network, MAC and IP its edge elements carry.
 */
export async function readPortPresence(
  nft: NftApplier,
  table: string,
  ifname: string,
  options: { edges?: boolean } = {},
): Promise<PortPresence> {
  const set = (name: string) => nft.list(['set', 'bridge', table, name]);
  const [chains, map, edges, paths, replies] = await Promise.all([
    nft.list(['chains', 'bridge']),
    nft.list(['map', 'bridge', table, PORT_MAP]),
    options.edges ? nft.list(['map', 'bridge', table, EDGE_MAP]) : undefined,
    set(DHCP_PATHS),
    set(DHCP_REPLIES),
  ]);
  const ownChain = `${CHAIN_PREFIX}${ifname}`;
  const chain = listed(chains).some((i) => {
    const c = (i as { chain?: { table?: string; name?: string } }).chain;
    return c?.table === table && c.name === ownChain;
  });
  const seen = observeGuard({
    nftables: [...listed(map), ...listed(edges), ...listed(paths), ...listed(replies)],
  });
  const edge = seen.edges.get(ifname)?.slice(EDGE_CHAIN_PREFIX.length);
  const addrs = edge
    ? observeGuard(await set(edgeSet('addrs', edge))).edgeSets.get(edgeSet('addrs', edge))
    : [];
  return {
    chain,
    dispatch: seen.dispatch.get(ifname),
    paths: seen.paths.filter(([p]) => p === ifname).map(([, e]) => e),
    reply: seen.replies.get(ifname),
    edge,
    addrs: (addrs ?? []).filter((v) => v[0] === ifname),
  };
}

function listed(listing: unknown): unknown[] {
  const items = (listing as { nftables?: unknown } | undefined)?.nftables;
  return Array.isArray(items) ? items : [];
}

function absent(p: PortPresence): boolean {
  return (
    !p.chain &&
    p.dispatch === undefined &&
    p.paths.length === 0 &&
    p.reply === undefined &&
    p.edge === undefined &&
    p.addrs.length === 0
  );
}

/** The script that adds a port found wholly absent; undefined when it is not. */
export function freshPortScript(
  names: Names,
  presence: PortPresence,
  port: GuardPort,
  endpoint: GuardEndpoint | undefined,
): string | undefined {
  return absent(presence) ? `${addPortCommands(names, port, endpoint).join('\n')}\n` : undefined;
}

/** The MAC and IP the port's addrs elements carry, when they are exactly the two it owns. */
function edgeAddress(p: PortPresence): PortEdge | undefined {
  const ip = p.addrs.find((v) => v[2] !== '0.0.0.0');
  const mac = ip?.[1];
  const whole =
    p.addrs.length === 2 && p.addrs.every((v) => v[1] === mac) && p.addrs.some((v) => v[2] === '0.0.0.0');
  return whole && p.edge && mac === p.reply
    ? { endpoint: p.edge, mac: mac as string, ipv4: ip?.[2] as string }
    : undefined;
}

/** Where a port's edge elements are: its network's endpoint, and the MAC and IP they carry. */
export interface PortEdge {
  endpoint: string;
  mac: string;
  ipv4: string;
}

/**
 * The script that removes a port found wholly present (chain, dispatch, reply,
 * its edge elements and every counter its rules name); undefined when it is
 * partly there. `known` is what the caller says the port's edge elements are
 * (null: it has none); without it they come from the presence read with
 * `edges: true`. Either way nft checks them: deleting an element that is not
 * there refuses the whole script.
 */
export function removalScript(
  names: Names,
  presence: PortPresence,
  ifname: string,
  known?: PortEdge | null,
): string | undefined {
  if (!presence.chain || presence.dispatch !== portChain(ifname) || presence.reply === undefined)
    return undefined;
  const edge = known === undefined ? edgeAddress(presence) : (known ?? undefined);
  if (known === undefined && !edge && (presence.edge !== undefined || presence.addrs.length > 0))
    return undefined;
  const t = `bridge ${names.guardTable()}`;
  const edgeCommands = edge
    ? [deleteEdgeDispatch(t, ifname), ...portEdgeCommands(t, { ifname, ...edge }, edge.endpoint, 'delete')]
    : [];
  return `${[
    `delete element ${t} ${PORT_MAP} { "${ifname}" }`,
    ...presence.paths.map((e) => `delete element ${t} ${DHCP_PATHS} { "${ifname}" . "${e}" }`),
    replyElement(t, ifname, presence.reply, 'delete'),
    ...edgeCommands,
    `delete chain ${t} ${portChain(ifname)}`,
    ...DROP_REASONS.map((r) => `delete counter ${t} ${counterName(ifname, r)}`),
  ].join('\n')}\n`;
}

/**
 * Rewrites the ports' chains and re-adds their elements and counters whatever
 * is left of them: `add` of an existing counter, chain or identical element
 * is a no-op in nft, and the flush empties the chain before its rules go in.
 */
export function repairScript(
  names: Names,
  ports: readonly GuardPort[],
  endpoints: readonly GuardEndpoint[],
): string {
  const t = `bridge ${names.guardTable()}`;
  const lines: string[] = [];
  for (const port of ports) {
    // Every object the port owns, with its chain emptied first: `add` of an
    // element or counter that is still there is a no-op, rules are not.
    const chain = `add chain ${t} ${portChain(port.ifname)}`;
    for (const command of addPortCommands(names, port, endpointFor(port, endpoints))) {
      lines.push(command);
      if (command === chain) lines.push(`flush chain ${t} ${portChain(port.ifname)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
