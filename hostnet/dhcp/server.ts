// The DHCP server's decisions (RFC 2131 §4.3), with no I/O: given a decoded
// client message from a guest that has already been authorized, the fixed
// address berth assigned it and the lease it holds, say what to send, where,
// and what the lease becomes. The address is never chosen here: every guest
// has exactly one, so the only questions are whether to answer and how.

import { broadcastOf, cidrContains, intToIp, ipToInt, netmaskOf, parseCidr } from '../ipv4.js';
import type { DhcpReplySpec, ReplyParams } from './codec-encode.js';
import type { DhcpPacket } from './codec-types.js';
import { MessageType, OPT } from './options.js';
import type { ClasslessRoute } from './options-routes.js';

export const METADATA_ROUTE = '169.254.169.254/32';

/** What the network offers every guest on it. */
export interface ServedNetwork {
  name: string;
  subnet: string;
  gateway?: string | undefined;
  dns: readonly string[];
  domain?: string | undefined;
  mtu: number;
  /** The endpoint's in-subnet address: option 54 and the address renewals are unicast to. */
  serverId: string;
  leaseSeconds: number;
  /** How long a declined address is not offered again (RFC 2131 §4.3.3). */
  declineHoldSeconds: number;
}

/** The guest as berth assigned it; authorization already showed its MAC on its own port. */
export interface Binding {
  mac: string;
  ip: string;
  instance: string;
  hostname?: string | undefined;
}

export type LeaseState = 'bound' | 'released' | 'declined';

/** A lease as stored under lease/<network>/<mac>. */
export interface Lease {
  mac: string;
  ip: string;
  instance: string;
  network: string;
  /** ISO time: the end of the lease, of a release (now) or of a decline hold. */
  expires: string;
  state: LeaseState;
}

/** Why a message gets no answer (the server stays silent, as RFC 2131 asks). */
export type SilentReason =
  | 'not-a-client-message'
  | 'declined-hold'
  | 'other-server'
  | 'request-without-address'
  | 'inform-without-ciaddr'
  | 'inform-wrong-address'
  | 'release-not-ours'
  | 'decline-not-ours'
  | 'released'
  | 'declined';

export interface Destination {
  address: string;
  port: number;
}

export interface Decision {
  reply?: { spec: DhcpReplySpec; to: Destination };
  /** Why nothing is sent (with no reply), or why a NAK was sent. */
  reason?: SilentReason | string;
  /** The lease to store; undefined leaves it as it is. */
  lease?: Lease;
}

const BROADCAST = '255.255.255.255';
const CLIENT_PORT = 68;
const SERVER_PORT = 67;
const ZERO = '0.0.0.0';

/** The configuration options, the same in every OFFER, ACK and INFORM answer. */
export function replyParams(net: ServedNetwork, binding: Binding): ReplyParams {
  const cidr = parseCidr(net.subnet);
  if (!cidr) throw new Error(`"${net.subnet}" is not a CIDR`);
  // RFC 3442: a client that gets option 121 ignores option 3, so the default
  // route travels in 121 too. The metadata address is on-link: the endpoint
  // holds it on this very segment, whatever the gateway is.
  const routes: ClasslessRoute[] = [{ destination: METADATA_ROUTE, router: ZERO }];
  if (net.gateway !== undefined) routes.push({ destination: '0.0.0.0/0', router: net.gateway });
  return {
    subnetMask: netmaskOf(cidr.prefix),
    ...(net.gateway !== undefined ? { routers: [net.gateway] } : {}),
    ...(net.dns.length > 0 ? { dnsServers: [...net.dns] } : {}),
    ...(binding.hostname ? { hostname: binding.hostname } : {}),
    ...(net.domain ? { domainName: net.domain } : {}),
    mtu: net.mtu,
    broadcastAddress: intToIp(broadcastOf(cidr)),
    classlessRoutes: routes,
  };
}

/** Sent whether or not the client listed them in option 55. */
export const ALWAYS_SENT: readonly number[] = [
  OPT.SUBNET_MASK,
  OPT.CLASSLESS_ROUTES,
  OPT.ROUTERS,
  OPT.DNS_SERVERS,
  OPT.MTU,
  OPT.HOSTNAME,
  OPT.DOMAIN_NAME,
];

/**
 * RFC 2131 §4.1: through a relay to giaddr:67; a NAK, and anything for a
 * client without an address, by broadcast (the endpoint cannot unicast to an
 * address nobody holds yet, it has no ARP entry to give the kernel); a
 * client with ciaddr set is reachable there.
 */
export function destination(request: DhcpPacket, type: 'OFFER' | 'ACK' | 'NAK'): Destination {
  if (request.giaddr !== ZERO) return { address: request.giaddr, port: SERVER_PORT };
  if (type === 'NAK' || request.ciaddr === ZERO) return { address: BROADCAST, port: CLIENT_PORT };
  return { address: request.ciaddr, port: CLIENT_PORT };
}

export function inSubnet(net: ServedNetwork, ip: string): boolean {
  const cidr = parseCidr(net.subnet);
  return cidr !== undefined && cidrContains(cidr, ipToInt(ip));
}

function isoAfter(now: number, seconds: number): string {
  return new Date(now + seconds * 1000).toISOString();
}

/** The lease's effective state: a bound lease past its end reads as expired. */
export function leaseStatus(lease: Lease, now: number): LeaseState | 'expired' {
  return lease.state === 'bound' && Date.parse(lease.expires) <= now ? 'expired' : lease.state;
}

