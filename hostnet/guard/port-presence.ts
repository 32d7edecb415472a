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
  type GuardPort,
  PORT_MAP,
  portChain,
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
