// The host's metadata keys, made once and kept in the store: a 256-bit
// AES-GCM key for IMDSv2 tokens and an Ed25519 key pair that signs instance
// identity documents. A reservation batch (guard `absent`) means two
// processes racing on a fresh store still end up with one key set.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import type { Store } from '../../base/store.js';

export const KEYS_KEY = 'meta/metadata_keys';

interface StoredKeys {
  token_key: string;
  sign_private_pem: string;
  sign_public_pem: string;
  created_at: string;
}

export interface MetadataKeys {
  tokenKey: Buffer;
  /** Signs with the host's Ed25519 key; returns base64. */
  sign(data: string | Buffer): string;
  publicKeyPem: string;
}

function fromStored(s: StoredKeys): MetadataKeys {
  const priv = createPrivateKey(s.sign_private_pem);
  return {
    tokenKey: Buffer.from(s.token_key, 'base64'),
    sign: (data) => sign(null, Buffer.from(data), priv).toString('base64'),
    publicKeyPem: s.sign_public_pem,
  };
}

export function generateKeys(): StoredKeys {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    token_key: randomBytes(32).toString('base64'),
    sign_private_pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    sign_public_pem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    created_at: new Date().toISOString(),
  };
}

export async function loadOrCreateKeys(store: Store): Promise<MetadataKeys> {
  const stored = await store.get<StoredKeys>(KEYS_KEY);
  if (stored) return fromStored(stored);
  const fresh = generateKeys();
  try {
    await store.batch([{ type: 'put', key: KEYS_KEY, value: fresh }], {
      guards: [{ key: KEYS_KEY, absent: true }],
    });
    return fromStored(fresh);
  } catch (err) {
    const winner = await store.get<StoredKeys>(KEYS_KEY);
    if (winner) return fromStored(winner);
    throw err;
  }
}

/** For guests and tests: does signature (base64) verify over data with the host's public key? */
export function verifySignature(publicKeyPem: string, data: string | Buffer, signature: string): boolean {
  return verify(null, Buffer.from(data), createPublicKey(publicKeyPem), Buffer.from(signature, 'base64'));
}
