// Renders security-group enforcement as nft text. Pure, no I/O.
//
// Both modes filter in one bridge-family table, `bridge <prefix>_sg`: its
// forward chain dispatches on oifname through the `ports` verdict map to one
// chain per guarded port, so a frame is judged where it leaves toward the
// guest, and an unguarded port costs one failed map lookup. A port chain:
//   1. frames from the network's endpoint ports (DHCP, metadata): accept;
//   2. ARP and ICMPv6 neighbour discovery: accept (the guard already made them honest);
//   3. anything but IPv4: drop (groups speak IPv4);
//   4. connection state: related, or established in the reply direction
//      (the replies to the guest's own connections): accept; invalid: drop;
//   5. one accept per rule, counted per (port, rule). A set source matches
//      on (address, MAC, ingress port) together, so a member counts only from
//      where it is: its own port, or the uplink for another host's guest;
//   6. a counted, rate-limited NFLOG'd drop (`berth secgroup <port> `).
// Established flows in the ORIGINAL direction (toward the guest) are judged
// by the rules again on every packet: a rule removed stops the flows it alone
// allowed at once, while flows another rule still allows keep flowing, with
// no conntrack flush. A chain rewrite is flush + re-add in one transaction,
// so no packet ever sees half a chain.
//
// A TCP segment that would start tracking mid-stream (not a bare SYN) is
// dropped when it comes FROM a guarded port: after a flow is cut, the guest's
// own retransmission would otherwise be picked up as a new flow in its
// direction and make the removed peer's segments "replies" again.
//
// Where connection state comes from differs:
// - bridge-ct (nf_conntrack_bridge): `ct` works in the bridge family; a
//   prerouting chain at raw priority puts each bridge in its own conntrack
//   zone (`meta ibrname`), so overlapping tenant CIDRs never share entries.
//   A VLAN-filtering trunk bridge carries many networks, one per VLAN, whose
//   subnets may overlap too: its ports are zoned per (bridge, VLAN) instead
//   (`tzones` by the tag of a tagged frame from the uplink, `pzones` by the
//   pvid of the port an untagged frame came in on; at prerouting the bridge
//   has not yet given it its VLAN). Two maps, not one: `vlan id` is network
//   and `meta ibrpvid` host byte order, so each map's key is typed by the
//   expression that looks it up. A trunk bridge is left out of `zones`.
// - br-netfilter: `ct` is refused in the bridge family (EPROTO), but
//   br_netfilter hands bridged IPv4 to the inet hooks, where conntrack runs.
//   `table inet <prefix>_sg` sets the zone per bridge at raw priority and, in
//   forward (which br_netfilter runs at bridge priority -1, as the bridge),
//   writes the verdict of conntrack into two bits of meta mark (CT_MARK_MASK;
//   other users' bits are kept). The bridge table's forward chain runs at
//   priority 100, after br_netfilter, and reads those bits. A frame that never
//   went through br_netfilter carries neither bit: it is judged as new
//   (fail closed: replies are dropped, never more let in).
import { createHash } from 'node:crypto';
import type { Names } from '../names.js';
import {
  memberElement,
  SET_MEMBER_TYPE,
  type SgMode,
  type SgPort,
  type SgRule,
  type SgSet,
} from './state.js';

export const PORT_MAP = 'ports';
export const ZONE_MAP = 'zones';
/** (bridge, VLAN) -> zone, looked up by a tagged frame's `vlan id` and by an untagged one's `meta ibrpvid`. */
export const TAG_ZONE_MAP = 'tzones';
export const PVID_ZONE_MAP = 'pzones';
export const BRIDGE_SET = 'bridges';
export const CHAIN_PREFIX = 'port_';
export const FINGERPRINT_PREFIX = 'berth sg ';
export const LOG_REASON = 'secgroup';
/** The conntrack verdict bits in meta mark (br-netfilter mode); chosen clear of kube-proxy's 0xc000 and Docker's low bits. */
export const CT_REPLY_BIT = 0x02000000;
export const CT_INVALID_BIT = 0x04000000;
export const CT_PICKUP_BIT = 0x08000000;
export const CT_MARK_MASK = CT_REPLY_BIT | CT_INVALID_BIT | CT_PICKUP_BIT;
/** The set of guarded ports (their egress is checked for mid-stream pickups). */
export const GUARDED_SET = 'guarded';
export const PICKUP_COUNTER = 'pickup';
const NOT_SYN = 'tcp flags & (fin | syn | rst | ack) != syn';
/** After br_netfilter's forward hook (NF_BR_PRI_BRNF - 1). */
export const BRIDGE_FORWARD_PRIORITY = 100;
const LOG_RATE = 'limit rate 10/second burst 20 packets';
const NDP = 'nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert';

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

