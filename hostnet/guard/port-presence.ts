// One port's footprint in the guard table, read from the three element sets
// and the chain names: a few small listings instead of the whole table, whose
// listing grows with every port (0.5 s at 350 ports, most of it counters).
// addPort and removePort use it for the common case, a port wholly absent or
// wholly present; anything in between goes through the full reconcile.

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
  endpointFor,
  type GuardEndpoint,
  type GuardPort,
  PORT_MAP,
  portChain,
  portRules,
  replyElement,
} from './render.js';

export interface PortPresence {
  chain: boolean;
  /** The chain the dispatch element jumps to. */
  dispatch: string | undefined;
  /** Endpoints the port's DHCP is steered to. */
  paths: string[];
  /** The MAC its DHCP replies may carry. */
  reply: string | undefined;
}

export async function readPortPresence(
  nft: NftApplier,
  table: string,
  ifname: string,
): Promise<PortPresence> {
  const [chains, map, paths, replies] = await Promise.all([
    nft.list(['chains', 'bridge']),
    nft.list(['map', 'bridge', table, PORT_MAP]),
    nft.list(['set', 'bridge', table, DHCP_PATHS]),
    nft.list(['set', 'bridge', table, DHCP_REPLIES]),
  ]);
  const ownChain = `${CHAIN_PREFIX}${ifname}`;
  const chain = listed(chains).some((i) => {
    const c = (i as { chain?: { table?: string; name?: string } }).chain;
    return c?.table === table && c.name === ownChain;
  });
  const seen = observeGuard({ nftables: [...listed(map), ...listed(paths), ...listed(replies)] });
  return {
    chain,
    dispatch: seen.dispatch.get(ifname),
    paths: seen.paths.filter(([p]) => p === ifname).map(([, e]) => e),
    reply: seen.replies.get(ifname),
  };
}

function listed(listing: unknown): unknown[] {
  const items = (listing as { nftables?: unknown } | undefined)?.nftables;
  return Array.isArray(items) ? items : [];
}

function absent(p: PortPresence): boolean {
  return !p.chain && p.dispatch === undefined && p.paths.length === 0 && p.reply === undefined;
}

/** The script that adds a port found wholly absent; undefined when it is not. */
export function freshPortScript(
  names: Names,
  presence: PortPresence,
  port: GuardPort,
  endpoint: string | undefined,
): string | undefined {
  return absent(presence) ? `${addPortCommands(names, port, endpoint).join('\n')}\n` : undefined;
}

/**
 * The script that removes a port found wholly present (chain, dispatch, reply
 * and every counter its rules name); undefined when it is partly there.
 */
export function removalScript(names: Names, presence: PortPresence, ifname: string): string | undefined {
  if (!presence.chain || presence.dispatch !== portChain(ifname) || presence.reply === undefined)
    return undefined;
  const t = `bridge ${names.guardTable()}`;
  return `${[
    `delete element ${t} ${PORT_MAP} { "${ifname}" }`,
    ...presence.paths.map((e) => `delete element ${t} ${DHCP_PATHS} { "${ifname}" . "${e}" }`),
    replyElement(t, ifname, presence.reply, 'delete'),
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
    const chain = portChain(port.ifname);
    const endpoint = endpointFor(port, endpoints);
    lines.push(
      ...DROP_REASONS.map((r) => `add counter ${t} ${counterName(port.ifname, r)}`),
      `add chain ${t} ${chain}`,
      `flush chain ${t} ${chain}`,
      ...portRules(port).map((r) => `add rule ${t} ${chain} ${r}`),
      `add element ${t} ${PORT_MAP} { "${port.ifname}" : jump ${chain} }`,
      ...(endpoint ? [`add element ${t} ${DHCP_PATHS} { "${port.ifname}" . "${endpoint}" }`] : []),
      replyElement(t, port.ifname, port.mac, 'add'),
    );
  }
  return `${lines.join('\n')}\n`;
}
