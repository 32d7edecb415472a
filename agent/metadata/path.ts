// How a request's path names a metadata item, decided once where the URL is
// read, so that every check after it (the tree, the token and password
// routes, the item and its policy decision, the audit record) sees the same
// path.
//
// The rule, from what EC2 and nginx do:
// - Runs of `/` anywhere in the path are one `/`. nginx merges them by
//   default (`merge_slashes on`; nginx 1.22 answers `//a/b` and `/a//b` as
//   `/a/b`), EC2's IMDS answers them, and real clients send them: the AWS SDK
//   for JavaScript v3's MetadataService joins its endpoint's path `/` to the
//   `/latest/...` it is given, and asks for `//latest/meta-data/instance-id`.
// - A leaf asked for with a trailing slash answers as the leaf, and a
//   directory answers with or without one, as EC2 does (botocore asks for
//   `placement/availability-zone/`). nginx 404s a file with a slash; EC2 is
//   the model here.
// - The query string is not part of the path.
// - Nothing else is rewritten: `.` and `..` segments and percent-escapes
//   (`%2F`) are not resolved, so such a path is not found (404). Clients
//   resolve dot segments before sending (RFC 3986 5.2.4), and no berth path
//   holds `.`-segments or `%`, so a second spelling would serve no client.
//
// Policies cannot be bypassed by spelling: a decision is made on the item's
// resource, and a spelling either normalizes to the item (and gets its
// decision) or names nothing (404). The clean path, the one almost every
// request carries, is returned as the same string: no allocation per request.
import type { Item } from './tree.js';

const SLASH = 47; // '/'

/** The path part of a request URL, its runs of `/` merged. */
export function requestPath(url: string): string {
  const q = url.indexOf('?');
  const dbl = url.indexOf('//');
  if (dbl < 0 || (q >= 0 && dbl > q)) return q < 0 ? url : url.slice(0, q);
  return (q < 0 ? url : url.slice(0, q)).replace(/\/{2,}/g, '/');
}

/** The query string of a request URL, without its `?` ('' when there is none). */
export function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q + 1);
}

/**
 * The item a normalized path names: the path itself, else the other spelling
 * of its trailing slash (a leaf with one, a directory without). The second
 * lookup, and its string, happen only when the first misses.
 */
export function itemAt(items: ReadonlyMap<string, Item>, path: string): Item | undefined {
  const hit = items.get(path);
  if (hit !== undefined || path === '/') return hit;
  return items.get(path.charCodeAt(path.length - 1) === SLASH ? path.slice(0, -1) : `${path}/`);
}
