// Orphan sweep: berth removes only what carries its prefix and is no longer
// desired, and one stubborn leftover never stops the rest from going.
import type { Names } from '../names.js';
import type { LinkInfo, LinkOps } from './link-ops.js';

export interface OwnedObjects {
  /** Owned links in the root namespace (bridges, trunk bridges, subinterfaces, endpoint veths, ports). */
  links: LinkInfo[];
  netns: string[];
}

export interface Desired {
  links: Iterable<string>;
  netns: Iterable<string>;
}

export async function listOwned(ops: LinkOps, names: Names): Promise<OwnedObjects> {
  const [links, netns] = await Promise.all([ops.listLinks(), ops.listNetns()]);
  return {
    links: links.filter((l) => names.owns(l.name)),
    netns: netns.filter((n) => names.ownsNetns(n)),
  };
}

export interface SweepResult {
  removedLinks: string[];
  removedNetns: string[];
}

/**
 * Removes owned objects absent from `desired`. Namespaces go first: deleting
 * one takes the veth ends inside it, and their root ends with them.
 * Failures are gathered into one AggregateError after every removal was tried.
 */
export async function sweepOrphans(ops: LinkOps, names: Names, desired: Desired): Promise<SweepResult> {
  const wantLinks = new Set(desired.links);
  const wantNetns = new Set(desired.netns);
  const owned = await listOwned(ops, names);
  const errors: Error[] = [];
  const result: SweepResult = { removedLinks: [], removedNetns: [] };
  const attempt = async (fn: () => Promise<void>, done: () => void) => {
    try {
      await fn();
      done();
    } catch (err) {
      errors.push(err instanceof Error ? err : new Error(String(err)));
    }
  };
  for (const ns of owned.netns) {
    if (wantNetns.has(ns)) continue;
    await attempt(
      () => ops.deleteNetns(ns),
      () => result.removedNetns.push(ns),
    );
  }
  // Resolver folders of owned namespaces deleted behind berth's back (deleteNetns takes its own).
  await attempt(
    async () => {
      const live = new Set(await ops.listNetns());
      for (const ns of await ops.listNetnsEtc())
        if (names.ownsNetns(ns) && !live.has(ns)) await ops.removeNetnsEtc(ns);
    },
    () => undefined,
  );
  // A root end whose namespace just went may already be gone: deleteLink takes that as success.
  for (const link of owned.links.filter((l) => !wantLinks.has(l.name))) {
    await attempt(
      () => ops.deleteLink(link.name),
      () => result.removedLinks.push(link.name),
    );
  }
  if (errors.length > 0) {
    throw new AggregateError(
      errors,
      `could not sweep ${errors.length} orphaned host object(s); first was: ${errors[0]?.message}`,
    );
  }
  return result;
}
