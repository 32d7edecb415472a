// Who may put an instance in a group (the seed: "joining needs sufficient
// permission"). The admin socket already limits callers to root and group
// berth; a group with join_gids narrows that to root and callers whose gid or
// supplementary groups include one of them. Leaving such a group needs the
// same: a guest in no group at all receives everything, so an unprivileged
// `--no-secgroups` would open a locked-down database to the world.
import { BerthError } from '../../base/errors.js';
import type { SecGroup } from '../api/types.js';

/** The caller as the kernel named it (SO_PEERCRED, /proc), or why it could not be named. */
export type Caller = { uid: number; gid: number; groups: number[] } | { error: string };

export function callerText(c: Caller): string {
  if ('error' in c) return `an unknown caller (${c.error})`;
  const extra = c.groups.filter((g) => g !== c.gid);
  return `uid ${c.uid} gid ${c.gid}${extra.length > 0 ? ` (groups ${extra.join(',')})` : ''}`;
}

/** May this caller change membership of g? Root always; else a gid in join_gids. */
export function mayJoin(g: Pick<SecGroup, 'name' | 'join_gids'>, c: Caller): boolean {
  if (!g.join_gids || g.join_gids.length === 0) return true;
  if ('error' in c) return false; // not knowing who asks is no permission
  if (c.uid === 0) return true;
  return g.join_gids.some((want) => want === c.gid || c.groups.includes(want));
}

/**
 * Throws BERTH_ERR_FORBIDDEN naming the first group the caller may not join
 * or leave. `changed` are the groups entering or leaving the instance's list.
 */
export function authorizeMembership(
  instance: string,
  changed: { group: Pick<SecGroup, 'name' | 'join_gids'>; verb: 'join' | 'leave' }[],
  caller: Caller,
): void {
  for (const { group, verb } of changed) {
    if (mayJoin(group, caller)) continue;
    throw new BerthError(
      'BERTH_ERR_FORBIDDEN',
      `could not ${verb === 'join' ? 'add' : 'remove'} instance "${instance}" ${verb === 'join' ? 'to' : 'from'} secgroup "${group.name}": ${verb === 'join' ? 'joining' : 'leaving'} it needs root or gid ${group.join_gids?.join(' or ')}; the caller is ${callerText(caller)}`,
      { field: 'secgroups' },
    );
  }
}

/** Which groups enter and which leave when `before` becomes `after`. */
export function membershipDiff(before: string[], after: string[]): { joined: string[]; left: string[] } {
  return {
    joined: after.filter((g) => !before.includes(g)),
    left: before.filter((g) => !after.includes(g)),
  };
}
