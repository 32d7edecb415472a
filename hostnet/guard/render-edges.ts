// The guard at a network's edges: what may reach its endpoint, where the
// endpoint's frames may go, and what uplink or foreign ports may send toward
// its guests. Pure text, no I/O; render.ts checks every value first.
//
// Every port on a berth bridge has a class: guest (`<prefix>p*`, guarded),
// endpoint (`<prefix>e*`), uplink or foreign (anything else). The rules key
// on "not a guest port and not an endpoint", never on a list of uplink names,
// so a port plugged in by hand is covered the instant it exists.
// - The endpoint's chain `ep_<endpoint>` is reached through the `endpoints`
//   map both for frames toward it and for frames from it. Toward it, only a
//   local guest's own port with its MAC passes (ARP, IPv6), and for IPv4 also
//   its assigned IP or 0.0.0.0 (a DHCP client without an address): the sets
//   `hosts_<ep>` (port . MAC) and `addrs_<ep>` (port . MAC . IP). From it,
//   frames go to guest ports only: the endpoint is a local port, like OVN's
//   localport, so every host of a shared network may hold the same service
//   address without its answers leaking up the uplink.
// - Toward a guest port from an uplink or foreign port, the `edges` map
//   (guest port -> `edge_<endpoint>`) picks the guest's network, since
//   subnets may overlap across networks: `macs_<ep>` and `ips_<ep>` hold that
//   network's local guests. DHCP and DHCPv6 server messages, router
//   advertisements and redirects, ARP or IPv4 from a service address or a
//   local guest's IP, and any frame or ARP sender with a local guest's MAC
//   are dropped. (A guest MAC from another port cannot move the FDB either:
//   its entry is static and sticky.)
// Each network's counters are named `<endpoint>.<reason>`, so `network show`
// reports them with the network's endpoint port.
import { METADATA_IP } from '../links/endpoint.js';
import { withFingerprint } from './fingerprint.js';
import { dropTo, EDGE_REASONS, type EdgeReason } from './reasons.js';

export interface GuardEndpoint {
  network: string;
  bridge: string;
  /** The endpoint's root-side veth on that bridge. */
  ifname: string;
  /** The network's service address; the endpoint also answers at 169.254.169.254. */
  serviceIp: string;
}

/** What a guest port contributes to its network's edge sets. */
export interface EdgePort {
  ifname: string;
  mac: string;
  ipv4: string;
}

export const ENDPOINT_MAP = 'endpoints';
export const EDGE_MAP = 'edges';
export const ENDPOINT_CHAIN_PREFIX = 'ep_';
export const EDGE_CHAIN_PREFIX = 'edge_';
export const EDGE_SETS = ['hosts', 'addrs', 'macs', 'ips'] as const;
export type EdgeSetKind = (typeof EDGE_SETS)[number];
const SET_TYPES: Record<EdgeSetKind, string> = {
  hosts: 'ifname . ether_addr',
  addrs: 'ifname . ether_addr . ipv4_addr',
  macs: 'ether_addr',
  ips: 'ipv4_addr',
};

export function edgeSet(kind: EdgeSetKind, endpoint: string): string {
  return `${kind}_${endpoint}`;
}

export function edgeSetDeclaration(t: string, kind: EdgeSetKind, endpoint: string): string {
  return `add set ${t} ${edgeSet(kind, endpoint)} { type ${SET_TYPES[kind]}; }`;
}

/** The set kind and endpoint a set name stands for, if it is an edge set. */
export function parseEdgeSet(name: string): { kind: EdgeSetKind; endpoint: string } | undefined {
  const kind = EDGE_SETS.find((k) => name.startsWith(`${k}_`));
  return kind ? { kind, endpoint: name.slice(kind.length + 1) } : undefined;
}

export function endpointChain(endpoint: string): string {
  return `${ENDPOINT_CHAIN_PREFIX}${endpoint}`;
}

export function edgeChain(endpoint: string): string {
  return `${EDGE_CHAIN_PREFIX}${endpoint}`;
}

export function edgeCounter(endpoint: string, reason: EdgeReason): string {
  return `${endpoint}.${reason}`;
}

