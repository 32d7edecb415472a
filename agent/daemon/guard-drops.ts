// Wires the guard's drop log to the audit log: every guard drop becomes a
// `guard.drop` record with the port's class (agent/services/guard-audit.ts).
import type { Logger } from 'pino';
import { DropLog } from '../../hostnet/guard/drop-log.js';
import type { AuditLog } from '../audit/audit-log.js';
import { classifyPort, GuardDropAudit, type PortDirectoryView } from '../services/guard-audit.js';
import type { Services } from './services.js';

function directoryOf(s: Services): PortDirectoryView {
  return {
    guest(ifname) {
      const port = s.instances.portByIfname(ifname);
      if (!port) return undefined;
      return { instance: s.instances.nameOf(port.instance) ?? port.instance, network: port.network };
    },
    networks() {
      return s.networks.all().map((net) => {
        const uplinks: string[] = [];
        if (net.uplink) {
          uplinks.push(net.uplink, s.names.trunkBridge(net.uplink));
          if (net.vlan !== undefined) uplinks.push(s.names.vlanSubinterface(net.uplink, net.vlan));
        }
        return { name: net.name, endpoint: s.driver.placement(net).endpointVeth, uplinks };
      });
    },
  };
}

export function startGuardDropAudit(s: Services, audit: AuditLog, log: Logger): { stop(): void } {
  const glog = log.child({ component: 'guard-drops' });
  const folding = new GuardDropAudit({
    append: (input) => audit.append(input),
    classify: (port) => classifyPort(port, directoryOf(s)),
    onError: (err) => glog.error({ err: String(err) }, 'could not append audit record'),
  });
  const reader = new DropLog({ group: s.names.logGroup(), onDrop: folding.drop, logger: glog });
  reader.start();
  return {
    stop() {
      reader.stop();
      folding.close();
    },
  };
}