export function sgTable(names: Names): string {
  return `${names.prefix}_sg`;
}

export function portChain(ifname: string): string {
  return `${CHAIN_PREFIX}${ifname}`;
}

/** Named counters: `<port>.<rule id>`, `<port>.invalid`, `<port>.drop`. */
export function counterName(ifname: string, rule: string): string {
  return `${ifname}.${rule}`;
}

/** A zone's key: the bridge, or bridge/VLAN on a VLAN-filtering bridge ('/' is never in an interface name). */
export function zoneKey(bridge: string, vlan?: number): string {
  return vlan === undefined ? bridge : `${bridge}/${vlan}`;
}

/** A bridge's (or bridge VLAN's) conntrack zone: stable per key (1..65535), so a new one never renumbers another's. */
export function zoneOf(bridge: string, vlan?: number): number {
  const key = zoneKey(bridge, vlan);
  return 1 + (Number.parseInt(createHash('sha256').update(key).digest('hex').slice(0, 8), 16) % 65535);
}

/** The zone keys these ports need, sorted and unique. */
export function zoneKeysOf(ports: readonly SgPort[]): string[] {
  return [...new Set(ports.map((p) => zoneKey(p.bridge, p.vlan)))].sort();
}

/** A zone key's element key in nft syntax: `"br"` or `"br" . 100`. */
export function zoneElement(key: string): string {
  const [bridge, vlan] = key.split('/');
  return vlan === undefined ? `"${bridge}"` : `"${bridge}" . ${vlan}`;
}

export function zoneValue(key: string): number {
  const [bridge, vlan] = key.split('/');
  return zoneOf(bridge as string, vlan === undefined ? undefined : Number(vlan));
}

export function fingerprint(lines: readonly string[]): string {
  return createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 12);
}

function withFingerprint(rules: string[]): string[] {
  const last = rules.length - 1;
  rules[last] = `${rules[last]} comment "${FINGERPRINT_PREFIX}${fingerprint(rules)}"`;
  return rules;
}

/** The fingerprint a rendered rule list carries on its last rule. */
export function fingerprintOf(rules: readonly string[]): string {
  const last = rules.at(-1) ?? '';
  return /"berth sg ([0-9a-f]+)"$/.exec(last)?.[1] ?? '';
}

function ruleMatch(rule: SgRule): string {
  const src =
    'set' in rule.from ? `ip saddr . ether saddr . iifname @${rule.from.set}` : `ip saddr ${rule.from.cidr}`;
  const range = rule.ports
    ? rule.ports.from === rule.ports.to
      ? `${rule.ports.from}`
      : `${rule.ports.from}-${rule.ports.to}`
    : undefined;
  switch (rule.proto) {
    case 'tcp':
    case 'udp':
      return range ? `${src} ${rule.proto} dport ${range}` : `${src} ip protocol ${rule.proto}`;
    case 'icmp':
      return `${src} ip protocol icmp`;
    default:
      return src;
  }
}

/** The rule bodies of one port's chain; the last carries the fingerprint of all of them. */
export function portRules(names: Names, mode: SgMode, port: SgPort): string[] {
  const { ifname } = port;
  const state =
    mode === 'bridge-ct'
      ? [
          'ether type ip ct state related accept',
          'ether type ip ct state established ct direction reply accept',
          `ether type ip ct state invalid counter name "${counterName(ifname, 'invalid')}" drop`,
        ]
      : [
          `ether type ip meta mark & ${hex(CT_REPLY_BIT)} == ${hex(CT_REPLY_BIT)} accept`,
          `ether type ip meta mark & ${hex(CT_INVALID_BIT)} == ${hex(CT_INVALID_BIT)} counter name "${counterName(ifname, 'invalid')}" drop`,
        ];
  const endpoints = [...new Set(port.endpointPorts)].sort().map((e) => `"${e}"`);
  const drop = `counter name "${counterName(ifname, 'drop')}"`;
  return withFingerprint([
    ...(endpoints.length > 0 ? [`iifname { ${endpoints.join(', ')} } accept`] : []),
    'ether type arp accept',
    `ether type ip6 icmpv6 type { ${NDP} } accept`,
    `ether type != ip ${drop} ${LOG_RATE} log prefix "berth ${LOG_REASON} ${ifname} " group ${names.logGroup()} drop`,
    'ether type != ip drop',
    ...state,
    ...uniqueRules(port.rules).map(
      (r) => `ether type ip ${ruleMatch(r)} counter name "${counterName(ifname, r.id)}" accept`,
    ),
    `${drop} ${LOG_RATE} log prefix "berth ${LOG_REASON} ${ifname} " group ${names.logGroup()} drop`,
    'drop',
  ]);
}

