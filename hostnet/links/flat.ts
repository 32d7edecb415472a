// Flat (untagged) provider networks: the network's own bridge with a host
// interface (the uplink) as one of its ports, so guests on several hosts
// share one L2 segment. The uplink is not berth's: berth checks it, makes it
// a port of the network's bridge and brings it up, and on removal only takes
// it out of the bridge again; it never deletes it, downs it, or changes its
// MTU or addresses.
//
// An interface can be a port of one bridge only. A flat network makes its
// uplink a port of its own bridge, and a VLAN network in filtering mode makes
// it a port of the uplink's trunk bridge, so two such networks on one uplink
// clash. A VLAN network in subinterface mode does not: the kernel hands tagged
// frames to uplink.vid before the bridge sees them, so flat and tagged
// traffic share the wire as they do on a switch port with a native VLAN.
import { type BerthError, couldNot } from '../../base/errors.js';
import type { Names } from '../names.js';
import type { LinkOps } from './link-ops.js';
import type { LinkStep } from './steps.js';
import type { VlanPlan } from './vlan.js';

export interface FlatPlan {
  mode: 'flat';
  network: string;
  uplink: string;
  /** The network's own bridge, with the uplink as a port. */
  bridge: string;
  /** Untagged: ports need no pvid. */
  portVid: undefined;
  steps: LinkStep[];
}

export type NetworkPlan = VlanPlan | FlatPlan;

/**
 * Refuses an uplink that is one of berth's own interfaces (a bridge, trunk,
 * subinterface, endpoint or guest port): making a guest's or the endpoint's
 * port the uplink would give it the uplink's class in the guard, and a bridge
 * of berth's inside another would join two networks.
 */
export function checkUplinkName(names: Names, network: string, uplink: string): void {
  if (names.owns(uplink))
    throw couldNot(
      'BERTH_ERR_INVALID_ARGUMENT',
      'create',
      'network',
      network,
      `uplink "${uplink}" is one of berth's own interfaces (prefix "${names.prefix}"); name a host interface that leads off the host`,
      { field: 'uplink' },
    );
}

/** The host changes that make flat `network` exist with `uplink` as a port of its bridge, as data. */
export function planFlatNetwork(
  names: Names,
  network: string,
  uplink: string,
  opts: { mtu?: number } = {},
): FlatPlan {
  checkUplinkName(names, network, uplink);
  const mtu = opts.mtu ?? 1500;
  const bridge = names.bridge(network);
  return {
    mode: 'flat',
    network,
    uplink,
    bridge,
    portVid: undefined,
    steps: [
      // Checked first: a refused uplink leaves no bridge behind.
      { op: 'checkUplink', network, name: uplink, bridge, mtu },
      { op: 'ensureBridge', name: bridge, mtu, vlanFiltering: false },
      { op: 'setMaster', name: uplink, master: bridge },
      { op: 'ensureMtu', name: bridge, mtu },
      { op: 'setLinkUp', name: uplink },
    ],
  };
}

/** The port through which a plan's uplink joins its bridge: the uplink, or its VLAN subinterface. */
export function uplinkPortOf(names: Names, plan: NetworkPlan): string {
  return plan.mode === 'subinterface' ? names.vlanSubinterface(plan.uplink, plan.vid) : plan.uplink;
}

/** The bridge a plan makes its uplink a port of; undefined when the uplink is only a VLAN parent. */
export function uplinkBridge(plan: NetworkPlan): string | undefined {
  if (plan.mode === 'flat' || plan.mode === 'filtering') return plan.bridge;
  return undefined;
}

export interface UplinkUse {
  network: string;
  uplink: string;
  /** The bridge the network makes the uplink a port of (uplinkBridge). */
  bridge: string | undefined;
  mode: NetworkPlan['mode'];
}

/** The first other network that needs `mine.uplink` as a port of a different bridge. */
export function findUplinkClash(mine: UplinkUse, others: readonly UplinkUse[]): UplinkUse | undefined {
  if (mine.bridge === undefined) return undefined;
  return others.find(
    (o) =>
      o.network !== mine.network &&
      o.uplink === mine.uplink &&
      o.bridge !== undefined &&
      o.bridge !== mine.bridge,
  );
}

function usedAs(u: UplinkUse): string {
  return u.mode === 'flat'
    ? `flat network "${u.network}" (a port of its bridge "${u.bridge}")`
    : `the VLAN trunk of network "${u.network}" (filtering mode, a port of trunk bridge "${u.bridge}")`;
}

/** BERTH_ERR_CONFLICT naming the network that already holds the uplink. */
export function uplinkClashError(mine: UplinkUse, other: UplinkUse): BerthError {
  const need = mine.mode === 'flat' ? 'in its own bridge' : `in trunk bridge "${mine.bridge}"`;
  return couldNot(
    'BERTH_ERR_CONFLICT',
    'create',
    'network',
    mine.network,
    `uplink "${mine.uplink}" is already used by ${usedAs(other)}; this network would need it ${need}, and an interface can be a port of one bridge only`,
    { field: 'uplink' },
  );
}

/**
 * Takes the uplink out of the network's bridge, and only out of that one:
 * an uplink someone has since put elsewhere is left where it is. Never
 * deletes or downs it: it is not berth's.
 */
export async function releaseUplink(ops: LinkOps, uplink: string, bridge: string): Promise<void> {
  const link = await ops.getLink(uplink);
  if (link?.master === bridge) await ops.setNoMaster(uplink);
}
