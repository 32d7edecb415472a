// The cluster side of instances: what the cluster's directory holds of one,
// how a create lands in two stores (the cluster's half first, so what a
// crash leaves is a reservation the host can sweep), and which conflicts are
// a race lost to another host rather than a refusal.
import { BerthError, couldNot } from '../../base/errors.js';
import type { BatchOp, Guard, Store } from '../../base/store.js';
import type { Instance } from '../api/types.js';

export interface ClusterSide {
  hostId: string;
  shared: Store;
  /** Throws BERTH_ERR_CLUSTER_UNAVAILABLE before a change starts when etcd is away. */
  requireConnected(verb: string, object: string): void;
  /** A round trip to etcd; throws BERTH_ERR_CLUSTER_UNAVAILABLE. */
  probe(verb: string, object: string): Promise<void>;
  connected(): boolean;
}

export const DIRECTORY_PREFIX = 'directory/';

/** What the cluster knows of an instance: enough to find it, never its secrets. */
export interface DirectoryEntry {
  id: string;
  name: string;
  host: string;
  runtime: Instance['runtime'];
  nics: { network: string; mac: string; ip: string }[];
  role?: string;
  image_sha256?: string;
  /** Its security groups: every host's sets for `group:` sources are built from these. */
  secgroups?: string[];
  created_at: string;
}

export function directoryEntry(rec: Instance, host: string): DirectoryEntry {
  return {
    id: rec.id,
    name: rec.name,
    host,
    runtime: rec.runtime,
    nics: rec.nics.map((n) => ({ network: n.network, mac: n.mac, ip: n.ip })),
    ...(rec.role ? { role: rec.role } : {}),
    ...(rec.image_sha256 ? { image_sha256: rec.image_sha256 } : {}),
    ...(rec.secgroups && rec.secgroups.length > 0 ? { secgroups: [...rec.secgroups] } : {}),
    created_at: rec.created_at,
  };
}

/** Lands the cluster half first (reservations can be swept), then the local half. */
export async function commitSplit(
  local: Store,
  shared: Store,
  parts: { local: BatchOp[]; localGuards: Guard[]; shared: BatchOp[]; sharedGuards: Guard[] },
  undoShared: () => Promise<void>,
): Promise<void> {
  if (local === shared) {
    await local.batch([...parts.local, ...parts.shared], {
      guards: [...parts.localGuards, ...parts.sharedGuards],
    });
    return;
  }
  if (parts.shared.length > 0) await shared.batch(parts.shared, { guards: parts.sharedGuards });
  try {
    if (parts.local.length > 0) await local.batch(parts.local, { guards: parts.localGuards });
  } catch (err) {
    await undoShared().catch(() => undefined);
    throw err;
  }
}

/** A create that lost its MAC or IP to another host between reading and writing: pick again. */
export function isAllocationRace(err: unknown): boolean {
  return (
    err instanceof BerthError && err.code === 'BERTH_ERR_CONFLICT' && /key "(mac|ip)\//.test(err.message)
  );
}

/**
 * What a create whose commit failed tells its caller: a taken id or name as
 * such, an allocation race as it is (the caller picks again), and any other
 * store failure with its own code (a full disk, etcd away).
 */
export function createCommitError(
  err: unknown,
  name: string,
  id: string,
  keys: { record: string; name: string; directory: string },
): unknown {
  if (!(err instanceof BerthError)) return err;
  const conflictOn = (key: string) =>
    err.code === 'BERTH_ERR_CONFLICT' && err.message.includes(`key "${key}"`);
  // Only the id's own guard failing means the id is taken; a full disk names the keys too.
  if (
    err.code === 'BERTH_ERR_CONFLICT' &&
    (err.message.includes(`key "${keys.record}" already exists`) ||
      err.message.includes(`key "${keys.directory}" already exists`))
  )
    return couldNot(
      'BERTH_ERR_CONFLICT',
      'create',
      'instance',
      name,
      `its new id "${id}" is already taken by another instance; nothing was written, try again`,
      { field: 'id' },
    );
  if (conflictOn(keys.name))
    return couldNot(
      'BERTH_ERR_ALREADY_EXISTS',
      'create',
      'instance',
      name,
      'an instance with that name exists',
      {
        field: 'name',
      },
    );
  if (isAllocationRace(err)) return err;
  return couldNot(err.code, 'create', 'instance', name, err);
}