export function uniqueRules(rules: readonly SgRule[]): SgRule[] {
  const seen = new Set<string>();
  return [...rules].sort((a, b) => (a.id < b.id ? -1 : 1)).filter((r) => !seen.has(r.id) && seen.add(r.id));
}

/** Every counter a port's chain uses. */
export function portCounters(port: SgPort): string[] {
  return [...uniqueRules(port.rules).map((r) => r.id), 'invalid', 'drop'].map((r) =>
    counterName(port.ifname, r),
  );
}

/** The base chains each mode hooks, as `<family> <chain>`; the last rule of each carries the skeleton fingerprint. */
export function baseChains(mode: SgMode): string[] {
  return mode === 'bridge-ct'
    ? ['bridge forward', 'bridge raw']
    : ['bridge forward', 'inet raw', 'inet forward'];
}

/** The tables, base chains, maps and sets, without ports. */
export function skeletonCommands(names: Names, mode: SgMode): string[] {
  const name = sgTable(names);
  const b = `bridge ${name}`;
  const i = `inet ${name}`;
  const lines = [
    `add table ${b}`,
    `add map ${b} ${PORT_MAP} { type ifname : verdict; }`,
    `add chain ${b} forward { type filter hook forward priority ${BRIDGE_FORWARD_PRIORITY}; policy accept; }`,
    `add set ${b} ${GUARDED_SET} { type ifname; }`,
    `add counter ${b} ${PICKUP_COUNTER}`,
    mode === 'bridge-ct'
      ? `add rule ${b} forward iifname @${GUARDED_SET} ether type ip ct state new ${NOT_SYN} counter name "${PICKUP_COUNTER}" drop`
      : `add rule ${b} forward iifname @${GUARDED_SET} ether type ip meta mark & ${hex(CT_PICKUP_BIT)} == ${hex(CT_PICKUP_BIT)} counter name "${PICKUP_COUNTER}" drop`,
    `add rule ${b} forward oifname vmap @${PORT_MAP}`,
  ];
  if (mode === 'bridge-ct') {
    lines.push(
      `add map ${b} ${ZONE_MAP} { typeof meta ibrname : ct zone; }`,
      `add map ${b} ${TAG_ZONE_MAP} { typeof meta ibrname . vlan id : ct zone; }`,
      `add map ${b} ${PVID_ZONE_MAP} { typeof meta ibrname . meta ibrpvid : ct zone; }`,
      `add chain ${b} raw { type filter hook prerouting priority -300; policy accept; }`,
      `add rule ${b} raw ct zone set meta ibrname map @${ZONE_MAP}`,
      `add rule ${b} raw ether type 8021q ct zone set meta ibrname . vlan id map @${TAG_ZONE_MAP}`,
      `add rule ${b} raw ether type != 8021q ct zone set meta ibrname . meta ibrpvid map @${PVID_ZONE_MAP}`,
    );
  } else {
    const keep = hex(~CT_MARK_MASK >>> 0);
    lines.push(
      `add table ${i}`,
      `add map ${i} ${ZONE_MAP} { typeof iifname : ct zone; }`,
      `add set ${i} ${BRIDGE_SET} { type ifname; }`,
      `add chain ${i} raw { type filter hook prerouting priority -300; policy accept; }`,
      `add chain ${i} forward { type filter hook forward priority 0; policy accept; }`,
      `add rule ${i} raw ct zone set iifname map @${ZONE_MAP}`,
      `add rule ${i} forward iifname @${BRIDGE_SET} meta mark set meta mark & ${keep}`,
      `add rule ${i} forward iifname @${BRIDGE_SET} ct state related meta mark set meta mark | ${hex(CT_REPLY_BIT)}`,
      `add rule ${i} forward iifname @${BRIDGE_SET} ct state established ct direction reply meta mark set meta mark | ${hex(CT_REPLY_BIT)}`,
      `add rule ${i} forward iifname @${BRIDGE_SET} ct state invalid meta mark set meta mark | ${hex(CT_INVALID_BIT)}`,
      `add rule ${i} forward iifname @${BRIDGE_SET} ct state new ${NOT_SYN} meta mark set meta mark | ${hex(CT_PICKUP_BIT)}`,
    );
  }
  // Every base chain's last rule carries the fingerprint: a flushed chain in
  // either table reads as changed. It covers the source sets' element type
  // too, so tables whose sets hold another type are written afresh.
  const fp = fingerprint([...lines, SET_MEMBER_TYPE]);
  for (const chain of baseChains(mode)) {
    const [family, base] = chain.split(' ');
    const at = lines.findLastIndex((l) => l.startsWith(`add rule ${family} ${name} ${base} `));
    lines[at] = `${lines[at]} comment "${FINGERPRINT_PREFIX}${fp}"`;
  }
  return lines;
}

