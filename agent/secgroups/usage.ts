// What `secgroup show` reports per port: the bridge counters of this host's
// ports whose instance is in the group, for the group's own rules, and what
// the port refused (groups compose, so a drop belongs to the port, not to one
// group). Pure: the enforcer hands it the applied state and one counter read.
import type { SgCounter } from '../../hostnet/secgroups/driver.js';
import type { SecGroupState } from '../../hostnet/secgroups/state.js';
import type { SecGroupPortCounters } from '../api/types.js';
import type { SgMember } from './compile.js';

export function groupUsage(
  group: string,
  applied: SecGroupState,
  members: readonly SgMember[],
  counters: readonly SgCounter[],
): SecGroupPortCounters[] {
  const inGroup = new Map(
    members.filter((m) => m.secgroups?.includes(group)).map((m) => [m.id, m.name] as const),
  );
  const byName = new Map(counters.map((c) => [`${c.ifname}.${c.rule}`, c]));
  const count = (ifname: string, rule: string) => {
    const c = byName.get(`${ifname}.${rule}`);
    return { packets: c?.packets ?? 0, bytes: c?.bytes ?? 0 };
  };
  const out: SecGroupPortCounters[] = [];
  for (const port of applied.ports) {
    const name = inGroup.get(port.instance);
    if (name === undefined) continue;
    const ids = [...new Set(port.rules.filter((r) => r.group === group).map((r) => r.id))].sort();
    out.push({
      instance: name,
      port: port.ifname,
      rules: ids.map((id) => ({ id, ...count(port.ifname, id) })),
      dropped: count(port.ifname, 'drop'),
      invalid: count(port.ifname, 'invalid'),
    });
  }
  return out.sort((a, b) => `${a.instance} ${a.port}`.localeCompare(`${b.instance} ${b.port}`));
}
