// The one resource model: every value the metadata service serves belongs to
// exactly one policy resource, whichever tree serves it and under whichever
// path or field. Before this table each renderer named its own resources, and
// a deny on `meta-data/public-keys` hid the keys under /latest/… while
// OpenStack's meta_data.json and NoCloud's meta-data still carried them.
//
// The renderers never name a resource: flatten() asks resourceAt() for every
// path it emits and every field of a composite document, and a path or field
// the table does not place is a programming error (it throws, and the matrix
// test renders every tree). So a value cannot be served under a resource of
// its own invention, and test/unit/metadata-resources.test.ts walks this
// table: every placement, allowed and denied, on every tree and version.
import type { Resource } from '../auth/policy.js';

export type Tree = 'ec2' | 'openstack' | 'nocloud' | 'berth';

/**
 * Where a tree serves a value. `path` is relative to the tree's version
 * directory (`/<v>/` for EC2, `/openstack/<v>/`) or the tree's root
 * (`/nocloud/`, `/berth/`); a path ending in `/` covers its whole subtree.
 * `field` names a top-level field of a composite document at `path`.
 */
export interface Placement {
  tree: Tree;
  path: string;
  field?: string;
  /**
   * The field without which the document is useless to its reader (cloud-init
   * refuses OpenStack meta_data.json without `uuid`, NoCloud meta-data without
   * `instance-id`). A document whose required field is denied is refused
   * whole, as a leaf is; its other denied fields are left out.
   */
  required?: true;
  /** OpenStack: the first version that serves the path. */
  since?: string;
}

export interface ValueRow {
  value: string;
  resource: Resource;
  placements: readonly Placement[];
}

const ec2 = (path: string): Placement => ({ tree: 'ec2', path });
const os = (path: string, field?: string, since?: string): Placement => ({
  tree: 'openstack',
  path,
  ...(field ? { field } : {}),
  ...(since ? { since } : {}),
});
const nc = (path: string, field?: string): Placement => ({
  tree: 'nocloud',
  path,
  ...(field ? { field } : {}),
});
const berth = (field: string): Placement => ({ tree: 'berth', path: 'identity', field });
const required = (p: Placement): Placement => ({ ...p, required: true });

/**
 * The network configuration and the signed identity document are values of
 * their own: they carry the MAC and IP they describe (a network config
 * without its address is no config, a signed document cannot lose a field).
 * Hiding an address from a guest therefore means denying those too.
 */
