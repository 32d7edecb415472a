// Renders the anti-spoofing guard: one bridge-family nft table that makes the
// observed (source MAC, bridge port) pair trustworthy. Pure text, no I/O.
//
// Shape of the table:
// - prerouting (before the bridge learns the FDB, so a spoofed MAC never
//   lands in it) dispatches on iifname through the `ports` verdict map to one
//   chain per port; owned guest-port names missing from the map are dropped.
// - forward steers guest DHCP client frames (udp dport 67) to the network's
//   endpoint port only: the `dhcp_paths` set holds (guest port . endpoint).
//   Broadcast floods call the forward hook once per output port, so every
//   copy except the endpoint's is dropped and a storm costs O(N) frames.
//   The way back too: a DHCP reply (udp 67 -> 68, broadcast because the
//   client has no address yet) leaves a guest port only when its chaddr is
//   that port's MAC (`dhcp_replies` holds port . MAC), so guests neither pay
//   for each other's replies nor see each other's addresses and hostnames.
// - input drops every frame a guest port sends to the host itself. The host
//   keeps no address on tenant bridges, yet Linux delivers an IP packet for
//   any local address that arrives on any interface (the weak host model), so
//   a guest naming the bridge's MAC, or broadcast, as its next hop could reach
//   the host's own services. Only unicast to the host is counted: honest
//   guests' broadcasts land here too.
// - forward also classes every port (render-edges.ts): frames toward or from
//   an endpoint go to its network's `ep_` chain, frames from uplink or foreign
//   ports toward a guest go to its network's `edge_` chain. Each dispatch is
//   followed by a drop for owned names the maps do not hold (fail closed).
// - every drop counts in a named counter, then logs through its reason's
//   rate-limited log chain (reasons.ts).
// Rules match interface names, so they exist before the tap or veth does.
// Each port owns a chain, its map/set elements and its named counters, and
// each network its two chains, four sets and counters, so adding or removing
// a port never touches another port's rule handles.
import type { Names } from '../names.js';
import { fingerprintOfRules, withFingerprint } from './fingerprint.js';
import { canonicalIPv6, ipv6Hex, linkLocalFromMac } from './ipv6.js';
import { DROP_REASONS, type DropReason, dropTo, logCommands, TABLE_COUNTERS } from './reasons.js';
import {
  addEndpointCommands,
  EDGE_MAP,
  ENDPOINT_MAP,
  edgeChain,
  type GuardEndpoint,
  portEdgeCommands,
} from './render-edges.js';
import type { GuardPort, GuardState } from './state.js';
import { validateState } from './validate.js';

export { FINGERPRINT_PREFIX, fingerprint } from './fingerprint.js';
export {
  DROP_REASONS,
  type DropReason,
  EDGE_REASONS,
  type EdgeReason,
  GUARD_REASONS,
  type GuardReason,
  LOG_PREFIX,
  TABLE_COUNTERS,
} from './reasons.js';
export type { GuardEndpoint } from './render-edges.js';
export type { GuardPort, GuardState } from './state.js';
export { validateState } from './validate.js';

export const PORT_MAP = 'ports';
export const DHCP_PATHS = 'dhcp_paths';
export const DHCP_REPLIES = 'dhcp_replies';
export const CHAIN_PREFIX = 'port_';

const UDP_HEADER_BYTES = 8;
const BOOTP_CHADDR_OFFSET = 28;
const ICMPV6_ND_TARGET_OFFSET = 8;

/** Where a BOOTP chaddr's first 6 bytes sit, as nft's @th,<offset>,<length> in bits. */
export function chaddrMatch(): { offset: number; length: number } {
  return { offset: (UDP_HEADER_BYTES + BOOTP_CHADDR_OFFSET) * 8, length: 48 };
}

export function counterName(ifname: string, reason: DropReason): string {
  return `${ifname}.${reason}`;
}

export function portChain(ifname: string): string {
  return `${CHAIN_PREFIX}${ifname}`;
}

