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
// - every drop counts in its named counter (exact), then jumps to the
//   reason's log chain, which NFLOGs at most 10 frames/s per in-port (a
//   dynamic set keyed by iifname) with the prefix "berth <reason> " to
//   Names.logGroup(); berthd reads them and writes guard.drop audit records.
// Rules match interface names, so they exist before the tap or veth does.
// Each port owns a chain, its map/set elements and its named counters, so
// adding or removing a port never touches another port's rule handles.
import { createHash } from 'node:crypto';
import { BerthError } from '../../agent/errors.js';
import { isIPv4, isMac } from '../ipv4.js';
import { IFNAMSIZ, type Names } from '../names.js';
import { canonicalIPv6, ipv6Hex, linkLocalFromMac } from './ipv6.js';

export interface GuardPort {
  /** The tap or root-side veth on the bridge; must carry the owned port prefix. */
  ifname: string;
  mac: string;
  ipv4: string;
  network: string;
  bridge: string;
  /** Assigned global IPv6 addresses; the EUI-64 link-local is always allowed. */
  ipv6?: readonly string[];
}

export interface GuardEndpoint {
  network: string;
  bridge: string;
  /** The endpoint's root-side veth on that bridge. */
  ifname: string;
}

export interface GuardState {
  ports: readonly GuardPort[];
  endpoints: readonly GuardEndpoint[];
}

export const DROP_REASONS = [
  'mac-spoof',
  'ip-spoof',
  'arp-spoof',
  'dhcp-chaddr',
  'dhcp-server',
  'ipv6-spoof',
  'ipv6-ra',
  'ethertype',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Drops that belong to no desired port: frames from unguarded owned ports, steered DHCP copies, frames to the host. */
export const TABLE_COUNTERS = ['unguarded', 'dhcp-steer', 'dhcp-reply-steer', 'to-host'] as const;

/** Every reason that can appear in a drop's NFLOG prefix. */
export const GUARD_REASONS = [...DROP_REASONS, ...TABLE_COUNTERS] as const;
export type GuardReason = (typeof GUARD_REASONS)[number];
/** NFLOG prefixes read "berth <reason> ". */
export const LOG_PREFIX = 'berth ';
/** Logged frames per second per in-port and reason (the named counters stay exact). */
const LOG_RATE = 'limit rate 10/second burst 20 packets';

/** The chain a drop of this reason jumps to: it logs (rate-limited) and drops. */
export function logChain(reason: GuardReason): string {
  return `log_${reason.replaceAll('-', '_')}`;
}

function rateSet(reason: GuardReason): string {
  return `rl_${reason.replaceAll('-', '_')}`;
}

/** The named counter, then the reason's log chain, which drops. */
function countAndLog(counter: string, reason: GuardReason): string {
  return `counter name "${counter}" goto ${logChain(reason)}`;
}

/** One rate set and one log chain per reason, in the skeleton so every port's rules can jump to them. */
export function logCommands(names: Names): string[] {
  const t = `bridge ${names.guardTable()}`;
  return GUARD_REASONS.flatMap((r) => [
    `add set ${t} ${rateSet(r)} { type ifname; flags dynamic; timeout 10s; }`,
    `add chain ${t} ${logChain(r)}`,
    `add rule ${t} ${logChain(r)} add @${rateSet(r)} { iifname ${LOG_RATE} } log prefix "${LOG_PREFIX}${r} " group ${names.logGroup()}`,
    `add rule ${t} ${logChain(r)} drop`,
  ]);
}

export const PORT_MAP = 'ports';
export const DHCP_PATHS = 'dhcp_paths';
export const DHCP_REPLIES = 'dhcp_replies';
export const CHAIN_PREFIX = 'port_';
/** Rule comments carry a fingerprint of what was rendered, so reconcile compares hashes, not nft's reprint. */
export const FINGERPRINT_PREFIX = 'berth guard ';

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

export function fingerprint(lines: readonly string[]): string {
  return createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 12);
}

