// Wires the security-group enforcer to what it enforces: the groups, this
// host's guest ports, and every identity a source may name (this host's
// records and, in cluster mode, every host's directory entries).
import type { Logger } from 'pino';
import type { SecGroupDriver } from '../../hostnet/secgroups/driver.js';
import type { SecGroup } from '../api/types.js';
import type { SgLocalPort, SgMember } from '../secgroups/compile.js';
import { SecGroupEnforcer } from '../secgroups/enforcer.js';
import { DIRECTORY_PREFIX, type DirectoryEntry } from '../services/instances.js';
import type { Services } from './services.js';

/** What the enforcer needs of the group service. */
export interface GroupSource {
  all(): readonly SecGroup[];
  onChange(listener: (why: string) => void): void;
}

const SECGROUP_PREFIX = 'secgroup/';

function localPorts(services: Services): SgLocalPort[] {
  const out: SgLocalPort[] = [];
  const nets = new Map(services.networks.all().map((n) => [n.name, n]));
  for (const rec of services.instances.all()) {
    if (rec.state === 'deleting') continue;
    for (const nic of rec.nics) {
      const net = nets.get(nic.network);
      if (!net) continue;
      const place = services.driver.placement(net);
      out.push({
        instance: rec.id,
        network: nic.network,
        ifname: nic.port,
        bridge: place.bridge,
        mac: nic.mac,
        ip: nic.ip,
        endpointPorts: [place.endpointVeth],
      });
    }
  }
  return out;
}

function members(services: Services): SgMember[] {
  const byId = new Map<string, SgMember>();
  for (const e of services.cluster?.mirror.list<DirectoryEntry>(DIRECTORY_PREFIX) ?? [])
    byId.set(e.value.id, e.value);
  // This host's records win over its own directory entries: they are written first.
  for (const rec of services.instances.all()) if (rec.state !== 'deleting') byId.set(rec.id, rec);
  return [...byId.values()];
}

export function startSecGroups(
  services: Services,
  groups: GroupSource,
  driver: SecGroupDriver,
  log: Logger,
): SecGroupEnforcer {
  const enforcer = new SecGroupEnforcer({
    driver,
    groups: () => groups.all(),
    members: () => members(services),
    localPorts: () => localPorts(services),
    log: log.child({ component: 'secgroups' }),
  });
  groups.onChange((why) => enforcer.poke(why));
  services.instanceHooks.push((rec) => enforcer.poke(`instance ${rec.name}`));
  services.networkHooks.realised.push((net) => enforcer.poke(`network ${net.name}`));
  const cluster = services.cluster;
  if (cluster) {
    cluster.mirror.onChange(DIRECTORY_PREFIX, () => enforcer.poke('cluster directory'));
    cluster.mirror.onChange(SECGROUP_PREFIX, () => enforcer.poke('cluster security groups'));
    cluster.mirror.on('connected', () => enforcer.poke('cluster reconnected'));
  }
  enforcer.poke('berthd start');
  return enforcer;
}
