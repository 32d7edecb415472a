// Wires the security-group enforcer to what it enforces: the groups, this
// host's guest ports, and every identity a source may name (this host's
// records and, in cluster mode, every host's directory entries).
import type { Logger } from 'pino';
import { BerthError } from '../../base/errors.js';
import type { NetworkDriver } from '../../hostnet/driver.js';
import type { SecGroupDriver } from '../../hostnet/secgroups/driver.js';
import type { SgLocalPort, SgMember } from '../secgroups/compile.js';
import { SecGroupEnforcer } from '../secgroups/enforcer.js';
import { DIRECTORY_PREFIX, type DirectoryEntry, type InstanceRecord } from '../services/instances.js';
import type { NetworkRecord } from '../services/networks.js';
import type { SecGroupService } from '../services/secgroups.js';
import type { ClusterRuntime } from './cluster.js';

export interface SecGroupWiring {
  secgroups: Pick<SecGroupService, 'all' | 'onChange'>;
  /** Late-bound: the instance service is built after the enforcer it calls. */
  instances: () => readonly InstanceRecord[];
  networks: () => readonly NetworkRecord[];
  driver: Pick<NetworkDriver, 'placement'>;
  cluster: ClusterRuntime | undefined;
  sgDriver: SecGroupDriver;
  log: Logger;
}

function localPorts(w: SecGroupWiring): SgLocalPort[] {
  const out: SgLocalPort[] = [];
  const nets = new Map(w.networks().map((n) => [n.name, n]));
  for (const rec of w.instances()) {
    if (rec.state === 'deleting') continue;
    for (const nic of rec.nics) {
      const net = nets.get(nic.network);
      if (!net) continue;
      const place = w.driver.placement(net);
      out.push({
        instance: rec.id,
        network: nic.network,
        ifname: nic.port,
        bridge: place.bridge,
        // fdbVlan is the port's VID in vlan_mode filtering only (a subinterface bridge is one VLAN's own).
        ...(place.fdbVlan !== undefined ? { vlan: place.fdbVlan } : {}),
        mac: nic.mac,
        ip: nic.ip,
        endpointPorts: [place.endpointVeth],
      });
    }
  }
  return out;
}

/** Each network's uplink port on this host's bridge: where other hosts' guests arrive. */
function uplinks(w: SecGroupWiring): Map<string, string> {
  const out = new Map<string, string>();
  for (const net of w.networks()) {
    const port = w.driver.placement(net).uplinkPort;
    if (port !== undefined) out.set(net.name, port);
  }
  return out;
}

function members(w: SecGroupWiring): SgMember[] {
  const byId = new Map<string, SgMember>();
  for (const e of w.cluster?.mirror.list<DirectoryEntry>(DIRECTORY_PREFIX) ?? [])
    byId.set(e.value.id, e.value);
  // This host's records win over its own directory entries: they are written first.
  for (const rec of w.instances()) if (rec.state !== 'deleting') byId.set(rec.id, rec);
  return [...byId.values()];
}

export function buildSecGroupEnforcer(w: SecGroupWiring): SecGroupEnforcer {
  const enforcer = new SecGroupEnforcer({
    driver: w.sgDriver,
    groups: () => w.secgroups.all(),
    members: () => members(w),
    localPorts: () => localPorts(w),
    uplinks: () => uplinks(w),
    log: w.log,
  });
  w.secgroups.onChange((c) =>
    enforcer.poke(c.kind === 'reloaded' ? 'groups reloaded' : `group ${c.group} ${c.kind}`),
  );
  if (w.cluster) {
    w.cluster.mirror.onChange(DIRECTORY_PREFIX, () => enforcer.poke('cluster directory'));
    w.cluster.mirror.on('connected', () => enforcer.poke('cluster reconnected'));
  }
  return enforcer;
}

/**
 * Applies now and fails when the host could not be made to match: a create
 * rolls back rather than plug a guest its groups do not yet guard.
 */
export async function enforceNow(enforcer: SecGroupEnforcer, what: string): Promise<void> {
  await enforcer.flush();
  if (enforcer.lastErrors.length > 0)
    throw new BerthError(
      'BERTH_ERR_HOST_OP',
      `could not apply security groups for ${what}: ${enforcer.lastErrors.join('; ')}`,
    );
}
