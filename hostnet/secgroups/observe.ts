// Reads what the `<prefix>_sg` tables hold from `nft -j list table` output:
// enough to diff against the desired state by fingerprints and elements,
// never by re-parsing nft's reprint of rules.

import type { Names } from '../names.js';
import { commentAfter, type NftJson, nftElements, nftItems, nftUnwrap } from '../nft-json.js';
import {
  BRIDGE_SET,
  baseChains,
  CHAIN_PREFIX,
  FINGERPRINT_PREFIX,
  GUARDED_SET,
  PICKUP_COUNTER,
  PORT_MAP,
  PVID_ZONE_MAP,
  portChain,
  portCounters,
  portRules,
  fingerprintOf as renderedFingerprint,
  skeletonFingerprint,
  TAG_ZONE_MAP,
  ZONE_MAP,
  zoneKey,
  zoneMapsOf,
  zoneOf,
} from './render.js';
import { memberElement, type SgMode, type SgPort, type SgSet } from './state.js';

export interface ObservedSg {
  /** `<family> <chain>` of each base chain -> the fingerprint on its last rule ('' if none). */
  baseChains: Map<string, string>;
  /** Port ifname -> fingerprint on its chain's last rule ('' if none). */
  chains: Map<string, string>;
  /** Port ifname -> the chain its `ports` element jumps to. */
  dispatch: Map<string, string>;
  /** Source set name -> its elements, as memberElement writes them. */
  sets: Map<string, Set<string>>;
  counters: Map<string, { packets: number; bytes: number }>;
  /** Bridge -> zone, from the zone map (whichever table holds it). */
  zones: Map<string, number>;
  /** `bridge/vlan` -> zone, from the tag and the pvid zone maps (bridge-ct, VLAN-filtering bridges). */
  tagZones: Map<string, number>;
  pvidZones: Map<string, number>;
  /** The bridge set (br-netfilter mode). */
  bridges: Set<string>;
  /** The guarded-port set. */
  guarded: Set<string>;
}

type Json = NftJson;

function fingerprintOf(comment: unknown): string {
  return commentAfter(comment, FINGERPRINT_PREFIX) ?? '';
}

/** A map element's key: a string, or a `bridge . vlan` concatenation as `bridge/vlan`. */
function keyOf(raw: unknown): string | undefined {
  if (typeof raw === 'string') return raw;
  const parts = (raw as { concat?: unknown })?.concat;
  if (Array.isArray(parts) && typeof parts[0] === 'string' && typeof parts[1] === 'number')
    return zoneKey(parts[0], parts[1]);
  return undefined;
}

/** A source set's element as memberElement writes it, so the plan diffs text against text. */
function memberKey(raw: unknown): string {
  const parts = (raw as { concat?: unknown })?.concat;
  if (!Array.isArray(parts) || parts.length !== 3) return String(raw);
  return memberElement({ ip: String(parts[0]), mac: String(parts[1]), port: String(parts[2]) });
}

/** The observed view of one zone map, by the map's name. */
export function zoneMapOf(seen: ObservedSg, map: string): Map<string, number> | undefined {
  if (map === ZONE_MAP) return seen.zones;
  if (map === TAG_ZONE_MAP) return seen.tagZones;
  if (map === PVID_ZONE_MAP) return seen.pvidZones;
  return undefined;
}

export function emptyObserved(): ObservedSg {
  return {
    baseChains: new Map(),
    chains: new Map(),
    dispatch: new Map(),
    sets: new Map(),
    counters: new Map(),
    zones: new Map(),
    tagZones: new Map(),
    pvidZones: new Map(),
    bridges: new Set(),
    guarded: new Set(),
  };
}

/** Folds one table's listing (either family) into `seen`. */
export function observeSg(listing: unknown, seen: ObservedSg = emptyObserved()): ObservedSg {
  for (const item of nftItems(listing)) {
    if (item.counter) {
      const c = item.counter as Json;
      seen.counters.set(String(c.name), { packets: Number(c.packets ?? 0), bytes: Number(c.bytes ?? 0) });
    } else if (item.map) {
      const map = item.map as Json;
      for (const e of nftElements(map)) {
        const [raw, value] = Array.isArray(e) ? e : [undefined, undefined];
        const key = keyOf(raw);
        if (key === undefined) continue;
        if (map.name === PORT_MAP) {
          const target = (value as { jump?: { target?: string } })?.jump?.target;
          if (target) seen.dispatch.set(key, target);
        } else if (typeof value === 'number') zoneMapOf(seen, String(map.name))?.set(key, value);
      }
    } else if (item.set) {
      const set = item.set as Json;
      const members = nftElements(set).map((e) => nftUnwrap(e));
      if (set.name === BRIDGE_SET) for (const m of members) seen.bridges.add(String(m));
      else if (set.name === GUARDED_SET) for (const m of members) seen.guarded.add(String(m));
      else seen.sets.set(String(set.name), new Set(members.map(memberKey)));
    } else if (item.chain) {
      const chain = item.chain as Json;
      const name = String(chain.name);
      if (name.startsWith(CHAIN_PREFIX)) seen.chains.set(name.slice(CHAIN_PREFIX.length), '');
      else if (chain.hook !== undefined) seen.baseChains.set(`${chain.family} ${name}`, '');
    } else if (item.rule) {
      const rule = item.rule as Json;
      const name = String(rule.chain);
      // Rules list in chain order: the last one seen is the chain's last.
      if (name.startsWith(CHAIN_PREFIX))
        seen.chains.set(name.slice(CHAIN_PREFIX.length), fingerprintOf(rule.comment));
      else if (seen.baseChains.has(`${rule.family} ${name}`))
        seen.baseChains.set(`${rule.family} ${name}`, fingerprintOf(rule.comment));
    }
  }
  return seen;
}

/**
 * What the tables hold right after these ports and sets were applied: the
 * driver plans the next apply against it instead of reading 1000 ports'
 * tables back (most of an apply's time at that scale). Counter values are
 * not modelled; the plan only needs names.
 */
export function modelOf(names: Names, mode: SgMode, ports: SgPort[], sets: SgSet[]): ObservedSg {
  const o = emptyObserved();
  for (const c of baseChains(mode)) o.baseChains.set(c, skeletonFingerprint(names, mode));
  o.counters.set(PICKUP_COUNTER, { packets: 0, bytes: 0 });
  for (const p of ports) {
    o.chains.set(p.ifname, renderedFingerprint(portRules(names, mode, p)));
    o.dispatch.set(p.ifname, portChain(p.ifname));
    o.guarded.add(p.ifname);
    for (const c of portCounters(p)) o.counters.set(c, { packets: 0, bytes: 0 });
    const key = zoneKey(p.bridge, p.vlan);
    for (const map of zoneMapsOf(key)) zoneMapOf(o, map)?.set(key, zoneOf(p.bridge, p.vlan));
    if (mode === 'br-netfilter') o.bridges.add(p.bridge);
  }
  for (const s of sets) o.sets.set(s.name, new Set(s.members.map(memberElement)));
  return o;
}
