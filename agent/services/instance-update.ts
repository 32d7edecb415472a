// Changing a live instance's security groups: validate the new list, check
// the caller may join (and leave) what changes, then land the record and, in
// cluster mode, the directory entry every other host builds its sets from.
// The same list again writes nothing: PATCH is idempotent. Metadata inputs
// are patched in instance-meta-update.ts and land through commitUpdate too.
import { BerthError, couldNot } from '../../base/errors.js';
import type { BatchOp, Store } from '../../base/store.js';
import type { Instance, SecGroup } from '../api/types.js';
import {
  type ClusterSide,
  commitSplit,
  DIRECTORY_PREFIX,
  type DirectoryEntry,
  directoryEntry,
} from './instance-cluster.js';
import { authorizeMembership, type Caller, membershipDiff } from './secgroup-join.js';

/** What instances need of the group service. */
export interface SecGroupLookup {
  has(name: string): boolean;
  get(name: string): SecGroup;
}

export type { InstanceUpdate } from '../api/types.js';

/**
 * The list as stored: each group must exist (404 naming `secgroups.<i>`), a
 * name given twice counts once, order as given (it is what `show` prints).
 */
export function resolveSecgroups(list: string[] | undefined, groups: SecGroupLookup | undefined): string[] {
  const out: string[] = [];
  (list ?? []).forEach((name, i) => {
    if (!groups?.has(name))
      throw new BerthError(
        'BERTH_ERR_NOT_FOUND',
        `secgroups.${i}: could not find secgroup "${name}": no such group`,
        {
          field: `secgroups.${i}`,
        },
      );
    if (!out.includes(name)) out.push(name);
  });
  return out;
}

/** Refuses (403) when the caller may not join or leave a group that changes; undefined caller = berthd itself. */
export function authorizeChange(
  instance: string,
  before: string[],
  after: string[],
  groups: SecGroupLookup | undefined,
  caller: Caller | undefined,
): void {
  if (!caller) return;
  const { joined, left } = membershipDiff(before, after);
  const changed = [
    ...joined.map((g) => ({ group: groups?.get(g) as SecGroup, verb: 'join' as const })),
    // A group deleted meanwhile has no join_gids left to honour.
    ...left
      .filter((g) => groups?.has(g))
      .map((g) => ({ group: groups?.get(g) as SecGroup, verb: 'leave' as const })),
  ];
  authorizeMembership(instance, changed, caller);
}

/** The record with its new list; the field is absent when the list is empty, as for an instance never in a group. */
export function withSecgroups(rec: Instance, list: string[]): Instance {
  const { secgroups: _old, ...rest } = rec;
  return list.length > 0 ? { ...rest, secgroups: list } : rest;
}

export function sameList(a: string[] | undefined, b: string[]): boolean {
  const x = a ?? [];
  return x.length === b.length && x.every((g, i) => g === b[i]);
}

/**
 * Lands the record (with `ops`, its blobs) locally and its directory entry in
 * the cluster (cluster half first, like a create). The entry must still be
 * this host's: a host forgotten meanwhile does not get its instance back in
 * the directory. A change the directory does not carry (meta, keys,
 * user-data) is host-local and does not wait for etcd.
 */
export async function commitUpdate(
  store: Store,
  cluster: ClusterSide | undefined,
  key: string,
  before: Instance,
  next: Instance,
  ops: BatchOp[] = [],
): Promise<void> {
  const local: BatchOp[] = [{ type: 'put', key, value: next }, ...ops];
  const sameEntry =
    cluster !== undefined &&
    JSON.stringify(directoryEntry(before, cluster.hostId)) ===
      JSON.stringify(directoryEntry(next, cluster.hostId));
  if (!cluster || sameEntry) {
    await store.batch(local);
    return;
  }
  cluster.requireConnected('update', `instance "${next.name}"`);
  const dirKey = `${DIRECTORY_PREFIX}${next.id}`;
  const current = await cluster.shared.get<DirectoryEntry>(dirKey);
  if (!current || current.host !== cluster.hostId)
    throw couldNot(
      'BERTH_ERR_CONFLICT',
      'update',
      'instance',
      next.name,
      'the cluster directory no longer lists it on this host (was this host forgotten?)',
    );
  await commitSplit(
    store,
    cluster.shared,
    {
      local,
      localGuards: [],
      shared: [{ type: 'put', key: dirKey, value: directoryEntry(next, cluster.hostId) }],
      sharedGuards: [{ key: dirKey, equals: current }],
    },
    () => cluster.shared.batch([{ type: 'put', key: dirKey, value: directoryEntry(before, cluster.hostId) }]),
  );
}
