// Which host keys the cluster trusts, and what a signature over an identity
// document proves. Pure functions over the registry's records, so the rules
// (live and lost hosts count, a forgotten host only for a while) are tested
// without etcd and are the same for `identity verify` and the guests' JWKS.
import { createHash, createPublicKey, verify } from 'node:crypto';
import type { ForgottenHost, HostRecord } from '../cluster/registry.js';

export type HostState = 'alive' | 'lost' | 'forgotten';

/** A key that verifies documents: its host, the host's state and when it was forgotten. */
export interface TrustedKey {
  host: string;
  state: HostState;
  publicKeyPem: string;
  fingerprint: string;
  forgottenAt?: string;
}

export interface KeySources {
  hosts: { record: HostRecord; alive: boolean }[];
  forgotten: ForgottenHost[];
  /** How long a forgotten host's key still verifies, in hours (cluster.forgotten_key_hours). */
  forgottenKeyHours: number;
  now: number;
}

/** The moment a forgotten host's key stops verifying. */
export function keyExpiry(f: Pick<ForgottenHost, 'forgotten_at'>, hours: number): number {
  return Date.parse(f.forgotten_at) + hours * 3_600_000;
}

/**
 * Live and lost hosts, then forgotten hosts still inside the window. A host id
 * known both ways (forgotten, then registered again with a new key) keeps the
 * live record first; the old key still verifies for its window under the same id.
 */
export function trustedKeys(s: KeySources): TrustedKey[] {
  const out: TrustedKey[] = s.hosts.map(({ record, alive }) => ({
    host: record.id,
    state: alive ? 'alive' : 'lost',
    publicKeyPem: record.public_key_pem,
    fingerprint: record.fingerprint,
  }));
  for (const f of s.forgotten) {
    if (!(keyExpiry(f, s.forgottenKeyHours) > s.now)) continue;
    out.push({
      host: f.id,
      state: 'forgotten',
      publicKeyPem: f.public_key_pem,
      fingerprint: f.fingerprint,
      forgottenAt: f.forgotten_at,
    });
  }
  return out;
}

/** The soonest moment a trusted forgotten key expires (the key set changes then), or undefined. */
export function nextExpiry(s: KeySources): number | undefined {
  const times = s.forgotten.map((f) => keyExpiry(f, s.forgottenKeyHours)).filter((t) => t > s.now);
  return times.length > 0 ? Math.min(...times) : undefined;
}

export interface Jwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  use: 'sig';
  alg: 'EdDSA';
}

/** RFC 7638 thumbprint of an Ed25519 JWK (base64url SHA-256 of its required members). */
export function jwkThumbprint(x: string): string {
  return createHash('sha256').update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest('base64url');
}

/**
 * RFC 8037 JWKs, one per trusted key, kid = host id (what a document's hostId
 * and an identity token's header name). A kid names one key: a host forgotten
 * and registered again under its id with a new key (a reinstall) leaves its
 * old key trusted for a while, and two keys under one kid make standard
 * verifiers (jose) refuse every token of that host as ambiguous. So the
 * first key of an id (the live or lost record, listed first) keeps the bare
 * id and an older one is `<host>~<RFC 7638 thumbprint>` (`~` is not a host-id
 * character).
 */
export function jwks(keys: Pick<TrustedKey, 'host' | 'publicKeyPem'>[]): { keys: Jwk[] } {
  const named = new Set<string>();
  return {
    keys: keys.map((k) => {
      const jwk = createPublicKey(k.publicKeyPem).export({ format: 'jwk' }) as { x: string };
      const kid = named.has(k.host) ? `${k.host}~${jwkThumbprint(jwk.x)}` : k.host;
      named.add(k.host);
      return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid, use: 'sig', alg: 'EdDSA' };
    }),
  };
}

export interface VerifyResult {
  valid: boolean;
  /** The host the document names (hostId), when it names one. */
  host?: string;
  host_state?: HostState;
  fingerprint?: string;
  instance_id?: string;
  reason: string;
}

/**
 * Checks `signature` (base64 Ed25519) over the exact bytes of `document`
 * with the key of the host the document names. Every way it fails is a
 * result with a reason, not an exception: a refusal to report and audit.
 */
export function verifyIdentity(
  document: string,
  signature: string,
  keys: TrustedKey[],
  forgottenLongAgo: (host: string) => ForgottenHost | undefined = () => undefined,
): VerifyResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(document);
  } catch {
    return { valid: false, reason: 'the document is not JSON' };
  }
  const doc = (parsed ?? {}) as { hostId?: unknown; instanceId?: unknown };
  const instance = typeof doc.instanceId === 'string' ? { instance_id: doc.instanceId } : {};
  if (typeof doc.hostId !== 'string' || doc.hostId === '')
    return { valid: false, ...instance, reason: 'the document names no hostId' };
  const host = doc.hostId;
  const candidates = keys.filter((k) => k.host === host);
  if (candidates.length === 0) {
    const old = forgottenLongAgo(host);
    return old
      ? {
          valid: false,
          host,
          host_state: 'forgotten',
          fingerprint: old.fingerprint,
          ...instance,
          reason: `host "${host}" was forgotten at ${old.forgotten_at}, longer ago than its key is trusted`,
        }
      : { valid: false, host, ...instance, reason: `host "${host}" is not known to this cluster` };
  }
  const sig = Buffer.from(signature.trim(), 'base64');
  if (sig.length !== 64)
    return {
      valid: false,
      host,
      ...instance,
      reason: `the signature is not a base64 Ed25519 signature (${sig.length} bytes, want 64)`,
    };
  for (const k of candidates) {
    if (verify(null, Buffer.from(document), createPublicKey(k.publicKeyPem), sig))
      return {
        valid: true,
        host,
        host_state: k.state,
        fingerprint: k.fingerprint,
        ...instance,
        reason: `signed by host "${host}" (${k.state})`,
      };
  }
  const first = candidates[0] as TrustedKey;
  return {
    valid: false,
    host,
    host_state: first.state,
    fingerprint: first.fingerprint,
    ...instance,
    reason: `the signature does not match the document with host "${host}"'s key`,
  };
}

/** The JWKS document as guests get it. */
export function keySetText(keys: Pick<TrustedKey, 'host' | 'publicKeyPem'>[]): string {
  return `${JSON.stringify(jwks(keys), null, 2)}\n`;
}
