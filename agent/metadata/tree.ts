// A metadata tree is nested directories of leaves and composite documents.
// Rendering flattens it, for one caller, into a map from URL path to the exact
// bytes to send, so that serving is one map lookup. Each path's resource comes
// from the one table (resources.ts), and what the caller may read is decided
// here, once per caller: a directory lists only the children the caller may
// read, a composite document leaves out the fields it may not, and a denied
// path keeps its resource (the request is refused and audited) but no bytes.
import type { Resource } from '../auth/policy.js';
import { fieldResource, resourceAt, type Tree } from './resources.js';

export interface Leaf {
  body: string | Buffer;
  contentType?: string;
}

/** A document made of fields that may belong to different resources (OpenStack meta_data.json). */
export interface Doc {
  fields: Record<string, unknown>;
  /** Writes the kept fields (JSON, YAML). */
  format(fields: Record<string, unknown>): string;
  contentType: string;
}

export interface Dir {
  children: Record<string, Node>;
  /** Replaces the computed listing (EC2 `public-keys/` lists `0=name`). */
  listing?: string;
}

export type Node = Leaf | Doc | Dir;

export interface Item {
  body: Buffer;
  contentType: string;
  resource: Resource;
  /** Which tree the path belongs to (`ec2`, `openstack`, `nocloud`, `berth`). */
  tree: Tree;
}

/** What the caller may read: its decisions, made once when its view is built. */
export type May = (resource: Resource) => boolean;

export const TEXT = 'text/plain';
export const JSON_TYPE = 'application/json';
const EMPTY = Buffer.alloc(0);

export function dir(children: Record<string, Node | undefined>, listing?: string): Dir {
  const kept: Record<string, Node> = {};
  for (const [k, v] of Object.entries(children)) if (v !== undefined) kept[k] = v;
  return listing === undefined ? { children: kept } : { children: kept, listing };
}

export function leaf(body: string | Buffer, contentType = TEXT): Leaf {
  return { body, contentType };
}

/** A composite document; fields whose value is undefined are not part of it. */
export function doc(
  fields: Record<string, unknown>,
  format: (fields: Record<string, unknown>) => string,
  contentType: string,
): Doc {
  return { fields, format, contentType };
}

export function isDir(node: Node): node is Dir {
  return 'children' in node;
}

function isDoc(node: Node): node is Doc {
  return 'fields' in node;
}

const join = (rel: string, name: string) => (rel === '' ? name : `${rel}/${name}`);

function resourceOf(tree: Tree, rel: string, node: Node): Resource {
  const r = resourceAt(tree, rel, isDir(node));
  // A path the table does not place has no resource anyone could deny: never serve it.
  if (r === undefined) throw new Error(`metadata: ${tree} path "${rel}" has no resource in resources.ts`);
  return r;
}

/** The fields of d that the caller may read. */
export function keptFields(d: Doc, tree: Tree, rel: string, may: May): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(d.fields)) {
    if (value === undefined) continue;
    const r = fieldResource(tree, rel, key);
    if (r === undefined) throw new Error(`metadata: ${tree} "${rel}" field "${key}" has no resource`);
    if (may(r)) kept[key] = value;
  }
  return kept;
}

/** One caller's render of one tree. */
export interface Render {
  tree: Tree;
  may: May;
  out: Map<string, Item>;
  /**
   * Items by node: a node shared between versions (the same file in every
   * OpenStack version) sits at the same relative path in each, so its bytes
   * and decision are made once.
   */
  made?: Map<Node, { rel: string; item: Item }>;
}

/**
 * Adds every path of `node` under `base` (no trailing slash) to the render.
 * `rel` is the node's path as the resource table names it (relative to the
 * tree's version directory or root); `resource` is what the table says of it.
 */
export function flatten(
  node: Node,
  base: string,
  rel: string,
  ctx: Render,
  resource: Resource = resourceOf(ctx.tree, rel, node),
): void {
  const { tree, may, out } = ctx;
  if (!isDir(node)) {
    const seen = ctx.made?.get(node);
    let item = seen?.rel === rel ? seen.item : undefined;
    if (!item) {
      const allowed = may(resource);
      const body = !allowed
        ? EMPTY
        : isDoc(node)
          ? Buffer.from(node.format(keptFields(node, tree, rel, may)))
          : Buffer.isBuffer(node.body)
            ? node.body
            : Buffer.from(node.body);
      item = { body, contentType: node.contentType ?? TEXT, resource, tree };
      ctx.made?.set(node, { rel, item });
    }
    out.set(base, item);
    return;
  }
  // Each child's resource once: for this listing and for the child itself.
  const children = Object.entries(node.children).map(
    ([name, child]) => [name, child, resourceOf(tree, join(rel, name), child)] as const,
  );
  let body = EMPTY;
  if (may(resource))
    body = Buffer.from(
      node.listing ??
        children
          .filter(([, , r]) => may(r))
          .map(([name, child]) => (isDir(child) ? `${name}/` : name))
          .join('\n'),
    );
  const item: Item = { body, contentType: TEXT, resource, tree };
  // Both spellings answer with the listing, as EC2 does.
  out.set(base === '' ? '/' : base, item);
  out.set(`${base}/`, item);
  for (const [name, child, r] of children) flatten(child, `${base}/${name}`, join(rel, name), ctx, r);
}

/** A listing of versions (or trees) at `base`: names only, readable by everyone. */
export function listing(base: string, body: string, tree: Tree, out: Map<string, Item>): void {
  const item: Item = { body: Buffer.from(body), contentType: TEXT, resource: 'index', tree };
  out.set(base, item);
  out.set(`${base}/`, item);
}
