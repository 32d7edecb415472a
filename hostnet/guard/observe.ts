// Reads what the guard table holds from `nft -j list table` output: enough
// to diff against the desired state without re-parsing nft's reprint of rules.
import { commentAfter, type NftJson, nftElements, nftItems, nftUnwrap } from '../nft-json.js';
import { FINGERPRINT_PREFIX } from './fingerprint.js';
import { CHAIN_PREFIX, DHCP_PATHS, DHCP_REPLIES, PORT_MAP } from './render.js';
import {
  EDGE_CHAIN_PREFIX,
  EDGE_MAP,
  ENDPOINT_CHAIN_PREFIX,
  ENDPOINT_MAP,
  parseEdgeSet,
} from './render-edges.js';

export interface ObservedGuard {
  /** Fingerprint on the dispatch rule; undefined when it is missing or foreign. */
  skeleton: string | undefined;
  /** Port ifname -> fingerprint on its chain's last rule (undefined if none). */
  chains: Map<string, string | undefined>;
  /** Port ifname -> the chain its dispatch element jumps to. */
  dispatch: Map<string, string>;
  /** [port, endpoint] pairs of the DHCP steering set. */
  paths: [string, string][];
  /** port -> MAC (aa:bb:..) its DHCP replies may carry as chaddr. */
  replies: Map<string, string>;
  counters: Map<string, { packets: number; bytes: number }>;
  /** Endpoint ifname -> the chain its `endpoints` element jumps to. */
  endpoints: Map<string, string>;
  /** Guest port -> the `edge_` chain its `edges` element jumps to. */
  edges: Map<string, string>;
  /** Endpoint ifname -> fingerprint on its `ep_` / `edge_` chain (undefined if none). */
  endpointChains: Map<string, string | undefined>;
  edgeChains: Map<string, string | undefined>;
  /** Edge set name (`addrs_<ep>`…) -> its elements, each as the list of its values. */
  edgeSets: Map<string, string[][]>;
}

type Json = NftJson;

function fingerprintOf(comment: unknown): string | undefined {
  return commentAfter(comment, FINGERPRINT_PREFIX);
}

export function observeGuard(listing: unknown): ObservedGuard {
  const seen: ObservedGuard = {
    skeleton: undefined,
    chains: new Map(),
    dispatch: new Map(),
    paths: [],
    replies: new Map(),
    counters: new Map(),
    endpoints: new Map(),
    edges: new Map(),
    endpointChains: new Map(),
    edgeChains: new Map(),
    edgeSets: new Map(),
  };
  for (const item of nftItems(listing)) {
    if (item.counter) {
      const c = item.counter as Json;
      seen.counters.set(String(c.name), { packets: Number(c.packets ?? 0), bytes: Number(c.bytes ?? 0) });
    } else if (item.map) {
      const name = (item.map as Json).name;
      const into =
        name === PORT_MAP
          ? seen.dispatch
          : name === ENDPOINT_MAP
            ? seen.endpoints
            : name === EDGE_MAP
              ? seen.edges
              : undefined;
      for (const el of into ? nftElements(item.map as Json) : []) {
        const [key, verdict] = el as [unknown, { jump?: { target?: string } }];
        const target = verdict?.jump?.target;
        if (typeof nftUnwrap(key) === 'string' && target) into?.set(nftUnwrap(key) as string, target);
      }
    } else if (item.set && parseEdgeSet(String((item.set as Json).name))) {
      const values = nftElements(item.set as Json).map((el) => {
        const v = nftUnwrap(el) as { concat?: unknown[] } | string;
        return typeof v === 'string' ? [v] : (v?.concat ?? []).map(String);
      });
      seen.edgeSets.set(String((item.set as Json).name), values);
    } else if (item.set && (item.set as Json).name === DHCP_PATHS) {
      for (const el of nftElements(item.set as Json)) {
        const pair = (nftUnwrap(el) as { concat?: unknown[] })?.concat;
        if (pair?.length === 2) seen.paths.push([String(pair[0]), String(pair[1])]);
      }
    } else if (item.set && (item.set as Json).name === DHCP_REPLIES) {
      for (const el of nftElements(item.set as Json)) {
        const pair = (nftUnwrap(el) as { concat?: unknown[] })?.concat;
        if (pair?.length === 2 && typeof pair[1] === 'number') {
          const hex = pair[1].toString(16).padStart(12, '0');
          seen.replies.set(String(pair[0]), (hex.match(/../g) as string[]).join(':'));
        }
      }
    } else if (item.chain) {
      const name = String((item.chain as Json).name);
      const owned = ownedChain(seen, name);
      if (owned) owned.map.set(owned.key, undefined);
    } else if (item.rule) {
      const rule = item.rule as Json;
      const chain = String(rule.chain);
      const print = fingerprintOf(rule.comment);
      const owned = ownedChain(seen, chain);
      if (chain === 'prerouting' && print) seen.skeleton = print;
      // The fingerprint rides on the last rule, so a chain cut short by hand reads as changed.
      else if (owned) owned.map.set(owned.key, print);
    }
  }
  return seen;
}

/** Which map of fingerprints a chain name belongs in, and under which port or endpoint. */
function ownedChain(
  seen: ObservedGuard,
  chain: string,
): { map: Map<string, string | undefined>; key: string } | undefined {
  for (const [prefix, map] of [
    [CHAIN_PREFIX, seen.chains],
    [ENDPOINT_CHAIN_PREFIX, seen.endpointChains],
    [EDGE_CHAIN_PREFIX, seen.edgeChains],
  ] as const) {
    if (chain.startsWith(prefix)) return { map, key: chain.slice(prefix.length) };
  }
  return undefined;
}

/** Every handle in a listing, keyed by object, so tests can prove a no-op reconcile changed nothing. */
export function handlesOf(listing: unknown): Map<string, number> {
  const handles = new Map<string, number>();
  const position = new Map<string, number>();
  for (const item of nftItems(listing)) {
    for (const [kind, value] of Object.entries(item)) {
      const v = value as Json;
      if (typeof v?.handle !== 'number') continue;
      const index = kind === 'rule' ? (position.get(String(v.chain)) ?? 0) : 0;
      if (kind === 'rule') position.set(String(v.chain), index + 1);
      const where = kind === 'rule' ? `${v.chain}[${index}]` : String(v.name);
      handles.set(`${kind} ${where}`, v.handle);
    }
  }
  return handles;
}