/** The rule bodies of one port's chain; the last one carries the fingerprint of all of them. */
export function portRules(port: GuardPort): string[] {
  const { ifname, mac, ipv4 } = port;
  const drop = (reason: DropReason) => dropTo(counterName(ifname, reason), reason);
  const ch = chaddrMatch();
  const ownV6 = [linkLocalFromMac(mac), ...(port.ipv6 ?? []).map((a) => canonicalIPv6(a) as string)];
  const v6 = [...new Set(ownV6)].sort();
  const v6hex = v6.map(ipv6Hex).join(', ');
  const target = `@th,${ICMPV6_ND_TARGET_OFFSET * 8},128`;
  return withFingerprint([
    `ether saddr != ${mac} ${drop('mac-spoof')}`,
    // Sender 0.0.0.0 is an RFC 5227 probe: receivers learn nothing from it, and guests need it before DHCP binds.
    `ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether ${mac} arp saddr ip { 0.0.0.0, ${ipv4} } accept`,
    `ether type arp ${drop('arp-spoof')}`,
    `ether type ip ip saddr != { 0.0.0.0, ${ipv4} } ${drop('ip-spoof')}`,
    `ether type ip udp sport 67 ${drop('dhcp-server')}`,
    // Positive match: a frame too short to hold chaddr, or a fragment that could hide it, is not accepted here.
    `ether type ip udp sport 68 udp dport 67 ip frag-off & 0x3fff == 0 @th,${ch.offset},${ch.length} 0x${mac.replaceAll(':', '')} accept`,
    `ether type ip udp dport 67 ${drop('dhcp-chaddr')}`,
    `ether type ip ip saddr ${ipv4} accept`,
    `ether type ip ${drop('ip-spoof')}`,
    `ether type ip6 icmpv6 type { nd-router-advert, nd-redirect } ${drop('ipv6-ra')}`,
    `ether type ip6 udp sport 547 ${drop('dhcp-server')}`,
    `ether type ip6 icmpv6 type nd-neighbor-advert ${target} != { ${v6hex} } ${drop('ipv6-spoof')}`,
    `ether type ip6 ip6 saddr { ${v6.join(', ')} } accept`,
    // DAD: probes from :: may only ask about the port's own addresses; MLD reports from :: are part of it (RFC 3590).
    `ether type ip6 ip6 saddr :: icmpv6 type nd-neighbor-solicit ${target} { ${v6hex} } accept`,
    'ether type ip6 ip6 saddr :: icmpv6 type { mld-listener-report, mld2-listener-report } accept',
    `ether type ip6 ${drop('ipv6-spoof')}`,
    drop('ethertype'),
  ]);
}

export function portFingerprint(port: GuardPort): string {
  return fingerprintOfRules(portRules(port));
}

/** The table, its base chains, maps, sets, log chains and table-wide counters; the dispatch rule carries their fingerprint. */
export function skeletonCommands(names: Names): string[] {
  const t = `bridge ${names.guardTable()}`;
  const guest = `"${names.prefix}p*"`;
  const endpoint = `"${names.prefix}e*"`;
  const outside = `oifname ${guest} iifname != ${guest} iifname != ${endpoint}`;
  const log = logCommands(t, names.logGroup());
  const rules = [
    `add rule ${t} prerouting iifname ${guest} ${dropTo('unguarded', 'unguarded')}`,
    `add rule ${t} forward iifname ${endpoint} oifname != ${guest} iifname vmap @${ENDPOINT_MAP}`,
    `add rule ${t} forward iifname ${endpoint} oifname != ${guest} ${dropTo('endpoint-egress', 'endpoint-egress')}`,
    `add rule ${t} forward oifname ${endpoint} oifname vmap @${ENDPOINT_MAP}`,
    `add rule ${t} forward oifname ${endpoint} ${dropTo('edge-to-endpoint', 'edge-to-endpoint')}`,
    `add rule ${t} forward ${outside} oifname vmap @${EDGE_MAP}`,
    `add rule ${t} forward ${outside} ${dropTo('edge-unmapped', 'edge-unmapped')}`,
    `add rule ${t} forward iifname ${guest} udp dport 67 iifname . oifname != @${DHCP_PATHS} ${dropTo('dhcp-steer', 'dhcp-steer')}`,
    `add rule ${t} forward oifname ${guest} udp sport 67 udp dport 68 oifname . @th,${chaddrMatch().offset},${chaddrMatch().length} != @${DHCP_REPLIES} ${dropTo('dhcp-reply-steer', 'dhcp-reply-steer')}`,
    `add rule ${t} input iifname ${guest} meta pkttype host ${dropTo('to-host', 'to-host')}`,
    `add rule ${t} input iifname ${guest} drop`,
    ...log.rules,
  ];
  const objects = [
    `add table ${t}`,
    ...TABLE_COUNTERS.map((c) => `add counter ${t} ${c}`),
    `add map ${t} ${PORT_MAP} { type ifname : verdict; }`,
    `add map ${t} ${ENDPOINT_MAP} { type ifname : verdict; }`,
    `add map ${t} ${EDGE_MAP} { type ifname : verdict; }`,
    `add set ${t} ${DHCP_PATHS} { type ifname . ifname; }`,
    `add set ${t} ${DHCP_REPLIES} { typeof oifname . @th,${chaddrMatch().offset},${chaddrMatch().length}; }`,
    ...log.objects,
    `add chain ${t} prerouting { type filter hook prerouting priority -200; policy accept; }`,
    `add chain ${t} forward { type filter hook forward priority -200; policy accept; }`,
    `add chain ${t} input { type filter hook input priority -200; policy accept; }`,
  ];
  const [dispatch] = withFingerprint([
    ...objects,
    ...rules,
    `add rule ${t} prerouting iifname vmap @${PORT_MAP}`,
  ]).slice(-1);
  return [...objects, dispatch as string, ...rules];
}