/** One element as nft prints it back: `"port" . mac . ip`, or a bare MAC or IP. */
export function elementText(values: readonly string[]): string {
  return values.length === 1 ? (values[0] as string) : `"${values[0]}" . ${values.slice(1).join(' . ')}`;
}

/** The values a port puts in each of its network's edge sets. */
export function portEdgeValues(port: EdgePort): Record<EdgeSetKind, string[][]> {
  return {
    hosts: [[port.ifname, port.mac]],
    addrs: [
      [port.ifname, port.mac, port.ipv4],
      [port.ifname, port.mac, '0.0.0.0'],
    ],
    macs: [[port.mac]],
    ips: [[port.ipv4]],
  };
}

/** The endpoint chain: frames from the endpoint (egress) and toward it (ingress). */
export function endpointRules(ep: GuardEndpoint): string[] {
  const e = ep.ifname;
  const drop = (r: EdgeReason) => dropTo(edgeCounter(e, r), r);
  return withFingerprint([
    // The dispatch sends the endpoint's own frames here only when they head for a non-guest port.
    `iifname "${e}" ${drop('endpoint-egress')}`,
    `ether type arp iifname . ether saddr @${edgeSet('hosts', e)} accept`,
    `ether type ip iifname . ether saddr . ip saddr @${edgeSet('addrs', e)} accept`,
    `ether type ip6 iifname . ether saddr @${edgeSet('hosts', e)} accept`,
    drop('edge-to-endpoint'),
  ]);
}

/** The chain for frames from uplink or foreign ports toward this network's guests. */
export function edgeRules(ep: GuardEndpoint): string[] {
  const e = ep.ifname;
  const drop = (r: EdgeReason) => dropTo(edgeCounter(e, r), r);
  const service = `{ ${[...new Set([ep.serviceIp, METADATA_IP])].join(', ')} }`;
  return withFingerprint([
    // Client ports: a DHCP or DHCPv6 server message, whatever source port it claims.
    `udp dport { 68, 546 } ${drop('edge-dhcp-server')}`,
    `icmpv6 type { nd-router-advert, nd-redirect } ${drop('edge-ra')}`,
    `ether type arp arp saddr ip ${service} ${drop('edge-service-claim')}`,
    `ether type ip ip saddr ${service} ${drop('edge-service-claim')}`,
    `ether saddr @${edgeSet('macs', e)} ${drop('edge-guest-claim')}`,
    `ether type arp arp saddr ether @${edgeSet('macs', e)} ${drop('edge-guest-claim')}`,
    `ether type arp arp saddr ip @${edgeSet('ips', e)} ${drop('edge-guest-claim')}`,
    `ether type ip ip saddr @${edgeSet('ips', e)} ${drop('edge-guest-claim')}`,
    'accept',
  ]);
}

/** Everything one network's edges own, in creation order, except its guests' elements. */
export function addEndpointCommands(t: string, ep: GuardEndpoint): string[] {
  const e = ep.ifname;
  return [
    ...EDGE_REASONS.map((r) => `add counter ${t} ${edgeCounter(e, r)}`),
    ...EDGE_SETS.map((k) => edgeSetDeclaration(t, k, e)),
    `add chain ${t} ${endpointChain(e)}`,
    ...endpointRules(ep).map((r) => `add rule ${t} ${endpointChain(e)} ${r}`),
    `add chain ${t} ${edgeChain(e)}`,
    ...edgeRules(ep).map((r) => `add rule ${t} ${edgeChain(e)} ${r}`),
    `add element ${t} ${ENDPOINT_MAP} { "${e}" : jump ${endpointChain(e)} }`,
  ];
}

/** One command per edge set that adds (or deletes) the port's elements. */
export function portEdgeCommands(
  t: string,
  port: EdgePort,
  endpoint: string,
  verb: 'add' | 'delete',
): string[] {
  const values = portEdgeValues(port);
  return EDGE_SETS.map(
    (k) => `${verb} element ${t} ${edgeSet(k, endpoint)} { ${values[k].map(elementText).join(', ')} }`,
  );
}
