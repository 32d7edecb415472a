// 802.1Q networks in two shapes, chosen by config and by what the kernel can
// really do: one VLAN-filtering trunk bridge per uplink (a port's pvid picks its
// VLAN), or an uplink.vid subinterface on a bridge per VLAN network. A kernel
// that cannot tag makes VLAN networks fail loudly; berth never falls back to
// an untagged bridge, which would join tenants that must stay apart.
import { randomBytes } from 'node:crypto';
import { BerthError, couldNot } from '../../base/errors.js';
import type { Names } from '../names.js';
import type { LinkOps } from './link-ops.js';
import { applySteps, type LinkStep } from './steps.js';

export type { LinkStep } from './steps.js';

export type VlanMode = 'filtering' | 'subinterface';
export type VlanModeSetting = VlanMode | 'auto';

export interface VlanSupport {
  /** The 8021q module: uplink.vid subinterfaces. */
  dot1q: boolean;
  /** CONFIG_BRIDGE_VLAN_FILTERING: per-port VLANs on one bridge. */
  vlanFiltering: boolean;
}

export const FEATURE_NAME: Record<VlanMode, string> = {
  filtering: 'bridge vlan_filtering',
  subinterface: '8021q',
};

export interface VlanPlan {
  mode: VlanMode;
  network: string;
  /** The trunk interface that carries the tagged frames. */
  uplink: string;
  vid: number;
  /** The bridge this network's ports (guests, endpoint) attach to. */
  bridge: string;
  /** The pvid each port needs: the VID in filtering mode, none in subinterface mode. */
  portVid: number | undefined;
  steps: LinkStep[];
}

/** Tries the real thing on a throwaway bridge with the owned prefix, then removes it. */
export async function detectVlanSupport(ops: LinkOps, names: Names): Promise<VlanSupport> {
  const tag = randomBytes(2).toString('hex');
  const probe = `${names.prefix}tprb${tag}`;
  const sub = `${names.prefix}vprb${tag}`;
  await ops.createBridge(probe, { options: { stpState: 0 } });
  try {
    let vlanFiltering = false;
    try {
      await ops.setBridgeOptions(probe, { vlanFiltering: true });
      vlanFiltering = (await ops.getLink(probe))?.bridge?.vlanFiltering === true;
    } catch {
      vlanFiltering = false;
    }
    let dot1q = false;
    try {
      // Creating the link loads 8021q on demand where it is a module.
      await ops.createVlanSubinterface(probe, sub, 4094);
      dot1q = (await ops.getLink(sub))?.kind === 'vlan';
    } catch {
      dot1q = false;
    }
    return { dot1q, vlanFiltering };
  } finally {
    await ops.deleteLink(sub);
    await ops.deleteLink(probe);
  }
}

function lacks(mode: VlanMode, support: VlanSupport): boolean {
  return mode === 'filtering' ? !support.vlanFiltering : !support.dot1q;
}

/** Picks the mode for a VLAN network, or fails naming the kernel feature that is missing. */
export function chooseVlanMode(setting: VlanModeSetting, support: VlanSupport, network: string): VlanMode {
  if (setting === 'auto') {
    if (support.vlanFiltering) return 'filtering';
    if (support.dot1q) return 'subinterface';
    throw couldNot(
      'BERTH_ERR_KERNEL_FEATURE',
      'create',
      'VLAN network',
      network,
      `the kernel has neither "${FEATURE_NAME.filtering}" nor "${FEATURE_NAME.subinterface}"; berth does not fall back to untagged`,
    );
  }
  if (lacks(setting, support)) throw missingFeature(setting, network);
  return setting;
}

function missingFeature(mode: VlanMode, network: string): BerthError {
  return couldNot(
    'BERTH_ERR_KERNEL_FEATURE',
    'create',
    'VLAN network',
    network,
    `${mode} mode needs the kernel feature "${FEATURE_NAME[mode]}", which this kernel lacks; berth does not fall back to untagged`,
  );
}

export function checkVid(vid: number): number {
  if (!Number.isInteger(vid) || vid < 1 || vid > 4094) {
    throw new BerthError(
      'BERTH_ERR_INVALID_ARGUMENT',
      `invalid VLAN ID ${vid} (must be between 1 and 4094)`,
      { field: 'vid' },
    );
  }
  return vid;
}

/** The host changes that make `network` (VLAN `vid` on `uplink`) exist, as data. */
export function planVlanNetwork(
  names: Names,
  mode: VlanMode,
  network: string,
  uplink: string,
  vid: number,
  opts: { mtu?: number } = {},
): VlanPlan {
  checkVid(vid);
  const mtu = opts.mtu ?? 1500;
  if (mode === 'filtering') {
    const trunk = names.trunkBridge(uplink);
    return {
      mode,
      network,
      uplink,
      vid,
      bridge: trunk,
      portVid: vid,
      steps: [
        { op: 'ensureBridge', name: trunk, mtu, vlanFiltering: true },
        { op: 'setMaster', name: uplink, master: trunk },
        { op: 'bridgeVlanAdd', dev: uplink, vid, flags: {} },
        { op: 'setLinkUp', name: uplink },
      ],
    };
  }
  const bridge = names.bridge(network);
  const sub = names.vlanSubinterface(uplink, vid);
  return {
    mode,
    network,
    uplink,
    vid,
    bridge,
    portVid: undefined,
    steps: [
      // The tagged link first: a kernel without 8021q then leaves nothing behind.
      { op: 'ensureVlanSubinterface', uplink, name: sub, vid },
      { op: 'ensureBridge', name: bridge, mtu, vlanFiltering: false },
      { op: 'setMaster', name: sub, master: bridge },
      { op: 'setLinkUp', name: uplink },
      { op: 'setLinkUp', name: sub },
    ],
  };
}

/** Applies a plan after checking the kernel can carry it. Each step reads before it writes. */
export async function applyVlanPlan(ops: LinkOps, plan: VlanPlan, support: VlanSupport): Promise<void> {
  if (lacks(plan.mode, support)) throw missingFeature(plan.mode, plan.network);
  await applySteps(ops, plan.steps);
}

/** Puts a port (tap or veth) into exactly one VLAN, untagged with it as pvid. */
export async function setPortVlan(ops: LinkOps, port: string, vid: number): Promise<void> {
  checkVid(vid);
  const have = await ops.listPortVlans(port);
  const mine = have.find((v) => v.vid === vid);
  if (!mine?.pvid || !mine.untagged) await ops.bridgeVlanAdd(port, vid, { pvid: true, untagged: true });
  for (const v of have) if (v.vid !== vid) await ops.bridgeVlanDel(port, v.vid);
}
