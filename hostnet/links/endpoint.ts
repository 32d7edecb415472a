// A network's endpoint: its own namespace, joined to the network's bridge by a
// veth whose inner end (ep0) carries the service address and 169.254.169.254.
// DHCP and metadata for that network run in there and hear only that network,
// and overlapping tenant subnets never meet in one routing table.
import { Reverter } from '../reverter.js';
import type { LinkOps } from './link-ops.js';
import {
  attachPort,
  ensureNetns,
  ensureSysctls,
  ensureVethIntoNetns,
  removeParts,
  withRevert,
} from './plug.js';

export const ENDPOINT_IFNAME = 'ep0';
export const METADATA_IP = '169.254.169.254';

export interface EndpointSpec {
  network: string;
  bridge: string;
  /** Names.endpointNetns(network). */
  netns: string;
  /** Names.endpointVeth(network): the root end, a port of the bridge. */
  veth: string;
  serviceIp: string;
  prefixLen: number;
  mtu: number;
  /** The network's VID in filtering mode: the veth gets it as pvid, untagged. */
  vid?: number;
}

/**
 * arp_ignore=1: answer ARP only for an address on the interface asked, so the
 * endpoint never claims addresses it does not hold. arp_announce=2: ARP with the
 * best local source for the target (the service address, not 169.254.169.254).
 * IPv6 stays off so the endpoint sends no RS/DAD noise onto tenant bridges.
 */
export function endpointSysctls(): Record<string, string> {
  return {
    'net/ipv4/conf/all/arp_ignore': '1',
    'net/ipv4/conf/all/arp_announce': '2',
    [`net/ipv4/conf/${ENDPOINT_IFNAME}/arp_ignore`]: '1',
    [`net/ipv4/conf/${ENDPOINT_IFNAME}/arp_announce`]: '2',
    [`net/ipv6/conf/${ENDPOINT_IFNAME}/disable_ipv6`]: '1',
  };
}

export async function ensureEndpoint(ops: LinkOps, spec: EndpointSpec): Promise<void> {
  const r = new Reverter();
  await withRevert(r, async () => {
    await ensureNetns(ops, r, spec.netns);
    const { root, peer } = await ensureVethIntoNetns(ops, r, {
      root: spec.veth,
      netns: spec.netns,
      peer: ENDPOINT_IFNAME,
      mtu: spec.mtu,
    });
    await attachPort(ops, root, spec.bridge, spec.mtu, spec.vid);

    const lo = await ops.getLink('lo', spec.netns);
    if (!lo?.up) await ops.setLinkUp('lo', spec.netns);
    if (peer.mtu !== spec.mtu) await ops.setMtu(ENDPOINT_IFNAME, spec.mtu, spec.netns);
    await ensureSysctls(ops, endpointSysctls(), spec.netns);
    if (!peer.up) await ops.setLinkUp(ENDPOINT_IFNAME, spec.netns);

    const want = [`${spec.serviceIp}/${spec.prefixLen}`, `${METADATA_IP}/32`];
    const have = peer.ipv4.map((a) => `${a.address}/${a.prefixLen}`);
    for (const cidr of want)
      if (!have.includes(cidr)) await ops.addAddress(ENDPOINT_IFNAME, cidr, spec.netns);
    for (const cidr of have)
      if (!want.includes(cidr)) await ops.deleteAddress(ENDPOINT_IFNAME, cidr, spec.netns);

    // Every reply leaves on ep0, including answers to 255.255.255.255 (DHCP):
    // without a route for it the kernel finds no way out of a namespace that
    // only has connected routes.
    const routes = await ops.listRoutes(spec.netns);
    if (!routes.some((rt) => rt.dst === 'default' && rt.dev === ENDPOINT_IFNAME)) {
      await ops.replaceDeviceRoute('default', ENDPOINT_IFNAME, spec.netns);
    }
  });
}

/** Removes the veth and the namespace; parts already gone are fine. */
export async function removeEndpoint(
  ops: LinkOps,
  spec: Pick<EndpointSpec, 'netns' | 'veth'>,
): Promise<void> {
  await removeParts([
    [`veth "${spec.veth}"`, () => ops.deleteLink(spec.veth)],
    [`network namespace "${spec.netns}"`, () => ops.deleteNetns(spec.netns)],
  ]);
}
