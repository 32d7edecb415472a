// `host forget`: the only way a dead host's MACs and IPs come back to the
// cluster. Each of its instances goes in one guarded transaction (directory
// entry, name, and its MAC and IP records moved into quarantine, not freed);
// then its host record moves to forgotten/. Every op is guarded by the value
// it was computed from, so a record another host changed meanwhile is left
// alone rather than overwritten, and running forget again finishes the job.
import { BerthError, couldNot } from '../../base/errors.js';
import type { BatchOp, Guard, Store } from '../../base/store.js';
import type { AllocRecord } from '../../hostnet/alloc/allocator.js';
import { IP_KEY_PREFIX } from '../../hostnet/alloc/ipam.js';
import { MAC_KEY_PREFIX } from '../../hostnet/alloc/mac-pool.js';
import {
  ALIVE_PREFIX,
  FORGOTTEN_PREFIX,
  type ForgottenHost,
  HOST_PREFIX,
  type HostRecord,
  stillAlive,
} from '../cluster/registry.js';
import { DIRECTORY_PREFIX, type DirectoryEntry, NAME_PREFIX } from './instances.js';

/** What forget reads: this host's copy of the cluster (synchronous). */
export interface ClusterView {
  get<T>(key: string): T | undefined;
  list<T>(prefix: string): { key: string; value: T }[];
}

export interface Quarantine {
  macSeconds: number;
  ipSeconds: number;
}

export interface EntryBatch {
  ops: BatchOp[];
  guards: Guard[];
  /** Keys moved into quarantine by this batch. */
  quarantined: string[];
  /** MAC/IP keys not this instance's assigned record any more: left as they are. */
  leftAlone: string[];
}

/** The transaction that takes one directory entry of a forgotten host out of the cluster. */
export function entryBatch(entry: DirectoryEntry, view: ClusterView, q: Quarantine, now: number): EntryBatch {
  const dirKey = `${DIRECTORY_PREFIX}${entry.id}`;
  const nameKey = `${NAME_PREFIX}${entry.name}`;
  const out: EntryBatch = {
    ops: [{ type: 'del', key: dirKey }],
    guards: [{ key: dirKey, equals: entry }],
    quarantined: [],
    leftAlone: [],
  };
  if (view.get<string>(nameKey) === entry.id) {
    out.ops.push({ type: 'del', key: nameKey });
    out.guards.push({ key: nameKey, equals: entry.id });
  }
  const hold = (key: string, seconds: number) => {
    const rec = view.get<AllocRecord>(key);
    if (rec?.state !== 'assigned' || rec.instance !== entry.id) {
      if (rec) out.leftAlone.push(key);
      return;
    }
    const held: AllocRecord = { ...rec, state: 'quarantined', until: now + seconds * 1000 };
    out.ops.push({ type: 'put', key, value: held });
    out.guards.push({ key, equals: rec });
    out.quarantined.push(key);
  };
  for (const nic of entry.nics) {
    hold(`${MAC_KEY_PREFIX}${nic.mac}`, q.macSeconds);
    hold(`${IP_KEY_PREFIX}${nic.network}/${nic.ip}`, q.ipSeconds);
  }
  return out;
}

/** The transaction that moves the host record to forgotten/ and drops its liveness key. */
export function hostBatch(
  record: HostRecord,
  by: string,
  now: number,
): { ops: BatchOp[]; guards: Guard[]; forgotten: ForgottenHost } {
  const forgotten: ForgottenHost = { ...record, forgotten_at: new Date(now).toISOString(), forgotten_by: by };
  return {
    forgotten,
    ops: [
      { type: 'put', key: `${FORGOTTEN_PREFIX}${record.id}`, value: forgotten },
      { type: 'del', key: `${HOST_PREFIX}${record.id}` },
      { type: 'del', key: `${ALIVE_PREFIX}${record.id}` },
    ],
    // The host must not have come back (alive) or re-registered meanwhile.
    guards: [
      { key: `${HOST_PREFIX}${record.id}`, equals: record },
      { key: `${ALIVE_PREFIX}${record.id}`, absent: true },
    ],
  };
}

export interface ForgetResult {
  host: string;
  /** true when the host was forgotten already and nothing of it was left. */
  already: boolean;
  instances: { id: string; name: string }[];
  quarantined: string[];
  left_alone: string[];
  forgotten_at: string;
  forgotten_by: string;
}

export interface ForgetDeps {
  view: ClusterView;
  /** Writes to the cluster; returns once this host's copy has the change. */
  store: Store;
  quarantine: Quarantine;
  selfId: string;
  isAlive(id: string): boolean;
  now?: () => number;
}

const TRIES = 4;

/** Forgets `id` (see the file comment); throws the refusals (alive, self, unknown). */
export async function forgetHost(id: string, by: string, d: ForgetDeps): Promise<ForgetResult> {
  const now = d.now ?? Date.now;
  if (id === d.selfId)
    throw couldNot('BERTH_ERR_CONFLICT', 'forget', 'host', id, 'it is this host; run forget on another host');
  const record = d.view.get<HostRecord>(`${HOST_PREFIX}${id}`);
  const old = d.view.get<ForgottenHost>(`${FORGOTTEN_PREFIX}${id}`);
  if (!record && !old)
    throw couldNot('BERTH_ERR_NOT_FOUND', 'forget', 'host', id, 'no such host in the cluster');
  if (d.isAlive(id)) throw stillAlive(id);
  const result: ForgetResult = {
    host: id,
    already: !record,
    instances: [],
    quarantined: [],
    left_alone: [],
    forgotten_at: old?.forgotten_at ?? '',
    forgotten_by: old?.forgotten_by ?? by,
  };
  for (const { value: entry } of d.view.list<DirectoryEntry>(DIRECTORY_PREFIX)) {
    if (entry.host !== id) continue;
    result.already = false;
    for (let attempt = 1; ; attempt++) {
      // Re-read each try: a guard that failed means this copy was behind.
      const current = d.view.get<DirectoryEntry>(`${DIRECTORY_PREFIX}${entry.id}`);
      if (!current) break;
      const b = entryBatch(current, d.view, d.quarantine, now());
      try {
        await d.store.batch(b.ops, { guards: b.guards });
        result.instances.push({ id: current.id, name: current.name });
        result.quarantined.push(...b.quarantined);
        result.left_alone.push(...b.leftAlone);
        break;
      } catch (err) {
        if (!(err instanceof BerthError && err.code === 'BERTH_ERR_CONFLICT') || attempt >= TRIES) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }
  if (record) {
    const h = hostBatch(record, by, now());
    await d.store.batch(h.ops, { guards: h.guards }).catch((err) => {
      if (err instanceof BerthError && err.code === 'BERTH_ERR_CONFLICT')
        throw couldNot(
          'BERTH_ERR_CONFLICT',
          'forget',
          'host',
          id,
          'it came back or registered again meanwhile',
        );
      throw err;
    });
    result.forgotten_at = h.forgotten.forgotten_at;
    result.forgotten_by = by;
  }
  return result;
}
