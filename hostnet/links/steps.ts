// A network's host plumbing as data: a plan is a list of steps, and each step
// reads the kernel before it writes, so applying a plan twice changes nothing
// the second time and a reconcile pass repairs only what drifted (an uplink
// someone took out of its bridge goes back in). VLAN plans (vlan.ts) and flat
// uplink plans (flat.ts) share these steps.
import { BerthError, couldNot } from '../../base/errors.js';
import { ensureBridge } from './bridge.js';
import type { LinkOps, VlanFlags } from './link-ops.js';

export type LinkStep =
  | { op: 'ensureBridge'; name: string; mtu: number; vlanFiltering: boolean }
  | { op: 'ensureVlanSubinterface'; uplink: string; name: string; vid: number }
  | {
      op: 'checkUplink';
      /** The network asking, for the error message. */
      network: string;
      name: string;
      /** The only bridge the uplink may already be a port of. */
      bridge: string;
      /** The network's MTU: the uplink must carry frames at least this large. */
      mtu: number;
    }
  | { op: 'setMaster'; name: string; master: string }
  /** A bridge takes the smallest MTU of its ports until one is set by hand: restated after enslaving. */
  | { op: 'ensureMtu'; name: string; mtu: number }
  | { op: 'bridgeVlanAdd'; dev: string; vid: number; flags: VlanFlags }
  | { op: 'setLinkUp'; name: string };

export async function applySteps(ops: LinkOps, steps: readonly LinkStep[]): Promise<void> {
  for (const step of steps) await applyStep(ops, step);
}

export async function applyStep(ops: LinkOps, step: LinkStep): Promise<void> {
  switch (step.op) {
    case 'ensureBridge':
      await ensureBridge(ops, step.name, { mtu: step.mtu, vlanFiltering: step.vlanFiltering });
      return;
    case 'ensureVlanSubinterface': {
      const link = await ops.getLink(step.name);
      if (link && link.kind !== 'vlan')
        throw new BerthError('BERTH_ERR_CONFLICT', `"${step.name}" already exists but is not a VLAN link`);
      if (!link) await ops.createVlanSubinterface(step.uplink, step.name, step.vid);
      return;
    }
    case 'checkUplink':
      await checkUplink(ops, step);
      return;
    case 'setMaster': {
      const link = await ops.getLink(step.name);
      if (!link)
        throw new BerthError(
          'BERTH_ERR_NOT_FOUND',
          `could not enslave link "${step.name}": it does not exist`,
        );
      if (link.master !== step.master) await ops.setMaster(step.name, step.master);
      return;
    }
    case 'ensureMtu': {
      const link = await ops.getLink(step.name);
      if (link && link.mtu !== step.mtu) await ops.setMtu(step.name, step.mtu);
      return;
    }
    case 'bridgeVlanAdd': {
      const have = await ops.listPortVlans(step.dev);
      const v = have.find((x) => x.vid === step.vid);
      if (!v || v.pvid !== Boolean(step.flags.pvid) || v.untagged !== Boolean(step.flags.untagged)) {
        await ops.bridgeVlanAdd(step.dev, step.vid, step.flags);
      }
      return;
    }
    case 'setLinkUp': {
      const link = await ops.getLink(step.name);
      if (!link?.up) await ops.setLinkUp(step.name);
      return;
    }
  }
}

/**
 * The uplink is someone else's interface: berth only makes it a port of the
 * network's bridge. So it must exist, must not be a port of any other bridge
 * (taking it away would cut whatever uses it), must not be a bridge itself,
 * and must carry the network's MTU. Runs before anything is created.
 */
async function checkUplink(ops: LinkOps, step: Extract<LinkStep, { op: 'checkUplink' }>): Promise<void> {
  const refuse = (code: 'BERTH_ERR_INVALID_ARGUMENT' | 'BERTH_ERR_CONFLICT', field: string, why: string) =>
    couldNot(code, 'create', 'network', step.network, why, { field });
  const link = await ops.getLink(step.name);
  if (!link)
    throw refuse('BERTH_ERR_INVALID_ARGUMENT', 'uplink', `uplink "${step.name}" does not exist on this host`);
  if (link.kind === 'bridge')
    throw refuse(
      'BERTH_ERR_INVALID_ARGUMENT',
      'uplink',
      `uplink "${step.name}" is a bridge; name the interface that leads off the host instead`,
    );
  if (link.master !== undefined && link.master !== step.bridge)
    throw refuse(
      'BERTH_ERR_CONFLICT',
      'uplink',
      `uplink "${step.name}" is already a port of bridge "${link.master}"; berth does not take it away (run "ip link set ${step.name} nomaster" if it should be this network's)`,
    );
  if (link.mtu < step.mtu)
    throw refuse(
      'BERTH_ERR_INVALID_ARGUMENT',
      'mtu',
      `uplink "${step.name}" has MTU ${link.mtu}, below the network's MTU ${step.mtu}; guests would send frames the uplink cannot carry (raise the uplink's MTU, or create the network with --mtu ${link.mtu} or lower)`,
    );
}