function holdsDecline(lease: Lease | undefined, now: number): boolean {
  return lease?.state === 'declined' && Date.parse(lease.expires) > now;
}

export interface DecideInput {
  packet: DhcpPacket;
  binding: Binding;
  network: ServedNetwork;
  lease: Lease | undefined;
  now: number;
}

export function decide(input: DecideInput): Decision {
  const { packet } = input;
  switch (packet.messageType) {
    case MessageType.DISCOVER:
      return discover(input);
    case MessageType.REQUEST:
      return request(input);
    case MessageType.DECLINE:
      return decline(input);
    case MessageType.RELEASE:
      return release(input);
    case MessageType.INFORM:
      return inform(input);
    default:
      return { reason: 'not-a-client-message' };
  }
}

function grant(input: DecideInput, type: 'OFFER' | 'ACK'): DhcpReplySpec {
  const { packet, binding, network } = input;
  return {
    type,
    request: packet,
    serverId: network.serverId,
    yiaddr: binding.ip,
    leaseTime: network.leaseSeconds,
    params: replyParams(network, binding),
    always: ALWAYS_SENT,
  };
}

function bound(input: DecideInput): Lease {
  const { binding, network, now } = input;
  return {
    mac: binding.mac,
    ip: binding.ip,
    instance: binding.instance,
    network: network.name,
    expires: isoAfter(now, network.leaseSeconds),
    state: 'bound',
  };
}

function ack(input: DecideInput): Decision {
  const spec = grant(input, 'ACK');
  return { reply: { spec, to: destination(input.packet, 'ACK') }, lease: bound(input) };
}

function nak(input: DecideInput, why: string): Decision {
  const spec: DhcpReplySpec = {
    type: 'NAK',
    request: input.packet,
    serverId: input.network.serverId,
    message: why,
  };
  return { reply: { spec, to: destination(input.packet, 'NAK') }, reason: why };
}

function discover(input: DecideInput): Decision {
  if (holdsDecline(input.lease, input.now)) return { reason: 'declined-hold' };
  // RFC 4039: with rapid commit the DISCOVER is answered by the ACK itself.
  if (input.packet.options.rapidCommit) return ack(input);
  const spec = grant(input, 'OFFER');
  return { reply: { spec, to: destination(input.packet, 'OFFER') } };
}

function request(input: DecideInput): Decision {
  const { packet, binding, network } = input;
  const opts = packet.options;
  const serverId = opts.serverId;
  const requested = opts.requestedIp;
  if (serverId !== undefined) {
    // SELECTING: the client answers one OFFER; every other server keeps quiet.
    if (serverId !== network.serverId) return { reason: 'other-server' };
    if (holdsDecline(input.lease, input.now)) return { reason: 'declined-hold' };
    const wanted = requested ?? (packet.ciaddr !== ZERO ? packet.ciaddr : undefined);
    if (wanted !== binding.ip)
      return nak(input, `requested address ${wanted ?? 'none'} is not this client's address`);
    return ack(input);
  }
  if (holdsDecline(input.lease, input.now)) return { reason: 'declined-hold' };
  if (requested !== undefined && packet.ciaddr === ZERO) {
    // INIT-REBOOT: the client checks an address it remembers.
    if (!inSubnet(network, requested))
      return nak(input, `requested address ${requested} is not on network ${network.subnet}`);
    if (requested !== binding.ip)
      return nak(input, `requested address ${requested} is not this client's address`);
    return ack(input);
  }
  if (packet.ciaddr !== ZERO) {
    // RENEWING (unicast) or REBINDING (broadcast): the client holds ciaddr.
    if (packet.ciaddr !== binding.ip)
      return nak(input, `address ${packet.ciaddr} is not this client's address`);
    return ack(input);
  }
  return { reason: 'request-without-address' };
}

function decline(input: DecideInput): Decision {
  const { packet, binding, network, now } = input;
  const opts = packet.options;
  if (opts.serverId !== undefined && opts.serverId !== network.serverId) return { reason: 'other-server' };
  if (opts.requestedIp !== binding.ip) return { reason: 'decline-not-ours' };
  // The address is in use by someone else on the segment; offering it again at
  // once would loop. Hold it back for a while and let the audit say why.
  const lease: Lease = {
    mac: binding.mac,
    ip: binding.ip,
    instance: binding.instance,
    network: network.name,
    expires: isoAfter(now, network.declineHoldSeconds),
    state: 'declined',
  };
  return { reason: 'declined', lease };
}

function release(input: DecideInput): Decision {
  const { packet, binding, network, now } = input;
  if (packet.options.serverId !== undefined && packet.options.serverId !== network.serverId)
    return { reason: 'other-server' };
  if (packet.ciaddr !== binding.ip || input.lease === undefined) return { reason: 'release-not-ours' };
  return {
    reason: 'released',
    lease: { ...input.lease, expires: new Date(now).toISOString(), state: 'released' },
  };
}

function inform(input: DecideInput): Decision {
  const { packet, binding, network } = input;
  if (packet.ciaddr === ZERO) return { reason: 'inform-without-ciaddr' };
  if (packet.ciaddr !== binding.ip) return { reason: 'inform-wrong-address' };
  // RFC 2131 §4.3.5: parameters only, no lease, no yiaddr, sent to ciaddr.
  const spec: DhcpReplySpec = {
    type: 'ACK',
    request: packet,
    serverId: network.serverId,
    params: replyParams(network, binding),
    always: ALWAYS_SENT,
  };
  return { reply: { spec, to: destination(packet, 'ACK') } };
}