export const VALUES: readonly ValueRow[] = [
  {
    value: 'instance id',
    resource: 'meta-data/instance-id',
    placements: [
      ec2('meta-data/instance-id'),
      // Derived from the instance id (r-<same hex>): the same value.
      ec2('meta-data/reservation-id'),
      required(os('meta_data.json', 'uuid')),
      required(nc('meta-data', 'instance-id')),
      required(berth('instance')),
    ],
  },
  {
    value: 'host name',
    resource: 'meta-data/hostname',
    placements: [
      ec2('meta-data/hostname'),
      ec2('meta-data/local-hostname'),
      os('meta_data.json', 'hostname'),
      os('meta_data.json', 'name'),
      nc('meta-data', 'local-hostname'),
    ],
  },
  {
    value: 'IPv4 address',
    resource: 'meta-data/local-ipv4',
    placements: [ec2('meta-data/local-ipv4'), berth('ip')],
  },
  { value: 'MAC address', resource: 'meta-data/mac', placements: [ec2('meta-data/mac'), berth('mac')] },
  {
    value: 'network configuration',
    resource: 'meta-data/network',
    placements: [
      ec2('meta-data/network/'),
      os('network_data.json', undefined, '2015-10-15'),
      nc('network-config'),
      berth('port'),
      berth('network'),
    ],
  },
  {
    value: 'placement',
    resource: 'meta-data/placement',
    placements: [
      ec2('meta-data/placement/'),
      os('meta_data.json', 'availability_zone'),
      os('meta_data.json', 'project_id'),
    ],
  },
  {
    value: 'SSH public keys',
    resource: 'meta-data/public-keys',
    placements: [
      ec2('meta-data/public-keys/'),
      os('meta_data.json', 'public_keys'),
      os('meta_data.json', 'keys'),
      nc('meta-data', 'public-keys'),
    ],
  },
  {
    value: 'tags (meta, role)',
    resource: 'meta-data/tags',
    placements: [ec2('meta-data/tags/'), os('meta_data.json', 'meta')],
  },
  {
    value: 'instance type',
    resource: 'meta-data/instance-type',
    placements: [ec2('meta-data/instance-type')],
  },
  { value: 'image', resource: 'meta-data/ami-id', placements: [ec2('meta-data/ami-id')] },
  {
    value: 'launch index',
    resource: 'meta-data/ami-launch-index',
    placements: [ec2('meta-data/ami-launch-index'), os('meta_data.json', 'launch_index')],
  },
  {
    value: 'random seed',
    resource: 'meta-data/random-seed',
    placements: [os('meta_data.json', 'random_seed')],
  },
  {
    value: 'user-data',
    resource: 'user-data',
    placements: [ec2('user-data'), os('user_data'), nc('user-data')],
  },
  {
    value: 'vendor-data',
    resource: 'vendor-data',
    placements: [
      os('vendor_data.json', undefined, '2013-10-17'),
      os('vendor_data2.json', undefined, '2016-10-06'),
      nc('vendor-data'),
    ],
  },
  {
    value: 'password',
    resource: 'password',
    placements: [os('password', undefined, '2013-04-04')],
  },
  {
    // A sibling of the identity document's subtree, not inside it: denying one never hides the other.
    value: 'cluster host keys (JWKS)',
    resource: 'identity-keys',
    placements: [ec2('dynamic/berth/jwks.json')],
  },
  {
    // Minted per request (identity-tokens.ts): a credential the guest hands to
    // a third party, deniable apart from the document. Like the document it
    // carries the MAC, role and image it vouches for, whole or not at all.
    value: 'audience-bound identity token (JWT)',
    resource: 'identity-token',
    placements: [ec2('dynamic/berth/identity')],
  },
  {
    value: 'identity document and signature',
    resource: 'identity-document',
    placements: [ec2('dynamic/instance-identity/')],
  },
  {
    // Maintenance notices (events.ts): read at both paths; acknowledging one
    // (POST /berth/events/<id>/ack) is `write:events`.
    value: 'maintenance notices',
    resource: 'events',
    placements: [ec2('meta-data/events/'), { tree: 'berth', path: 'events' }],
  },
  {
    // Names of directories and versions, and Nova's constant empty device list.
    value: 'listings',
    resource: 'index',
    placements: [os('meta_data.json', 'devices')],
  },
];

const byPath = new Map<string, Resource>();
const byField = new Map<string, Resource>();
const requiredOf = new Map<string, Resource>();
const subtrees: { tree: Tree; prefix: string; resource: Resource }[] = [];
for (const row of VALUES) {
  for (const p of row.placements) {
    const key = `${p.tree} ${p.path}`;
    if (p.field !== undefined) {
      byField.set(`${key}#${p.field}`, row.resource);
      if (p.required) requiredOf.set(key, row.resource);
    } else if (p.path.endsWith('/')) subtrees.push({ tree: p.tree, prefix: p.path, resource: row.resource });
    else byPath.set(key, row.resource);
  }
}

/**
 * The resource of what `tree` serves at `rel` (relative as in Placement). A
 * composite document answers with its required field's resource; a
 * directory no placement covers is a listing (`index`). Undefined for a leaf
 * the table does not place.
 */
export function resourceAt(tree: Tree, rel: string, isDir = false): Resource | undefined {
  const key = `${tree} ${rel}`;
  const exact = byPath.get(key) ?? requiredOf.get(key);
  if (exact) return exact;
  for (const s of subtrees)
    if (s.tree === tree && (rel.startsWith(s.prefix) || `${rel}/` === s.prefix)) return s.resource;
  return isDir ? 'index' : undefined;
}

/** The resource of one field of the composite document at `rel`; undefined when not placed. */
export function fieldResource(tree: Tree, rel: string, field: string): Resource | undefined {
  return byField.get(`${tree} ${rel}#${field}`);
}
