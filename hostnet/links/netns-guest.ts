// The netns guest runtime: a network namespace plugged into a bridge port,
// the same agent path as a libvirt guest minus the VM. The root end of the
// veth is the port (so guard rules keyed by its name apply); the inner end is
// eth0 with the guest's assigned MAC and no address until the guest's own
// DHCP client asks for one. IPv6 stays as a VM's would be, so the guard's
// IPv6 rules meet real link-local traffic.
import { Reverter } from '../reverter.js';
import type { LinkOps } from './link-ops.js';
import { attachPort, ensureNetns, ensureVethIntoNetns, removeParts, withRevert } from './plug.js';

export const GUEST_IFNAME = 'eth0';

export interface NetnsGuestSpec {
  /** Names.guestNetns(instance). */
  netns: string;
  /** Names.port(instanceId, nic): the root-side ifname. */
  port: string;
  bridge: string;
  mac: string;
  mtu: number;
  /** The network's VID in filtering mode. */
  vid?: number;
}

export async function ensureNetnsGuest(ops: LinkOps, spec: NetnsGuestSpec): Promise<void> {
  const r = new Reverter();
  await withRevert(r, async () => {
    await ensureNetns(ops, r, spec.netns);
    const { root, peer } = await ensureVethIntoNetns(ops, r, {
      root: spec.port,
      netns: spec.netns,
      peer: GUEST_IFNAME,
      mtu: spec.mtu,
      peerMac: spec.mac,
    });
    await attachPort(ops, root, spec.bridge, spec.mtu, spec.vid);

    const lo = await ops.getLink('lo', spec.netns);
    if (!lo?.up) await ops.setLinkUp('lo', spec.netns);
    if (peer.mac !== spec.mac) await ops.setMac(GUEST_IFNAME, spec.mac, spec.netns);
    if (peer.mtu !== spec.mtu) await ops.setMtu(GUEST_IFNAME, spec.mtu, spec.netns);
    if (!peer.up) await ops.setLinkUp(GUEST_IFNAME, spec.netns);
  });
}

export async function removeNetnsGuest(
  ops: LinkOps,
  spec: Pick<NetnsGuestSpec, 'netns' | 'port'>,
): Promise<void> {
  await removeParts([
    [`port "${spec.port}"`, () => ops.deleteLink(spec.port)],
    [`network namespace "${spec.netns}"`, () => ops.deleteNetns(spec.netns)],
  ]);
}
