// What an operator hands an instance for its metadata: user-data, vendor-data,
// SSH keys, a role, the token setting and free-form meta. The bulky, possibly
// secret blobs live under their own store keys; the record keeps only their
// size and hash, so `instance show` never prints user-data.
import { createHash } from 'node:crypto';
import { invalidField } from '../../base/errors.js';
import type { BatchOp, Store } from '../../base/store.js';

export const USER_DATA_PREFIX = 'userdata/';
export const VENDOR_DATA_PREFIX = 'vendordata/';
export const PASSWORD_PREFIX = 'password/';
/** EC2's limit for user-data (16 KiB) is raised: cloud-config with certificates often exceeds it. */
export const MAX_BLOB_BYTES = 64 * 1024;

export interface MetadataInputs {
  user_data?: string;
  vendor_data?: string;
  ssh_keys?: { name: string; key: string }[];
  role?: string;
  tokens?: 'optional' | 'required';
  meta?: Record<string, string>;
}

export interface BlobInfo {
  bytes: number;
  sha256: string;
}

/** The fields the instance record carries. */
export interface MetadataFields {
  ssh_keys: { name: string; key: string }[];
  role?: string;
  tokens: 'optional' | 'required';
  meta: Record<string, string>;
  user_data?: BlobInfo;
  vendor_data?: BlobInfo;
}

function blob(field: string, b64: string | undefined): Buffer | undefined {
  if (b64 === undefined) return undefined;
  const buf = Buffer.from(b64, 'base64');
  if (buf.toString('base64').replace(/=+$/, '') !== b64.replace(/=+$/, ''))
    throw invalidField(field, 'must be base64');
  if (buf.length > MAX_BLOB_BYTES)
    throw invalidField(field, `is ${buf.length} bytes; at most ${MAX_BLOB_BYTES}`);
  return buf;
}

const info = (b: Buffer): BlobInfo => ({
  bytes: b.length,
  sha256: createHash('sha256').update(b).digest('hex'),
});

export interface PreparedInputs {
  fields: MetadataFields;
  ops(id: string): BatchOp[];
}

export function prepareInputs(input: MetadataInputs): PreparedInputs {
  const user = blob('user_data', input.user_data);
  const vendor = blob('vendor_data', input.vendor_data);
  const keys = input.ssh_keys ?? [];
  keys.forEach((k, i) => {
    if (!/^(ssh|ecdsa|sk-)[a-z0-9@.-]+ [A-Za-z0-9+/=]+( .*)?$/.test(k.key.trim()))
      throw invalidField(`ssh_keys.${i}`, 'is not an OpenSSH public key line');
    if (!/^[A-Za-z0-9@._-]{1,64}$/.test(k.name))
      throw invalidField(`ssh_keys.${i}.name`, 'letters, digits, @._- only');
  });
  for (const k of Object.keys(input.meta ?? {}))
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(k))
      throw invalidField(`meta.${k}`, 'keys are letters, digits, ._- only');
  const fields: MetadataFields = {
    ssh_keys: keys.map((k) => ({ name: k.name, key: k.key.trim() })),
    tokens: input.tokens ?? 'optional',
    meta: { ...(input.meta ?? {}) },
    ...(input.role ? { role: input.role } : {}),
    ...(user ? { user_data: info(user) } : {}),
    ...(vendor ? { vendor_data: info(vendor) } : {}),
  };
  return {
    fields,
    ops: (id) => [
      ...(user
        ? [{ type: 'put' as const, key: `${USER_DATA_PREFIX}${id}`, value: user.toString('base64') }]
        : []),
      ...(vendor
        ? [{ type: 'put' as const, key: `${VENDOR_DATA_PREFIX}${id}`, value: vendor.toString('base64') }]
        : []),
    ],
  };
}

/** The keys an instance's delete must drop with the record. */
export function inputKeys(id: string): string[] {
  return [`${USER_DATA_PREFIX}${id}`, `${VENDOR_DATA_PREFIX}${id}`, `${PASSWORD_PREFIX}${id}`];
}

export async function readBlob(store: Store, prefix: string, id: string): Promise<Buffer | undefined> {
  const b64 = await store.get<string>(`${prefix}${id}`);
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64');
}
