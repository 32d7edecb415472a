// Tenant bridges. ensureBridge reads first and writes only what differs, so
// a berthd restart never flaps a bridge or changes its ifindex.
import { createHash } from 'node:crypto';
import { BerthError } from '../../base/errors.js';
import type { BridgeOptions, LinkInfo, LinkOps } from './link-ops.js';

export interface EnsureBridgeOptions {
  /** Defaults to bridgeMac(name). */
  mac?: string;
  mtu: number;
  /** true for the trunk bridge of filtering mode. */
  vlanFiltering?: boolean;
}

/**
 * A locally administered unicast MAC derived from the bridge name. Pinning it
 * stops the kernel from taking the lowest port MAC, which changes as ports come
 * and go and makes neighbours relearn the bridge.
 */
export function bridgeMac(name: string): string {
  const bytes = createHash('sha256').update(`berth-bridge:${name}`).digest().subarray(0, 6);
  bytes[0] = ((bytes[0] as number) & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function ipv6DisableKey(ifname: string): string {
  return `net/ipv6/conf/${ifname}/disable_ipv6`;
}

function wantedOptions(vlanFiltering: boolean): BridgeOptions {
  // vlan_default_pvid 0: a new port is in no VLAN until it gets its network's
  // pvid, so it never leaks into VLAN 1 shared by every other port.
  return vlanFiltering
    ? { stpState: 0, forwardDelay: 0, vlanFiltering: true, vlanDefaultPvid: 0 }
    : { stpState: 0, forwardDelay: 0 };
}

function optionDiff(link: LinkInfo, want: BridgeOptions): BridgeOptions | undefined {
  const have = link.bridge;
  if (!have) return want;
  const diff: BridgeOptions = {};
  if (want.stpState !== undefined && have.stpState !== want.stpState) diff.stpState = want.stpState;
  if (want.forwardDelay !== undefined && have.forwardDelay !== want.forwardDelay)
    diff.forwardDelay = want.forwardDelay;
  if (want.vlanFiltering !== undefined && have.vlanFiltering !== want.vlanFiltering) {
    diff.vlanFiltering = want.vlanFiltering;
    if (want.vlanDefaultPvid !== undefined) diff.vlanDefaultPvid = want.vlanDefaultPvid;
  }
  if (Object.keys(diff).length === 0) return undefined;
  // forward_delay 0 is refused while STP is on, so a diff that touches it also restates STP.
  if (diff.forwardDelay !== undefined && want.stpState !== undefined) diff.stpState = want.stpState;
  return diff;
}

/** Creates the bridge, or converges an existing one; returns the final state. */
export async function ensureBridge(ops: LinkOps, name: string, opts: EnsureBridgeOptions): Promise<LinkInfo> {
  const mac = opts.mac ?? bridgeMac(name);
  const want = wantedOptions(opts.vlanFiltering ?? false);
  let link = await ops.getLink(name);
  if (link && link.kind !== 'bridge') {
    throw new BerthError(
      'BERTH_ERR_CONFLICT',
      `"${name}" already exists but is not a bridge (it is ${link.kind ? `a ${link.kind}` : 'a plain device'})`,
    );
  }
  if (!link) {
    await ops.createBridge(name, { mac, mtu: opts.mtu, options: want });
    link = await ops.getLink(name);
    if (!link)
      throw new BerthError(
        'BERTH_ERR_HOST_OP',
        `could not create bridge "${name}": it vanished after creation`,
      );
  } else {
    const diff = optionDiff(link, want);
    if (diff) await ops.setBridgeOptions(name, diff);
    if (link.mac !== mac) await ops.setMac(name, mac);
    if (link.mtu !== opts.mtu) await ops.setMtu(name, opts.mtu);
  }
  // The host keeps no address on a tenant bridge: it must not be reachable
  // from, or route for, the guests behind it. IPv6 goes off before the link
  // comes up so no link-local address is ever assigned.
  for (const a of link.ipv4) await ops.deleteAddress(name, `${a.address}/${a.prefixLen}`);
  const [v6] = await ops.readSysctl([ipv6DisableKey(name)]);
  if (v6 !== '1') await ops.writeSysctl({ [ipv6DisableKey(name)]: '1' });
  if (!link.up) await ops.setLinkUp(name);
  return (await ops.getLink(name)) ?? link;
}

/** Deletes the bridge; a missing bridge is success. Refuses anything that is not a bridge. */
export async function removeBridge(ops: LinkOps, name: string): Promise<void> {
  const link = await ops.getLink(name);
  if (!link) return;
  if (link.kind !== 'bridge')
    throw new BerthError('BERTH_ERR_CONFLICT', `"${name}" is not a bridge; not deleting it`);
  await ops.deleteLink(name);
}
