// The shared half of an endpoint and a netns guest: a namespace, and a veth
// whose root end is a bridge port and whose other end lives in the namespace.
// Each helper reads first and only changes what differs.
import { BerthError } from '../../base/errors.js';
import type { Reverter } from '../reverter.js';
import { ipv6DisableKey } from './bridge.js';
import type { LinkInfo, LinkOps } from './link-ops.js';
import { setPortVlan } from './vlan.js';

export async function ensureNetns(ops: LinkOps, r: Reverter, netns: string): Promise<void> {
  if ((await ops.listNetns()).includes(netns)) {
    await ops.ensureNetnsEtc(netns);
    return;
  }
  await ops.addNetns(netns);
  r.add(`network namespace "${netns}"`, () => ops.deleteNetns(netns));
}

export interface VethIntoNetns {
  root: string;
  netns: string;
  peer: string;
  mtu: number;
  peerMac?: string;
}

/**
 * Makes the pair exist. Half a pair (one end deleted by hand, or the namespace
 * recreated) is removed and rebuilt, since a veth's ends cannot be re-paired.
 */
export async function ensureVethIntoNetns(
  ops: LinkOps,
  r: Reverter,
  v: VethIntoNetns,
): Promise<{ root: LinkInfo; peer: LinkInfo }> {
  let root = await ops.getLink(v.root);
  if (root && root.kind !== 'veth')
    throw new BerthError('BERTH_ERR_CONFLICT', `"${v.root}" already exists but is not a veth`);
  let peer = await ops.getLink(v.peer, v.netns);
  if (peer && peer.kind !== 'veth') {
    throw new BerthError(
      'BERTH_ERR_CONFLICT',
      `"${v.peer}" in network namespace "${v.netns}" already exists but is not a veth`,
    );
  }
  if (!root || !peer) {
    if (root) await ops.deleteLink(v.root);
    if (peer) await ops.deleteLink(v.peer, v.netns);
    await ops.createVeth(v.root, v.peer, {
      peerNetns: v.netns,
      mtu: v.mtu,
      ...(v.peerMac ? { peerMac: v.peerMac } : {}),
    });
    r.add(`veth "${v.root}"`, () => ops.deleteLink(v.root));
    root = await ops.getLink(v.root);
    peer = await ops.getLink(v.peer, v.netns);
    if (!root || !peer)
      throw new BerthError(
        'BERTH_ERR_HOST_OP',
        `could not create veth "${v.root}": it vanished after creation`,
      );
  }
  return { root, peer };
}

/** The root end as a bridge port: MTU, no IPv6 (so no link-local address), master, pvid, up. */
export async function attachPort(
  ops: LinkOps,
  port: LinkInfo,
  bridge: string,
  mtu: number,
  vid: number | undefined,
): Promise<void> {
  if (port.mtu !== mtu) await ops.setMtu(port.name, mtu);
  const [v6] = await ops.readSysctl([ipv6DisableKey(port.name)]);
  if (v6 !== '1') await ops.writeSysctl({ [ipv6DisableKey(port.name)]: '1' });
  if (port.master !== bridge) await ops.setMaster(port.name, bridge);
  if (vid !== undefined) await setPortVlan(ops, port.name, vid);
  if (!port.up) await ops.setLinkUp(port.name);
}

/** Writes only the sysctls whose value differs. */
export async function ensureSysctls(
  ops: LinkOps,
  values: Record<string, string>,
  netns?: string,
): Promise<void> {
  const keys = Object.keys(values);
  const have = await ops.readSysctl(keys, netns);
  const diff: Record<string, string> = {};
  keys.forEach((k, i) => {
    if (have[i] !== values[k]) diff[k] = values[k] as string;
  });
  if (Object.keys(diff).length > 0) await ops.writeSysctl(diff, netns);
}

/** Runs the Reverter on failure and rethrows the first cause, with undo failures attached. */
export async function withRevert<T>(r: Reverter, fn: () => Promise<T>): Promise<T> {
  try {
    const out = await fn();
    r.success();
    return out;
  } catch (err) {
    const undo = await r.fail();
    if (undo.length > 0 && err instanceof Error) {
      err.message += ` (and ${undo.map((e) => e.message).join('; ')})`;
    }
    throw err;
  }
}

/** Deletes each part, carrying on past failures; a missing part is success. */
export async function removeParts(parts: [string, () => Promise<void>][]): Promise<void> {
  const errors: Error[] = [];
  for (const [, fn] of parts) {
    try {
      await fn();
    } catch (err) {
      errors.push(err instanceof Error ? err : new Error(String(err)));
    }
  }
  if (errors.length > 0) {
    throw new AggregateError(
      errors,
      `could not remove ${parts.map(([what]) => what).join(', ')}: ${errors.map((e) => e.message).join('; ')}`,
    );
  }
}