export function skeletonFingerprint(names: Names): string {
  const dispatch = skeletonCommands(names).find((c) => c.includes(`vmap @${PORT_MAP}`)) as string;
  return fingerprintOfRules([dispatch]);
}

/** The endpoint of a port's network, if the guard knows one. */
export function endpointFor(port: GuardPort, endpoints: readonly GuardEndpoint[]): GuardEndpoint | undefined {
  return endpoints.find((e) => e.network === port.network && e.bridge === port.bridge);
}

/** Everything one port owns, in creation order: counters, chain, rules, dispatch, DHCP path and edge elements. */
export function addPortCommands(
  names: Names,
  port: GuardPort,
  endpoint: GuardEndpoint | undefined,
): string[] {
  const t = `bridge ${names.guardTable()}`;
  return [
    ...portCommands(names, port, endpoint),
    ...(endpoint ? portEdgeCommands(t, port, endpoint.ifname, 'add') : []),
  ];
}

/** What addPortCommands adds except the elements in the network's edge sets (plan diffs those as sets). */
export function portCommands(names: Names, port: GuardPort, endpoint: GuardEndpoint | undefined): string[] {
  const t = `bridge ${names.guardTable()}`;
  const chain = portChain(port.ifname);
  return [
    ...DROP_REASONS.map((r) => `add counter ${t} ${counterName(port.ifname, r)}`),
    `add chain ${t} ${chain}`,
    ...portRules(port).map((r) => `add rule ${t} ${chain} ${r}`),
    `add element ${t} ${PORT_MAP} { "${port.ifname}" : jump ${chain} }`,
    ...(endpoint ? [`add element ${t} ${DHCP_PATHS} { "${port.ifname}" . "${endpoint.ifname}" }`] : []),
    replyElement(t, port.ifname, port.mac, 'add'),
    ...(endpoint ? [addEdgeDispatch(t, port.ifname, endpoint.ifname)] : []),
  ];
}

/** The `edges` element that sends frames from outside toward this port through its network's edge chain. */
export function addEdgeDispatch(t: string, ifname: string, endpoint: string): string {
  return `add element ${t} ${EDGE_MAP} { "${ifname}" : jump ${edgeChain(endpoint)} }`;
}

export function deleteEdgeDispatch(t: string, ifname: string): string {
  return `delete element ${t} ${EDGE_MAP} { "${ifname}" }`;
}

export function macHex(mac: string): string {
  return `0x${mac.replaceAll(':', '')}`;
}

/** The (port . chaddr) pair that lets DHCP replies for this port's MAC out of it. */
export function replyElement(t: string, ifname: string, mac: string, verb: 'add' | 'delete'): string {
  return `${verb} element ${t} ${DHCP_REPLIES} { "${ifname}" . ${macHex(mac)} }`;
}

/** The whole table as one script, endpoints and ports sorted by name so the text is stable. */
export function renderGuard(names: Names, state: GuardState): string {
  const valid = validateState(names, state);
  const t = `bridge ${names.guardTable()}`;
  const lines = [...skeletonCommands(names)];
  for (const ep of valid.endpoints) lines.push(...addEndpointCommands(t, ep));
  for (const port of valid.ports)
    lines.push(...addPortCommands(names, port, endpointFor(port, valid.endpoints)));
  return `${lines.join('\n')}\n`;
}
