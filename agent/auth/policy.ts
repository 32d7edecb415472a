// The auth manager's decision: which identities a policy names, what it
// allows and denies, and how the policies that match one caller combine.
// Pure: berthd compiles the rules for one caller once, and the endpoint
// evaluates them per path without leaving its process.

import { invalidField } from '../../base/errors.js';
import { isMac, macToInt } from '../../hostnet/ipv4.js';

export type Operation = 'read' | 'write';

/** A stored policy: `policy/<name>` in the store. */
export interface PolicyRecord {
  name: string;
  description?: string;
  /**
   * Who it applies to: `*`, `instance:<id|name>`, `mac:<mac>`, `mac:<prefix>/<bits>`
   * (a MAC range, like a CIDR), `image:<sha256>` or `role:<name>`.
   */
  identities: string[];
  /** `<read|write>:<resource pattern>`, e.g. `read:meta-data/*`, `write:password`, `read:*`. */
  allow: string[];
  deny: string[];
}

/** What the host knows about a caller, from the observed MAC and port upward. */
export interface CallerIdentity {
  instance: string;
  name: string;
  mac: string;
  image?: string;
  role?: string;
}

/** The identity policies see for an instance calling from `mac`: the host's own records, never what the caller says. */
export function callerIdentity(
  rec: { id: string; name: string; role?: string; image_sha256?: string },
  mac: string,
): CallerIdentity {
  return {
    instance: rec.id,
    name: rec.name,
    mac,
    ...(rec.role ? { role: rec.role } : {}),
    ...(rec.image_sha256 ? { image: rec.image_sha256 } : {}),
  };
}

/** One rule that matched the caller; ordered most specific first. */
export interface Rule {
  rank: number;
  effect: 'allow' | 'deny';
  op: Operation;
  pattern: string;
  policy: string;
  identity: string;
}

export interface Decision {
  allowed: boolean;
  /** Why, in words an operator can act on. */
  reason: string;
  policy?: string;
}

/**
 * Every resource a served value belongs to; policies name these (or patterns
 * over them). agent/metadata/resources.ts places each value of every tree
 * under exactly one of them.
 */
export const RESOURCES = [
  'meta-data/instance-id',
  'meta-data/hostname',
  'meta-data/local-ipv4',
  'meta-data/mac',
  'meta-data/network',
  'meta-data/placement',
  'meta-data/public-keys',
  'meta-data/tags',
  'meta-data/instance-type',
  'meta-data/ami-id',
  'meta-data/ami-launch-index',
  'meta-data/random-seed',
  'user-data',
  'vendor-data',
  'password',
  'identity-document',
  'identity-keys',
  'identity-token',
  'events',
  'index',
] as const;

export type Resource = (typeof RESOURCES)[number];

/**
 * Names stored policies may still carry from before every value had exactly
 * one resource. A rename maps one to one. A whole document that used to be
 * its own resource (OpenStack meta_data.json, NoCloud meta-data, berth's
 * identity page) now spreads over several: a deny of it keeps denying all of
 * them, an allow of it allows none, so an old policy never guards less than
 * it did. New policies must use the current names (validatePolicy).
 */
const LEGACY_PATTERNS: Record<string, { deny: string; allow?: string }> = {
  'meta-data/local-hostname': { deny: 'meta-data/hostname', allow: 'meta-data/hostname' },
  'meta-data/reservation-id': { deny: 'meta-data/instance-id', allow: 'meta-data/instance-id' },
  'meta-data': { deny: 'meta-data/*', allow: 'meta-data/*' },
  'meta-data/openstack': { deny: 'meta-data/*' },
  'meta-data/nocloud': { deny: 'meta-data/*' },
  'meta-data/identity': { deny: 'meta-data/*' },
};

function currentPattern(effect: 'deny' | 'allow', pattern: string): string | undefined {
  const legacy = LEGACY_PATTERNS[pattern];
  return legacy ? legacy[effect] : pattern;
}

// More specific identities outrank less specific ones, so an operator can
// deny for everyone (`*`) and allow back for a role, or the other way round.
const RANK = { instance: 0, mac: 1, 'mac-range': 2, image: 3, role: 4, any: 5 } as const;
type Kind = keyof typeof RANK;

interface ParsedIdentity {
  kind: Kind;
  value: string;
  bits?: number;
}

const ROLE_RE = /^[a-z][a-z0-9._-]{0,62}$/;
const SHA_RE = /^[0-9a-f]{64}$/;
const RESOURCE_RE = /^(\*|[a-z0-9][a-z0-9._-]*(\/[a-z0-9._*-]+)*(\/\*)?)$/;

export function parseIdentity(text: string): ParsedIdentity | undefined {
  if (text === '*') return { kind: 'any', value: '*' };
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  const kind = text.slice(0, colon);
  const value = text.slice(colon + 1).toLowerCase();
  switch (kind) {
    case 'instance':
      return /^[a-z0-9][a-z0-9-]{0,62}$/.test(value) ? { kind: 'instance', value } : undefined;
    case 'role':
      return ROLE_RE.test(value) ? { kind: 'role', value } : undefined;
    case 'image':
      return SHA_RE.test(value) ? { kind: 'image', value } : undefined;
    case 'mac': {
      const slash = value.indexOf('/');
      if (slash < 0) return isMac(value) ? { kind: 'mac', value } : undefined;
      const base = value.slice(0, slash);
      const bits = Number(value.slice(slash + 1));
      if (!isMac(base) || !Number.isInteger(bits) || bits < 1 || bits > 48) return undefined;
      return { kind: 'mac-range', value: base, bits };
    }
    default:
      return undefined;
  }
}

