// Entity tags for metadata answers. An answer's ETag is a hash of exactly
// what is sent (its content type and bytes), not of (instance, version,
// path): an update that leaves a path's bytes alone leaves its ETag alone,
// so a guest that revalidates (If-None-Match) or waits for a change of one
// path (the long-poll) is not told "changed" because some other value of
// its instance moved. The same bytes give the same tag after a berthd or
// endpoint restart, on another host, and for a re-rendered view, with no
// counter anyone must keep. The tag is strong: equal tags mean equal bytes.
import { createHash } from 'node:crypto';
import type { Item } from './tree.js';

/**
 * Items are rendered once per caller view and one item is filed under every
 * EC2 version: each is hashed at most once, when first served, and the tag
 * goes with the item when the view is dropped.
 */
const tags = new WeakMap<Item, string>();

/** 128 bits of SHA-256 over the content type and the body, base64url, quoted (RFC 9110 strong ETag). */
export function etagOf(item: Pick<Item, 'body' | 'contentType'>): string {
  const kept = tags.get(item as Item);
  if (kept !== undefined) return kept;
  const h = createHash('sha256').update(item.contentType).update('\0').update(item.body);
  const tag = `"${h.digest().subarray(0, 16).toString('base64url')}"`;
  tags.set(item as Item, tag);
  return tag;
}

/** The longest If-None-Match looked at; a guest's own client sends one tag. */
const MAX_HEADER = 2048;

/**
 * Whether an If-None-Match header matches `tag` (RFC 9110 13.1.2): `*`, or
 * any listed tag by the weak comparison the header calls for (a `W/` prefix
 * is ignored). An absent, empty or oversized header matches nothing.
 */
export function noneMatch(header: string | string[] | undefined, tag: string): boolean {
  const raw = Array.isArray(header) ? header.join(',') : header;
  if (raw === undefined || raw === '' || raw.length > MAX_HEADER) return false;
  for (const part of raw.split(',')) {
    const t = part.trim();
    if (t === '*') return true;
    if ((t.startsWith('W/') ? t.slice(2) : t) === tag) return true;
  }
  return false;
}
