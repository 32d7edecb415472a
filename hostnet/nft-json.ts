// Reading `nft -j list …` output: the guard's and the security groups'
// observers both fold a listing into what the tables hold, by these shapes.

export type NftJson = Record<string, unknown>;

/** The listing's objects (`{table}`, `{set}`, `{rule}`…), in nft's order. */
export function nftItems(listing: unknown): NftJson[] {
  const list = (listing as { nftables?: unknown })?.nftables;
  return Array.isArray(list) ? (list as NftJson[]) : [];
}

/** A set's or map's elements: nft writes one element bare, several as a list, none as nothing. */
export function nftElements(set: NftJson): unknown[] {
  const elem = set.elem;
  if (elem === undefined) return [];
  return Array.isArray(elem) ? elem : [elem];
}

/** An element's value: nft wraps one that carries stateful data (a counter, a timeout) in {elem: {val}}. */
export function nftUnwrap(value: unknown): unknown {
  const inner = (value as { elem?: { val?: unknown } })?.elem;
  return inner && 'val' in inner ? inner.val : value;
}

/** What follows `prefix` in a rule's comment (berth's fingerprints); undefined when the comment is not one. */
export function commentAfter(comment: unknown, prefix: string): string | undefined {
  return typeof comment === 'string' && comment.startsWith(prefix) ? comment.slice(prefix.length) : undefined;
}
