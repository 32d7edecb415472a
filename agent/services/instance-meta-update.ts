// Changing what a live instance's metadata is made of: meta (a merge patch),
// SSH keys, user-data, vendor-data, the role and the token setting. Every
// value is checked the way a create checks it (metadata/inputs.ts) before
// anything is written, so a bad field names itself and nothing is half
// applied; the record and its blobs then land in one batch. A change that
// changes something bumps the instance's metadata version, and is described
// for the audit log by what changed, never by secret values: user-data and
// vendor-data by size and hash, SSH keys by name and fingerprint, meta by
// key (a tag's value may be a secret an operator put there).
import { createHash } from 'node:crypto';
import { invalidField } from '../../base/errors.js';
import type { BatchOp } from '../../base/store.js';
import { type Instance, type InstanceUpdate, ROLE_PATTERN } from '../api/types.js';
import {
  type BlobInfo,
  type MetadataInputs,
  prepareInputs,
  USER_DATA_PREFIX,
  VENDOR_DATA_PREFIX,
} from '../metadata/inputs.js';

/** The most meta keys an instance carries (as many as a create may give). */
export const MAX_META_KEYS = 64;
const ROLE_RE = new RegExp(ROLE_PATTERN);

/** What an update changed, as the audit record's detail carries it. */
export interface UpdateSummary {
  /** Names of the fields that changed, in a fixed order; empty for an update that changed nothing. */
  changed: string[];
  metadata_version?: { from: number; to: number };
  meta?: { set: string[]; removed: string[] };
  user_data?: { from: BlobInfo | null; to: BlobInfo | null };
  vendor_data?: { from: BlobInfo | null; to: BlobInfo | null };
  ssh_keys?: { from: string[]; to: string[] };
  role?: { from: string | null; to: string | null };
  tokens?: { from: string; to: string };
  secgroups?: { from: string[]; to: string[] };
}

export interface MetadataChange {
  /** The record with the new inputs and version; the same object when nothing changed. */
  next: Instance;
  /** The blob writes that go in the record's batch. */
  ops: BatchOp[];
  summary: UpdateSummary;
}

/** An instance created before versions existed is at version 1. */
export const metadataVersion = (rec: Instance): number => rec.metadata_version ?? 1;

/** `name SHA256:…` as `ssh-keygen -l` prints the fingerprint: enough to tell keys apart, nothing to log in with. */
export function keyLabel(k: { name: string; key: string }): string {
  const blob = Buffer.from(k.key.split(/\s+/)[1] ?? '', 'base64');
  const fp = createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
  return `${k.name} SHA256:${fp}`;
}

const sameKeys = (a: Instance['ssh_keys'], b: Instance['ssh_keys']) =>
  JSON.stringify(a ?? []) === JSON.stringify(b ?? []);

/**
 * Validates the metadata fields of `patch` against `rec` and computes the
 * record they make. Throws BERTH_ERR_INVALID naming the field (`meta.k`,
 * `ssh_keys.0`, `user_data`, `role`) before anything is written.
 */
export function applyMetadataPatch(rec: Instance, patch: InstanceUpdate): MetadataChange {
  const meta = mergeMeta(rec.meta ?? {}, patch.meta);
  if (patch.role !== undefined && patch.role !== null && !ROLE_RE.test(patch.role))
    throw invalidField('role', `"${patch.role}" must match ${ROLE_PATTERN}`);
  // The same checks as a create's, on exactly the values given.
  const given: MetadataInputs = {
    ...(typeof patch.user_data === 'string' ? { user_data: patch.user_data } : {}),
    ...(typeof patch.vendor_data === 'string' ? { vendor_data: patch.vendor_data } : {}),
    ...(patch.ssh_keys !== undefined ? { ssh_keys: patch.ssh_keys } : {}),
    ...(meta !== undefined ? { meta } : {}),
  };
  const prepared = prepareInputs(given);
  const f = prepared.fields;

  const summary: UpdateSummary = { changed: [] };
  const ops: BatchOp[] = [];
  let next: Instance = { ...rec };
  const note = (field: keyof UpdateSummary & string, detail: unknown) => {
    summary.changed.push(field);
    (summary as unknown as Record<string, unknown>)[field] = detail;
  };

  if (meta !== undefined) {
    const old = rec.meta ?? {};
    const set = Object.keys(meta).filter((k) => old[k] !== meta[k]);
    const removed = Object.keys(old).filter((k) => !(k in meta));
    if (set.length + removed.length > 0) {
      next.meta = f.meta;
      note('meta', { set: set.sort(), removed: removed.sort() });
    }
  }
  for (const [field, prefix] of [
    ['user_data', USER_DATA_PREFIX],
    ['vendor_data', VENDOR_DATA_PREFIX],
  ] as const) {
    const asked = patch[field];
    if (asked === undefined) continue;
    const from = rec[field] ?? null;
    const to = asked === null ? null : (f[field] ?? null);
    if (from?.sha256 === to?.sha256 && from?.bytes === to?.bytes) continue;
    if (to) next[field] = to;
    else delete next[field];
    ops.push(
      ...prepared.ops(rec.id).filter((op) => op.key.startsWith(prefix)),
      ...(to ? [] : [{ type: 'del' as const, key: `${prefix}${rec.id}` }]),
    );
    note(field, { from, to });
  }
  if (patch.ssh_keys !== undefined && !sameKeys(rec.ssh_keys, f.ssh_keys)) {
    next.ssh_keys = f.ssh_keys;
    note('ssh_keys', { from: (rec.ssh_keys ?? []).map(keyLabel), to: f.ssh_keys.map(keyLabel) });
  }
  if (patch.role !== undefined && (patch.role ?? undefined) !== rec.role) {
    if (patch.role === null) delete next.role;
    else next.role = patch.role;
    note('role', { from: rec.role ?? null, to: patch.role });
  }
  if (patch.tokens !== undefined && patch.tokens !== (rec.tokens ?? 'optional')) {
    next.tokens = patch.tokens;
    note('tokens', { from: rec.tokens ?? 'optional', to: patch.tokens });
  }
  if (summary.changed.length === 0) return { next: rec, ops: [], summary };
  const from = metadataVersion(rec);
  next = { ...next, metadata_version: from + 1 };
  summary.metadata_version = { from, to: from + 1 };
  return { next, ops, summary };
}

/** The instance's meta after a merge patch (RFC 7396): undefined when the patch has none. */
function mergeMeta(
  old: Record<string, string>,
  patch: Record<string, string | null> | undefined,
): Record<string, string> | undefined {
  if (patch === undefined) return undefined;
  const out = { ...old };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  const n = Object.keys(out).length;
  if (n > MAX_META_KEYS) throw invalidField('meta', `would have ${n} keys; at most ${MAX_META_KEYS}`);
  return out;
}
