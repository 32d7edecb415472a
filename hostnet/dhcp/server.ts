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
  /**
   * How long after an ACK for a new binding a DECLINE is believed (RFC 2131
   * §4.4.1: the client probes the address it was just given, then declines).
   * Default DECLINE_WINDOW_SECONDS.
   */
  declineWindowSeconds?: number;
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
  /** ISO time of the last ACK for a new binding (not a renewal): a DECLINE must follow one. */
  bound_at?: string;
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
  | 'release-not-from-assigned-ip'
  | 'release-without-lease'
  | 'decline-not-ours'
  | 'decline-not-from-unbound-client'
  | 'decline-without-fresh-ack'
  | 'released'
  | 'declined';

/**
 * A DECLINE or RELEASE that does not hold together as the chaddr's own: it
 * changes nothing, and is audited as a refusal in that instance's name.
 */
export const REFUSED_REASONS: ReadonlySet<string> = new Set<SilentReason>([
  'release-not-ours',
  'release-not-from-assigned-ip',
  'release-without-lease',
  'decline-not-ours',
  'decline-not-from-unbound-client',
  'decline-without-fresh-ack',
]);

/**
 * RFC 5227's probes end within PROBE_WAIT + PROBE_NUM × PROBE_MAX +
 * ANNOUNCE_WAIT = 9 s of the ACK; 15 s leaves room for a slow guest.
 */
export const DECLINE_WINDOW_SECONDS = 15;

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
 * RFC 2131 §4.1. An OFFER or ACK for a client without an address is
 * unicast to its assigned address when the broadcast flag is clear: the
 * endpoint's PERMANENT neighbour entry turns that into a frame for the
 * assigned MAC, which the sticky FDB entry delivers to the guest's own port
 * only. A client that sets the flag (it cannot read unicast before it has an
 * address) is answered by broadcast, as the RFC requires; the guard then
 * lets the copy out of the one guest port whose MAC is the chaddr and out of
 * no uplink or foreign port, so a broadcast hands nobody else the lease. A
 * NAK carries nothing worth stealing and is broadcast. A client with ciaddr
 * set is reachable there. giaddr is ignored: every guest berth answers sits
 * on a local port, so a relay address in the request is one the sender made
 * up, and answering toward it would send a lease elsewhere.
 */
export function destination(
  request: DhcpPacket,
  type: 'OFFER' | 'ACK' | 'NAK',
  assigned?: string,
): Destination {
  if (type === 'NAK') return { address: BROADCAST, port: CLIENT_PORT };
  if (request.ciaddr !== ZERO) return { address: request.ciaddr, port: CLIENT_PORT };
  if (request.broadcast) return { address: BROADCAST, port: CLIENT_PORT };
  return { address: assigned ?? BROADCAST, port: CLIENT_PORT };
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
  /** The datagram's source IP: 0.0.0.0 for a client with no address. */
  source: string;
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

/** fresh: the ACK gives a new binding (SELECTING, INIT-REBOOT, rapid commit), after which a client probes. */
function bound(input: DecideInput, fresh: boolean): Lease {
  const { binding, network, now } = input;
  const boundAt = fresh ? new Date(now).toISOString() : input.lease?.bound_at;
  return {
    mac: binding.mac,
    ip: binding.ip,
    instance: binding.instance,
    network: network.name,
    expires: isoAfter(now, network.leaseSeconds),
    state: 'bound',
    ...(boundAt !== undefined ? { bound_at: boundAt } : {}),
  };
}

function ack(input: DecideInput, fresh: boolean): Decision {
  const spec = grant(input, 'ACK');
  const to = destination(input.packet, 'ACK', input.binding.ip);
  return { reply: { spec, to }, lease: bound(input, fresh) };
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
  if (input.packet.options.rapidCommit) return ack(input, true);
  const spec = grant(input, 'OFFER');
  return { reply: { spec, to: destination(input.packet, 'OFFER', input.binding.ip) } };
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
    return ack(input, true);
  }
  if (holdsDecline(input.lease, input.now)) return { reason: 'declined-hold' };
  if (requested !== undefined && packet.ciaddr === ZERO) {
    // INIT-REBOOT: the client checks an address it remembers.
    if (!inSubnet(network, requested))
      return nak(input, `requested address ${requested} is not on network ${network.subnet}`);
    if (requested !== binding.ip)
      return nak(input, `requested address ${requested} is not this client's address`);
    return ack(input, true);
  }
  if (packet.ciaddr !== ZERO) {
    // RENEWING (unicast) or REBINDING (broadcast): the client holds ciaddr.
    if (packet.ciaddr !== binding.ip)
      return nak(input, `address ${packet.ciaddr} is not this client's address`);
    return ack(input, false);
  }
  return { reason: 'request-without-address' };
}

/**
 * Believed only when it holds together as the chaddr's own probe result: from
 * a client with no address (source and ciaddr 0.0.0.0, RFC 2131 table 5),
 * naming the chaddr's assigned IP, soon after an ACK that gave it. A running
 * guest's lease cannot be parked by a DECLINE sent in its name later.
 */
function decline(input: DecideInput): Decision {
  const { packet, binding, network, now } = input;
  const opts = packet.options;
  if (opts.serverId !== undefined && opts.serverId !== network.serverId) return { reason: 'other-server' };
  if (input.source !== ZERO || packet.ciaddr !== ZERO) return { reason: 'decline-not-from-unbound-client' };
  if (opts.requestedIp !== binding.ip) return { reason: 'decline-not-ours' };
  const boundAt = input.lease?.bound_at === undefined ? Number.NaN : Date.parse(input.lease.bound_at);
  const window = (network.declineWindowSeconds ?? DECLINE_WINDOW_SECONDS) * 1000;
  if (!(now - boundAt >= 0 && now - boundAt <= window)) return { reason: 'decline-without-fresh-ack' };
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

/** Only from the assigned address, naming it (RFC 2131 §4.4.6: unicast from the client's own ciaddr). */
function release(input: DecideInput): Decision {
  const { packet, binding, network, now } = input;
  if (packet.options.serverId !== undefined && packet.options.serverId !== network.serverId)
    return { reason: 'other-server' };
  if (packet.ciaddr !== binding.ip) return { reason: 'release-not-ours' };
  if (input.source !== binding.ip) return { reason: 'release-not-from-assigned-ip' };
  if (input.lease === undefined) return { reason: 'release-without-lease' };
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