export function skeletonFingerprint(names: Names, mode: SgMode): string {
  return fingerprint([
    ...skeletonCommands(names, mode).map((l) => l.replace(/ comment "[^"]*"$/, '')),
    SET_MEMBER_TYPE,
  ]);
}

/** The families whose `<prefix>_sg` table a mode uses. */
export function familiesOf(mode: SgMode): string[] {
  return mode === 'bridge-ct' ? ['bridge'] : ['bridge', 'inet'];
}

/** Where the per-bridge zone map and the bridge set live. */
export function zoneTable(names: Names, mode: SgMode): string {
  return `${mode === 'bridge-ct' ? 'bridge' : 'inet'} ${sgTable(names)}`;
}

export function addSetCommands(names: Names, set: SgSet): string[] {
  const b = `bridge ${sgTable(names)}`;
  return [
    `add set ${b} ${set.name} { type ${SET_MEMBER_TYPE}; comment "${set.source.replaceAll('"', '')}"; }`,
    ...(set.members.length > 0
      ? [`add element ${b} ${set.name} { ${set.members.map(memberElement).sort().join(', ')} }`]
      : []),
  ];
}

/** One port's counters, chain (flushed, then its rules) and dispatch element. */
export function portCommands(names: Names, mode: SgMode, port: SgPort, dispatch: boolean): string[] {
  const b = `bridge ${sgTable(names)}`;
  const chain = portChain(port.ifname);
  return [
    ...portCounters(port).map((c) => `add counter ${b} ${c}`),
    `add chain ${b} ${chain}`,
    `flush chain ${b} ${chain}`,
    ...portRules(names, mode, port).map((r) => `add rule ${b} ${chain} ${r}`),
    ...(dispatch
      ? [
          `add element ${b} ${PORT_MAP} { "${port.ifname}" : jump ${chain} }`,
          `add element ${b} ${GUARDED_SET} { "${port.ifname}" }`,
        ]
      : []),
  ];
}

/** The whole enforcement as one script (both tables replaced), ports and sets sorted so the text is stable. */
export function renderSecGroups(names: Names, mode: SgMode, ports: SgPort[], sets: SgSet[]): string {
  const lines: string[] = [];
  // Both families, whichever this mode uses: a mode change leaves no table of the other behind.
  for (const family of ['bridge', 'inet'])
    lines.push(`add table ${family} ${sgTable(names)}`, `delete table ${family} ${sgTable(names)}`);
  lines.push(...skeletonCommands(names, mode));
  for (const set of [...sets].sort((a, b) => (a.name < b.name ? -1 : 1)))
    lines.push(...addSetCommands(names, set));
  const sorted = [...ports].sort((a, b) => (a.ifname < b.ifname ? -1 : 1));
  for (const port of sorted) lines.push(...portCommands(names, mode, port, true));
  lines.push(...zoneCommands(names, mode, zoneKeysOf(sorted), 'add'));
  return `${lines.join('\n')}\n`;
}

/** The zone map(s) a key's element goes in: a bridge's in `zones`, a bridge VLAN's in both VLAN maps. */
export function zoneMapsOf(key: string): string[] {
  return key.includes('/') ? [TAG_ZONE_MAP, PVID_ZONE_MAP] : [ZONE_MAP];
}

/** Zone elements (and, in br-netfilter mode, bridge set elements) for these zone keys. */
export function zoneCommands(names: Names, mode: SgMode, keys: string[], verb: 'add' | 'delete'): string[] {
  if (keys.length === 0) return [];
  const z = zoneTable(names, mode);
  const out: string[] = [];
  for (const map of [ZONE_MAP, TAG_ZONE_MAP, PVID_ZONE_MAP]) {
    const mine = keys.filter((k) => zoneMapsOf(k).includes(map));
    if (mine.length === 0) continue;
    const elems = mine.map((k) => (verb === 'add' ? `${zoneElement(k)} : ${zoneValue(k)}` : zoneElement(k)));
    out.push(`${verb} element ${z} ${map} { ${elems.join(', ')} }`);
  }
  const bridges = keys.filter((k) => !k.includes('/'));
  if (mode === 'br-netfilter' && bridges.length > 0)
    out.push(`${verb} element ${z} ${BRIDGE_SET} { ${bridges.map((br) => `"${br}"`).join(', ')} }`);
  return out;
}
