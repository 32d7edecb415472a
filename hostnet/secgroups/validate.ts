// Checks SecGroupState before any of it becomes nft text: names and
// addresses are interpolated into a script, so anything that could break out
// of its token is refused here. A bad port or set is left out with an error
// (gathered, the rest still applies); a port whose rule names a missing set
// is left out too, never applied with that rule dropped (that would be
// narrower than asked, and silently so).
import { isIP } from 'node:net';
import {
  memberElement,
  type SecGroupState,
  type SgMode,
  type SgPort,
  type SgSet,
  type SgSetMember,
} from './state.js';

const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;
const SET_NAME = /^s_[a-z0-9_]{1,28}$/;
const RULE_ID = /^[a-z0-9-]{1,40}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function validCidr(cidr: string): boolean {
  const [ip, len, extra] = cidr.split('/');
  if (extra !== undefined || ip === undefined || isIP(ip) !== 4) return false;
  if (len === undefined) return true;
  return /^\d{1,2}$/.test(len) && Number(len) <= 32;
}

function setProblem(set: SgSet): string | undefined {
  if (!SET_NAME.test(set.name)) return 'its name must be s_ followed by lower-case letters, digits or _';
  for (const m of set.members) {
    if (isIP(m.ip) !== 4) return `member "${m.ip}" is not an IPv4 address`;
    if (!MAC.test(m.mac)) return `member ${m.ip}: MAC "${m.mac}" is not lower-case aa:bb:cc:dd:ee:ff`;
    if (!IFNAME.test(m.port)) return `member ${m.ip}: port "${m.port}" is not a valid interface name`;
  }
  return undefined;
}

function portProblem(port: SgPort, sets: ReadonlySet<string>, mode: SgMode | undefined): string | undefined {
  if (!IFNAME.test(port.ifname)) return 'not a valid interface name';
  if (!IFNAME.test(port.bridge)) return `bridge "${port.bridge}" is not a valid interface name`;
  if (port.vlan !== undefined) {
    if (!Number.isInteger(port.vlan) || port.vlan < 1 || port.vlan > 4094)
      return `VLAN ${port.vlan} is not 1-4094`;
    // br_netfilter's zones are per inet iifname (the bridge): networks on one
    // trunk bridge would share conntrack entries, and an overlapping subnet's
    // flow in one VLAN would admit "replies" in another. Refused, not pretended.
    if (mode === 'br-netfilter')
      return 'security groups on a VLAN-filtering bridge need nf_conntrack_bridge (conntrack zones per VLAN); this kernel has only br_netfilter';
  }
  if (!MAC.test(port.mac)) return `MAC "${port.mac}" is not lower-case aa:bb:cc:dd:ee:ff`;
  if (isIP(port.ip) !== 4) return `address "${port.ip}" is not IPv4`;
  const ep = port.endpointPorts.find((e) => !IFNAME.test(e));
  if (ep !== undefined) return `endpoint port "${ep}" is not a valid interface name`;
  for (const rule of port.rules) {
    if (!RULE_ID.test(rule.id)) return `rule id "${rule.id}" is not lower-case letters, digits and -`;
    if (!['tcp', 'udp', 'icmp', 'any'].includes(rule.proto)) return `rule "${rule.id}": unknown proto`;
    if (rule.ports) {
      const { from, to } = rule.ports;
      const ok = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
      if (!ok(from) || !ok(to) || from > to)
        return `rule "${rule.id}": port range ${from}-${to} is not 1-65535`;
      if (rule.proto !== 'tcp' && rule.proto !== 'udp') return `rule "${rule.id}": ports need tcp or udp`;
    }
    if ('set' in rule.from) {
      if (!sets.has(rule.from.set)) return `rule "${rule.id}": set "${rule.from.set}" is not in the state`;
    } else if (!validCidr(rule.from.cidr))
      return `rule "${rule.id}": "${rule.from.cidr}" is not an IPv4 CIDR`;
  }
  return undefined;
}

/** The ports and sets that can be rendered in `mode`, and one error per thing left out. */
export function validateSecGroups(
  state: SecGroupState,
  mode?: SgMode,
): {
  ports: SgPort[];
  sets: SgSet[];
  errors: string[];
} {
  const errors: string[] = [];
  const sets = new Map<string, SgSet>();
  for (const set of state.sets) {
    const problem = setProblem(set) ?? (sets.has(set.name) ? 'named twice' : undefined);
    if (problem) errors.push(`could not apply security-group set "${set.name}": ${problem}`);
    else {
      const unique = new Map(set.members.map((m) => [memberElement(m), m]));
      sets.set(set.name, {
        ...set,
        members: [...unique.keys()].sort().map((k) => unique.get(k) as SgSetMember),
      });
    }
  }
  const names = new Set(sets.keys());
  const ports = new Map<string, SgPort>();
  for (const port of state.ports) {
    const problem = portProblem(port, names, mode) ?? (ports.has(port.ifname) ? 'named twice' : undefined);
    if (problem) errors.push(`could not apply security-group port "${port.ifname}": ${problem}`);
    else ports.set(port.ifname, port);
  }
  return { ports: [...ports.values()], sets: [...sets.values()], errors };
}
