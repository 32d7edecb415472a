// Why the guard drops a frame, and how each drop is counted and logged.
// Every drop rule counts in a named counter (exact, what `network show` and
// the metrics read) and then jumps to the log chain of its reason, which logs
// to this berthd's NFLOG group at most 10 frames a second per input port
// (a dynamic set keyed by iifname holds one token bucket per port), then
// drops. So a flood costs the log reader a bounded rate, never the counters
// their precision.

/** Refusals at a guest's own port, counted per port (`<port>.<reason>`). */
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

/**
 * Refusals at a network's edges, counted per network under its endpoint port
 * (`<endpoint>.<reason>`): frames toward the endpoint that are not a local
 * guest's (port . MAC . IP), frames of the endpoint toward anything but a
 * guest port, and frames toward guests from uplink or foreign ports that
 * serve DHCP or router advertisements or claim a service or guest address.
 */
export const EDGE_REASONS = [
  'edge-to-endpoint',
  'endpoint-egress',
  'edge-dhcp-server',
  'edge-ra',
  'edge-service-claim',
  'edge-guest-claim',
] as const;
export type EdgeReason = (typeof EDGE_REASONS)[number];

/**
 * Drops that belong to no desired port or network: frames from unguarded
 * owned ports, steered DHCP copies, frames to the host, and the fail-closed
 * fallbacks for owned endpoint or guest port names the guard has no entry for.
 */
export const TABLE_COUNTERS = [
  'unguarded',
  'dhcp-steer',
  'dhcp-reply-steer',
  'to-host',
  'edge-to-endpoint',
  'endpoint-egress',
  'edge-unmapped',
] as const;
export type TableCounter = (typeof TABLE_COUNTERS)[number];

export type GuardReason = DropReason | EdgeReason | TableCounter;

/** Every reason that can appear in a log prefix. */
export const GUARD_REASONS: readonly GuardReason[] = [
  ...new Set<GuardReason>([...DROP_REASONS, ...EDGE_REASONS, ...TABLE_COUNTERS]),
];

/** NFLOG prefixes read `berth <reason> `. */
export const LOG_PREFIX = 'berth ';
export const LOG_CHAIN_PREFIX = 'log_';
export const RATE_SET_PREFIX = 'rl_';
const LOG_RATE = 'limit rate 10/second burst 20 packets';

function ident(reason: GuardReason): string {
  return reason.replaceAll('-', '_');
}

export function logChain(reason: GuardReason): string {
  return `${LOG_CHAIN_PREFIX}${ident(reason)}`;
}

/**
 * Drops that are the guard doing its routine job, not refusing anyone: the
 * copies of a DHCP broadcast that need not reach every port. A boot storm
 * makes thousands a second of them, and an audit record per port and second
 * for each would bury the refusals, so they are counted and never logged.
 */
export const ROUTINE_REASONS: ReadonlySet<GuardReason> = new Set<GuardReason>([
  'dhcp-steer',
  'dhcp-reply-steer',
]);

/** The tail of every drop rule: count exactly, then log (rate-limited) and drop; routine drops only count. */
export function dropTo(counter: string, reason: GuardReason): string {
  if (ROUTINE_REASONS.has(reason)) return `counter name "${counter}" drop`;
  return `counter name "${counter}" goto ${logChain(reason)}`;
}

/** The rate-limit sets, log chains and their rules, for the table `t` ("bridge <name>"). */
export function logCommands(t: string, group: number): { objects: string[]; rules: string[] } {
  const objects: string[] = [];
  const rules: string[] = [];
  for (const reason of GUARD_REASONS) {
    if (ROUTINE_REASONS.has(reason)) continue;
    const set = `${RATE_SET_PREFIX}${ident(reason)}`;
    const chain = logChain(reason);
    objects.push(`add set ${t} ${set} { type ifname; flags dynamic; timeout 10s; }`);
    objects.push(`add chain ${t} ${chain}`);
    rules.push(
      `add rule ${t} ${chain} add @${set} { iifname ${LOG_RATE} } log prefix "${LOG_PREFIX}${reason} " group ${group}`,
    );
    rules.push(`add rule ${t} ${chain} drop`);
  }
  return { objects, rules };
}
