// A metadata tree is nested directories of leaves. Rendering flattens it into
// a map from URL path to the exact bytes to send, so that serving is one map
// lookup. Directory listings end child directories with `/`, as EC2 does.

export interface Leaf {
  body: string | Buffer;
  contentType?: string;
  /** The policy resource this leaf belongs to (`meta-data/...`, `user-data`, ...). */
  resource: string;
}

export interface Dir {
  children: Record<string, Node>;
  /** Replaces the computed listing (EC2 `public-keys/` lists `0=name`). */
  listing?: string;
  resource: string;
}

export type Node = Leaf | Dir;

export interface Item {
  body: Buffer;
  contentType: string;
  resource: string;
  /** What the request was (`ec2`, `openstack`, `nocloud`) for writes and tokens. */
  tree: string;
}

export const TEXT = 'text/plain';
export const JSON_TYPE = 'application/json';

export function dir(children: Record<string, Node | undefined>, resource: string, listing?: string): Dir {
  const kept: Record<string, Node> = {};
  for (const [k, v] of Object.entries(children)) if (v !== undefined) kept[k] = v;
  return listing === undefined ? { children: kept, resource } : { children: kept, resource, listing };
}

export function leaf(body: string | Buffer, resource: string, contentType = TEXT): Leaf {
  return { body, resource, contentType };
}

export function isDir(node: Node): node is Dir {
  return 'children' in node;
}

export function listingOf(d: Dir): string {
  if (d.listing !== undefined) return d.listing;
  return Object.entries(d.children)
    .map(([name, child]) => (isDir(child) ? `${name}/` : name))
    .join('\n');
}

/** Adds every path of `node` under `base` (which has no trailing slash) to `out`. */
export function flatten(node: Node, base: string, tree: string, out: Map<string, Item>): void {
  if (!isDir(node)) {
    out.set(base, {
      body: Buffer.isBuffer(node.body) ? node.body : Buffer.from(node.body),
      contentType: node.contentType ?? TEXT,
      resource: node.resource,
      tree,
    });
    return;
  }
  const item: Item = { body: Buffer.from(listingOf(node)), contentType: TEXT, resource: node.resource, tree };
  // Both spellings answer with the listing, as EC2 does.
  out.set(base === '' ? '/' : base, item);
  out.set(`${base}/`, item);
  for (const [name, child] of Object.entries(node.children)) flatten(child, `${base}/${name}`, tree, out);
}