/** The rule bodies of one port's chain; the last one carries the fingerprint of all of them. */
export function portRules(port: GuardPort): string[] {
  const { ifname, mac, ipv4 } = port;
  const drop = (reason: DropReason) => countAndLog(counterName(ifname, reason), reason);
  const ch = chaddrMatch();
  const ownV6 = [linkLocalFromMac(mac), ...(port.ipv6 ?? []).map((a) => canonicalIPv6(a) as string)];
  const v6 = [...new Set(ownV6)].sort();
  const v6hex = v6.map(ipv6Hex).join(', ');
  const target = `@th,${ICMPV6_ND_TARGET_OFFSET * 8},128`;
  const rules = [
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
  ];
  const last = rules.length - 1;
  rules[last] = `${rules[last]} comment "${FINGERPRINT_PREFIX}${fingerprint(rules)}"`;
  return rules;
}

export function portFingerprint(port: GuardPort): string {
  const last = portRules(port).at(-1) as string;
  return (/"berth guard ([0-9a-f]+)"$/.exec(last) as RegExpExecArray)[1] as string;
}

/** The table, its base chains, map, set and table-wide counters; the dispatch rule carries their fingerprint. */
export function skeletonCommands(names: Names): string[] {
  const t = `bridge ${names.guardTable()}`;
  const guestPorts = `"${names.prefix}p*"`;
  const rules = [
    `add rule ${t} prerouting iifname ${guestPorts} ${countAndLog('unguarded', 'unguarded')}`,
    `add rule ${t} forward iifname ${guestPorts} udp dport 67 iifname . oifname != @${DHCP_PATHS} ${countAndLog('dhcp-steer', 'dhcp-steer')}`,
    `add rule ${t} forward oifname ${guestPorts} udp sport 67 udp dport 68 oifname . @th,${chaddrMatch().offset},${chaddrMatch().length} != @${DHCP_REPLIES} ${countAndLog('dhcp-reply-steer', 'dhcp-reply-steer')}`,
    `add rule ${t} input iifname ${guestPorts} meta pkttype host ${countAndLog('to-host', 'to-host')}`,
    `add rule ${t} input iifname ${guestPorts} drop`,
  ];
  const objects = [
    `add table ${t}`,
    ...TABLE_COUNTERS.map((c) => `add counter ${t} ${c}`),
    `add map ${t} ${PORT_MAP} { type ifname : verdict; }`,
    `add set ${t} ${DHCP_PATHS} { type ifname . ifname; }`,
    `add set ${t} ${DHCP_REPLIES} { typeof oifname . @th,${chaddrMatch().offset},${chaddrMatch().length}; }`,
    `add chain ${t} prerouting { type filter hook prerouting priority -200; policy accept; }`,
    `add chain ${t} forward { type filter hook forward priority -200; policy accept; }`,
    `add chain ${t} input { type filter hook input priority -200; policy accept; }`,
    ...logCommands(names),
  ];
  const print = fingerprint([...objects, ...rules]);
  return [
    ...objects,
    `add rule ${t} prerouting iifname vmap @${PORT_MAP} comment "${FINGERPRINT_PREFIX}${print}"`,
    ...rules,
  ];
}

export function skeletonFingerprint(names: Names): string {
  const dispatch = skeletonCommands(names).find((c) => c.includes(`vmap @${PORT_MAP}`)) as string;
  return (/"berth guard ([0-9a-f]+)"$/.exec(dispatch) as RegExpExecArray)[1] as string;
}

/** The endpoint a port's DHCP client frames may reach, if its network has one. */
export function endpointFor(port: GuardPort, endpoints: readonly GuardEndpoint[]): string | undefined {
  return endpoints.find((e) => e.network === port.network && e.bridge === port.bridge)?.ifname;
}

