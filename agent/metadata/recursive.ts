// `?recursive=true` on a directory: the whole subtree as one JSON document,
// as GCE's metadata server answers it, so a guest can read (and wait on) a
// directory in one request instead of a crawl.
//
// The shape, for every tree (berth, EC2, OpenStack, NoCloud), from the
// caller's own flattened render (tree.ts), so it can hold nothing the caller
// could not read path by path:
// - a directory is a JSON object whose keys are its children's path
//   segments, verbatim (`instance-id`, not GCE's `instanceId`): the key is the
//   path, so a client maps JSON back to paths with no table, and names a user
//   chose (tags) cannot collide after a case conversion;
// - a directory whose children are exactly 0..n-1 (EC2 `public-keys/0/`) is
//   a JSON array, as GCE answers `disks/`;
// - a leaf is its body as a string; a leaf served as application/json is
//   embedded as the JSON it is; a leaf that is not UTF-8 (gzipped user-data)
//   is left out, since JSON cannot carry its bytes as they are;
// - a leaf or directory the caller may not read is left out (its siblings
//   stay); the directory asked for must itself be readable (else 403).
// The document is an Item like any other: its ETag is the hash of its bytes,
// so it changes exactly when something in the subtree the caller sees does.
import type { Decision } from '../auth/policy.js';
import type { Item } from './tree.js';
import { JSON_TYPE } from './tree.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Made once per view and directory: a waiter re-reads it, and its ETag is hashed once with it. */
const made = new WeakMap<ReadonlyMap<string, Item>, Map<string, Item>>();

/** Whether `key` (no trailing slash) names a directory: flatten files a directory under both spellings. */
function isDirKey(items: ReadonlyMap<string, Item>, key: string): boolean {
  return items.get(`${key}/`) === items.get(key);
}

function leafValue(item: Item): unknown {
  let text: string;
  try {
    text = utf8.decode(item.body);
  } catch {
    return undefined;
  }
  if (item.contentType === JSON_TYPE) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

/** Objects whose keys are exactly 0..n-1 become arrays, deepest first. */
function arrays(node: unknown): unknown {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return node;
  const obj = node as Record<string, unknown>;
  for (const k of Object.keys(obj)) obj[k] = arrays(obj[k]);
  const keys = Object.keys(obj);
  if (keys.length > 0 && keys.every((k, i) => k === String(i))) return keys.map((k) => obj[k]);
  return obj;
}

/**
 * The subtree at `path` (a directory, either spelling) as one JSON item, or
 * undefined when `path` names no directory. `readable` is the caller's
 * decision for a resource (made once per view).
 */
export function recursiveItem(
  items: ReadonlyMap<string, Item>,
  path: string,
  readable: (item: Item) => boolean,
): Item | undefined {
  const base = path === '/' ? '' : path.replace(/\/$/, '');
  const dirItem = items.get(`${base}/`);
  if (dirItem === undefined || (base !== '' && items.get(base) !== dirItem)) return undefined;
  let byPath = made.get(items);
  const kept = byPath?.get(base);
  if (kept !== undefined) return kept;
  const root: Record<string, unknown> = {};
  const prefix = `${base}/`;
  for (const [key, item] of items) {
    if (!key.startsWith(prefix) || key.endsWith('/') || key.length === prefix.length) continue;
    const dir = isDirKey(items, key);
    if (!readable(item)) continue;
    const value = dir ? undefined : leafValue(item);
    if (!dir && value === undefined) continue;
    const parts = key.slice(prefix.length).split('/');
    let at = root;
    for (const p of parts.slice(0, -1)) {
      const next = at[p];
      if (next === undefined || typeof next !== 'object' || next === null) at[p] = {};
      at = at[p] as Record<string, unknown>;
    }
    const last = parts[parts.length - 1] as string;
    if (dir) {
      if (at[last] === undefined) at[last] = {};
    } else at[last] = value;
  }
  const item: Item = {
    body: Buffer.from(JSON.stringify(arrays(root))),
    contentType: JSON_TYPE,
    resource: dirItem.resource,
    tree: dirItem.tree,
  };
  if (!byPath) {
    byPath = new Map();
    made.set(items, byPath);
  }
  byPath.set(base, item);
  return item;
}

/** Readability from a view's decisions (made once per view, endpoint-cache.ts decideAll). */
export function readableBy(decisions: ReadonlyMap<string, Decision>): (item: Item) => boolean {
  return (item) => decisions.get(`read ${item.resource}`)?.allowed === true;
}