function parsePermission(text: string): { op: Operation; pattern: string } | undefined {
  const [op, pattern, extra] = text.split(':');
  if (extra !== undefined || (op !== 'read' && op !== 'write') || !pattern) return undefined;
  return RESOURCE_RE.test(pattern) ? { op, pattern } : undefined;
}

/** Throws BERTH_ERR_INVALID_ARGUMENT naming the first bad field. */
export function validatePolicy(p: PolicyRecord): void {
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(p.name)) invalid('name', 'lower case, digits and -, at most 63');
  if (p.identities.length === 0) invalid('identities', 'name at least one identity (or "*")');
  p.identities.forEach((id, i) => {
    if (!parseIdentity(id))
      invalid(
        `identities.${i}`,
        `"${id}" is not *, instance:<id|name>, mac:<mac>, mac:<mac>/<bits>, image:<sha256> or role:<name>`,
      );
  });
  for (const list of ['allow', 'deny'] as const) {
    p[list].forEach((perm, i) => {
      const parsed = parsePermission(perm);
      if (!parsed)
        invalid(
          `${list}.${i}`,
          `"${perm}" is not read:<resource> or write:<resource> (e.g. read:meta-data/*)`,
        );
      // A typo (read:meta-data/public-key) would match nothing and deny nothing, silently.
      const renamed = LEGACY_PATTERNS[parsed.pattern]?.allow;
      if (renamed) invalid(`${list}.${i}`, `"${parsed.pattern}" is now called "${renamed}"`);
      if (!RESOURCES.some((r) => patternMatches(parsed.pattern, r)))
        invalid(`${list}.${i}`, `"${parsed.pattern}" names no resource; resources: ${RESOURCES.join(', ')}`);
    });
  }
  if (p.allow.length + p.deny.length === 0) invalid('allow', 'a policy needs at least one allow or deny');
}

function invalid(field: string, reason: string): never {
  throw invalidField(field, reason);
}

function macInRange(mac: string, base: string, bits: number): boolean {
  // 48-bit values exceed bitwise ops; compare the top `bits` with division.
  const step = 2 ** (48 - bits);
  return Math.floor(macToInt(mac) / step) === Math.floor(macToInt(base) / step);
}

export function identityMatches(id: ParsedIdentity, who: CallerIdentity): boolean {
  switch (id.kind) {
    case 'any':
      return true;
    case 'instance':
      return id.value === who.instance || id.value === who.name;
    case 'mac':
      return id.value === who.mac.toLowerCase();
    case 'mac-range':
      return macInRange(who.mac.toLowerCase(), id.value, id.bits ?? 48);
    case 'image':
      return who.image !== undefined && id.value === who.image;
    case 'role':
      return who.role !== undefined && id.value === who.role;
  }
}

/** The rules of every policy that names this caller, most specific first. */
export function compileRules(policies: PolicyRecord[], who: CallerIdentity): Rule[] {
  const rules: Rule[] = [];
  for (const p of policies) {
    let best: { rank: number; text: string } | undefined;
    for (const text of p.identities) {
      const id = parseIdentity(text);
      if (!id || !identityMatches(id, who)) continue;
      if (!best || RANK[id.kind] < best.rank) best = { rank: RANK[id.kind], text };
    }
    if (!best) continue;
    for (const effect of ['deny', 'allow'] as const) {
      for (const perm of effect === 'deny' ? p.deny : p.allow) {
        const parsed = parsePermission(perm);
        const pattern = parsed && currentPattern(effect, parsed.pattern);
        if (parsed && pattern)
          rules.push({
            rank: best.rank,
            effect,
            op: parsed.op,
            pattern,
            policy: p.name,
            identity: best.text,
          });
      }
    }
  }
  // Within one rank a deny beats an allow.
  return rules.sort((a, b) => a.rank - b.rank || (a.effect === b.effect ? 0 : a.effect === 'deny' ? -1 : 1));
}

export function patternMatches(pattern: string, resource: string): boolean {
  if (pattern === '*' || pattern === resource) return true;
  if (pattern.endsWith('/*')) {
    const base = pattern.slice(0, -2);
    return resource === base || resource.startsWith(`${base}/`);
  }
  return false;
}

/**
 * Without a matching rule, a guest may read everything about itself and
 * write its own password and acknowledge its own maintenance notices
 * (`write:events`): the data is its own. Operators narrow that with
 * deny rules (or a `*` deny plus specific allows).
 */
export function defaultDecision(op: Operation, resource: string): Decision {
  if (op === 'read' || resource === 'password' || resource === 'events')
    return { allowed: true, reason: 'default' };
  return { allowed: false, reason: `no policy allows write:${resource}` };
}

export function evaluate(rules: readonly Rule[], op: Operation, resource: string): Decision {
  // The index (version lists) reveals nothing about anyone.
  if (resource === 'index' && op === 'read') return { allowed: true, reason: 'index' };
  for (const r of rules) {
    if (r.op !== op || !patternMatches(r.pattern, resource)) continue;
    return r.effect === 'deny'
      ? {
          allowed: false,
          reason: `denied by policy "${r.policy}" (${r.identity} deny ${op}:${r.pattern})`,
          policy: r.policy,
        }
      : { allowed: true, reason: `allowed by policy "${r.policy}"`, policy: r.policy };
  }
  return defaultDecision(op, resource);
}

/** How an identity reads in audit records. */
export function describeCaller(who: CallerIdentity): string {
  const parts = [`instance:${who.instance}`, `mac:${who.mac}`];
  if (who.role) parts.push(`role:${who.role}`);
  if (who.image) parts.push(`image:${who.image}`);
  return parts.join(' ');
}