/** Everything one port owns, in creation order: counters, chain, rules, dispatch and DHCP path. */
export function addPortCommands(names: Names, port: GuardPort, endpoint: string | undefined): string[] {
  const t = `bridge ${names.guardTable()}`;
  const chain = portChain(port.ifname);
  return [
    ...DROP_REASONS.map((r) => `add counter ${t} ${counterName(port.ifname, r)}`),
    `add chain ${t} ${chain}`,
    ...portRules(port).map((r) => `add rule ${t} ${chain} ${r}`),
    `add element ${t} ${PORT_MAP} { "${port.ifname}" : jump ${chain} }`,
    ...(endpoint ? [`add element ${t} ${DHCP_PATHS} { "${port.ifname}" . "${endpoint}" }`] : []),
    replyElement(t, port.ifname, port.mac, 'add'),
  ];
}

export function macHex(mac: string): string {
  return `0x${mac.replaceAll(':', '')}`;
}

/** The (port . chaddr) pair that lets DHCP replies for this port's MAC out of it. */
export function replyElement(t: string, ifname: string, mac: string, verb: 'add' | 'delete'): string {
  return `${verb} element ${t} ${DHCP_REPLIES} { "${ifname}" . ${macHex(mac)} }`;
}

/** The whole table as one script, ports sorted by name so the text is stable. */
export function renderGuard(names: Names, state: GuardState): string {
  const valid = validateState(names, state);
  const lines = [...skeletonCommands(names)];
  for (const port of valid.ports)
    lines.push(...addPortCommands(names, port, endpointFor(port, valid.endpoints)));
  return `${lines.join('\n')}\n`;
}

const IFNAME = /^[a-z0-9][a-z0-9_-]*$/;

function checkIfname(names: Names, ifname: string, kind: 'p' | 'e', field: string): void {
  const ok = IFNAME.test(ifname) && ifname.length <= IFNAMSIZ && ifname.startsWith(`${names.prefix}${kind}`);
  if (!ok) {
    const want = kind === 'p' ? 'a guest port' : 'an endpoint veth';
    throw new BerthError(
      'BERTH_ERR_INVALID_ARGUMENT',
      `${field}: "${ifname}" is not ${want} name owned by berth (want "${names.prefix}${kind}..." of at most ${IFNAMSIZ} lower-case letters, digits, "-" or "_")`,
      { field },
    );
  }
}

function invalid(field: string, reason: string): BerthError {
  return new BerthError('BERTH_ERR_INVALID_ARGUMENT', `${field}: ${reason}`, { field });
}

/**
 * Checks every value that will be spliced into nft text (nothing unchecked reaches the script) and
 * returns the state with ports and endpoints sorted by ifname.
 */
export function validateState(names: Names, state: GuardState): GuardState {
  const seen = new Set<string>();
  state.ports.forEach((p, i) => {
    const f = `ports[${i}]`;
    checkIfname(names, p.ifname, 'p', `${f}.ifname`);
    if (seen.has(p.ifname)) throw invalid(`${f}.ifname`, `"${p.ifname}" is listed twice`);
    seen.add(p.ifname);
    if (!isMac(p.mac))
      throw invalid(`${f}.mac`, `"${p.mac}" is not a MAC address (want aa:bb:cc:dd:ee:ff, lower case)`);
    if (!isIPv4(p.ipv4) || p.ipv4 === '0.0.0.0')
      throw invalid(`${f}.ipv4`, `"${p.ipv4}" is not a usable IPv4 address`);
    (p.ipv6 ?? []).forEach((a, j) => {
      if (!canonicalIPv6(a))
        throw invalid(`${f}.ipv6[${j}]`, `"${a}" is not an IPv6 address (hex groups only)`);
    });
  });
  state.endpoints.forEach((e, i) => {
    checkIfname(names, e.ifname, 'e', `endpoints[${i}].ifname`);
  });
  const byName = <T extends { ifname: string }>(a: T, b: T) =>
    a.ifname < b.ifname ? -1 : a.ifname > b.ifname ? 1 : 0;
  return { ports: [...state.ports].sort(byName), endpoints: [...state.endpoints].sort(byName) };
}
