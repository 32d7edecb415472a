// Security groups, resolved into what the bridge enforces: every group, rule
// and source becomes addresses on ports. Pure: the enforcer feeds it the
// groups, every known instance (this host's and, in cluster mode, the
// directory's) and this host's guarded ports, and applies what comes out.
//
// A source names identities, never addresses: role:, group:, instance: and
// image: resolve to the IPv4 address and MAC berth assigned to those
// instances, bound to the bridge port their frames arrive on here: a local
// guest's own port, or the network's uplink for another host's guest (none
// without an uplink: it cannot reach this bridge). The guard guarantees a
// guest sends only from its own address and MAC on its own port, and that
// nothing from the uplink or a foreign port claims a local guest's, so an
// element stands for the identity that holds it. Sets are per (source,
// network): tenant networks may reuse each other's CIDRs, and an address
// from another network means nothing on this bridge.
import { createHash } from 'node:crypto';
import type {
  SecGroupState,
  SgFlowCut,
  SgPort,
  SgRule,
  SgSet,
  SgSetMember,
} from '../../hostnet/secgroups/state.js';
import type { SecGroup } from '../api/types.js';

/** An instance as far as sources are concerned: one of this host's or another's. */
export interface SgMember {
  id: string;
  name: string;
  role?: string;
  image_sha256?: string;
  secgroups?: string[];
  nics: { network: string; ip: string; mac: string }[];
}

/** One of this host's guest ports, with where it sits. */
export interface SgLocalPort {
  instance: string;
  network: string;
  ifname: string;
  bridge: string;
  /** The port's VLAN on a VLAN-filtering trunk bridge (its conntrack zone is per VLAN); undefined otherwise. */
  vlan?: number;
  mac: string;
  ip: string;
  endpointPorts: string[];
}

/** Stable for one (source, network), so a member change stays an element change. */
export function setName(source: string, network: string): string {
  return `s_${createHash('sha256').update(`${source}|${network}`).digest('hex').slice(0, 12)}`;
}

const CIDR_RE = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;

function matches(source: string, m: SgMember): boolean {
  const colon = source.indexOf(':');
  const kind = source.slice(0, colon);
  const value = source.slice(colon + 1);
  switch (kind) {
    case 'role':
      return m.role === value;
    case 'group':
      return m.secgroups?.includes(value) === true;
    case 'instance':
      return m.id === value || m.name === value;
    case 'image':
      return m.image_sha256 === value;
    default:
      return false;
  }
}

function parsePorts(rule: SecGroup['rules'][number]): SgRule['ports'] {
  return rule.ports ? { from: rule.ports.from, to: rule.ports.to } : undefined;
}

/**
 * `uplinks` maps a network to its uplink's port on this host's bridge (the
 * port another host's guests arrive on); a network without one is absent.
 */
export function compileSecGroups(
  groups: readonly SecGroup[],
  members: readonly SgMember[],
  local: readonly SgLocalPort[],
  uplinks: ReadonlyMap<string, string> = new Map(),
): SecGroupState {
  const byName = new Map(groups.map((g) => [g.name, g]));
  const localPort = new Map(local.map((p) => [`${p.instance}|${p.network}`, p.ifname]));
  const sets = new Map<string, SgSet>();
  const setFor = (source: string, network: string): string => {
    const name = setName(source, network);
    if (!sets.has(name)) {
      const found = new Map<string, SgSetMember>();
      for (const m of members) {
        if (!matches(source, m)) continue;
        for (const n of m.nics) {
          if (n.network !== network) continue;
          const port = localPort.get(`${m.id}|${network}`) ?? uplinks.get(network);
          if (port !== undefined) found.set(`${n.ip} ${n.mac} ${port}`, { ip: n.ip, mac: n.mac, port });
        }
      }
      const sorted = [...found.keys()].sort().map((k) => found.get(k) as SgSetMember);
      sets.set(name, { name, source: `${source} on ${network}`, members: sorted });
    }
    return name;
  };
  const membership = new Map(members.map((m) => [m.id, m.secgroups ?? []]));
  const ports: SgPort[] = [];
  for (const p of local) {
    const joined = membership.get(p.instance) ?? [];
    if (joined.length === 0) continue;
    const rules: SgRule[] = [];
    for (const gname of [...new Set(joined)].sort()) {
      const g = byName.get(gname);
      // A group that vanished admits nothing: membership still closes the port.
      for (const r of g?.rules ?? []) {
        const ports = parsePorts(r);
        rules.push({
          id: r.id,
          group: gname,
          proto: r.proto,
          ...(ports ? { ports } : {}),
          from: CIDR_RE.test(r.from) ? { cidr: r.from } : { set: setFor(r.from, p.network) },
        });
      }
    }
    ports.push({
      ifname: p.ifname,
      bridge: p.bridge,
      ...(p.vlan !== undefined ? { vlan: p.vlan } : {}),
      mac: p.mac,
      ip: p.ip,
      instance: p.instance,
      endpointPorts: [...p.endpointPorts],
      rules,
    });
  }
  return {
    ports: ports.sort((a, b) => a.ifname.localeCompare(b.ifname)),
    sets: [...sets.values()].sort((a, b) => a.name.localeCompare(b.name)),
  };
}

/** What a rule admits, without where from: `tcp 3306-3306`. */
function serviceKey(r: SgRule): string {
  return `${r.proto} ${r.ports ? `${r.ports.from}-${r.ports.to}` : '*'}`;
}

/** source address or CIDR → the services it may reach on one port. */
function admitted(port: SgPort, sets: ReadonlyMap<string, SgSet>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const add = (src: string, key: string) => {
    const keys = out.get(src) ?? new Set<string>();
    out.set(src, keys.add(key));
  };
  for (const r of port.rules) {
    if ('cidr' in r.from) add(r.from.cidr, serviceKey(r));
    else for (const m of sets.get(r.from.set)?.members ?? []) add(m.ip, serviceKey(r));
  }
  return out;
}

/**
 * The flows that must end after `before` becomes `after`: a source that lost
 * any service it had on a port (it left a group, a rule went). Neutron does
 * the same. The bridge already re-checks every packet toward a guarded guest
 * against the rules (only replies to the guest's own connections ride on
 * conntrack), so this is about leaving no tracked state behind: a flow the
 * new rules still allow is cut too, and its next packet passes the rules
 * again. A port newly in a group needs no cut for the same reason.
 */
export function flowCuts(before: SecGroupState, after: SecGroupState): SgFlowCut[] {
  const setsBefore = new Map(before.sets.map((s) => [s.name, s]));
  const setsAfter = new Map(after.sets.map((s) => [s.name, s]));
  const portsBefore = new Map(before.ports.map((p) => [p.ifname, p]));
  const cuts: SgFlowCut[] = [];
  for (const port of after.ports) {
    const old = portsBefore.get(port.ifname);
    if (!old || old.ip !== port.ip) continue;
    const now = admitted(port, setsAfter);
    for (const [src, keys] of admitted(old, setsBefore)) {
      const still = now.get(src);
      if ([...keys].some((k) => !still?.has(k))) cuts.push({ src, dst: port.ip });
    }
  }
  return cuts.sort((a, b) => `${a.dst} ${a.src}`.localeCompare(`${b.dst} ${b.src}`));
}
