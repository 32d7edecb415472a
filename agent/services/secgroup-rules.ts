// A security-group rule as the caller wrote it -> the one canonical form the
// store keeps. Canonical matters twice: the rule id is a hash of it (so the
// same rule added twice, on any host, gets the same id and lands once), and
// the enforcement compiler reads it without re-checking anything.
import { createHash } from 'node:crypto';
import { invalidField } from '../../base/errors.js';
import { intToIp, ipToInt, isIPv4, parseCidr, prefixMask } from '../../hostnet/ipv4.js';
import type { SecGroupRule, SecGroupRuleAdd } from '../api/types.js';

/** Group names: the API's SecGroupName pattern, checked again where a name arrives inside a source. */
export const SECGROUP_NAME = /^[a-z][a-z0-9-]{0,30}$/;
/** The instance role pattern (InstanceCreate.role). */
const ROLE = /^[a-z][a-z0-9._-]{0,62}$/;
/** An instance id ("i-" and hex) or an instance name. */
const INSTANCE_REF = /^(i-[0-9a-f]+|[a-z][a-z0-9-]{0,62})$/;
const SHA256 = /^[0-9a-f]{64}$/;
const PROTOS = new Set(['tcp', 'udp', 'icmp', 'any']);

export interface RuleContext {
  /** Does a group of this name exist (a `group:` source must name one)? */
  groupExists(name: string): boolean;
}

/** Parses `P` or `P-Q` (1..65535, P <= Q). */
export function parsePorts(text: string): { from: number; to: number } {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) throw invalidField('port', `"${text}" is not P or P-Q`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  for (const p of [from, to]) if (p < 1 || p > 65535) throw invalidField('port', `${p} is outside 1..65535`);
  if (from > to) throw invalidField('port', `"${text}" runs backwards; write ${to}-${from}`);
  return { from, to };
}

/**
 * The canonical source. A CIDR with host bits set is refused, not masked:
 * "10.0.0.5/24" may mean the /24 or the one host, and guessing wrong opens a
 * whole subnet (or closes one). A bare address means that host, /32.
 */
export function canonicalSource(text: string, ctx: RuleContext): string {
  const colon = text.indexOf(':');
  const kind = colon < 0 ? '' : text.slice(0, colon);
  const value = colon < 0 ? text : text.slice(colon + 1);
  switch (kind) {
    case 'role':
      if (!ROLE.test(value))
        throw invalidField('from', `"${value}" is not a role (lower case, digits and ._-, at most 63)`);
      return `role:${value}`;
    case 'group':
      if (!SECGROUP_NAME.test(value)) throw invalidField('from', `"${value}" is not a group name`);
      if (!ctx.groupExists(value)) throw invalidField('from', `group "${value}" does not exist`);
      return `group:${value}`;
    case 'instance':
      if (!INSTANCE_REF.test(value))
        throw invalidField('from', `"${value}" is not an instance id (i-<hex>) or name`);
      return `instance:${value}`;
    case 'image': {
      const sha = value.toLowerCase();
      if (!SHA256.test(sha)) throw invalidField('from', `"${value}" is not a sha256 (64 hex digits)`);
      return `image:${sha}`;
    }
    case '':
      return canonicalCidr(text);
    default:
      throw invalidField(
        'from',
        `"${text}" is not role:<name>, group:<name>, instance:<id|name>, image:<sha256> or an IPv4 CIDR`,
      );
  }
}

function canonicalCidr(text: string): string {
  if (isIPv4(text)) return `${text}/32`;
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!m || !isIPv4(m[1] as string) || Number(m[2]) > 32)
    throw invalidField(
      'from',
      `"${text}" is not role:<name>, group:<name>, instance:<id|name>, image:<sha256> or an IPv4 CIDR`,
    );
  if (!parseCidr(text)) {
    const prefix = Number(m[2]);
    const net = intToIp((ipToInt(m[1] as string) & prefixMask(prefix)) >>> 0);
    throw invalidField(
      'from',
      `"${text}" has host bits set; write ${net}/${prefix} for the network or ${m[1]}/32 for the one host (refused rather than guessed)`,
    );
  }
  return text;
}

/** The stable id of a canonical rule: `sr-` and 8 hex of its sha256. */
export function ruleId(rule: Omit<SecGroupRule, 'id'>): string {
  const key = `${rule.proto}|${rule.ports ? `${rule.ports.from}-${rule.ports.to}` : ''}|${rule.from}`;
  return `sr-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;
}

/** Validates a rule as added and returns its canonical form with its id. */
export function canonicalRule(input: SecGroupRuleAdd, ctx: RuleContext): SecGroupRule {
  if (!PROTOS.has(input.proto))
    throw invalidField('proto', `"${input.proto}" is not one of tcp, udp, icmp, any`);
  let ports: SecGroupRule['ports'];
  if (input.port !== undefined && input.port !== '') {
    if (input.proto !== 'tcp' && input.proto !== 'udp')
      throw invalidField('port', `ports are for tcp and udp, not ${input.proto}`);
    ports = parsePorts(input.port);
  }
  const from = canonicalSource(input.from.trim(), ctx);
  const body = { proto: input.proto, ...(ports ? { ports } : {}), from };
  return { id: ruleId(body), ...body };
}
