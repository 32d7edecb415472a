// IMDSv2-style session tokens without a server-side table: a token is
// base64url(iv ‖ AES-256-GCM(expiry) ‖ tag), with the caller's observed
// identity (network, instance, MAC, port) as associated data. A token lifted
// from one guest fails authentication on any other identity, and nothing
// needs to be remembered to check it.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export const MIN_TTL_SECONDS = 1;
export const MAX_TTL_SECONDS = 21_600;
/** 12 + 8 + 16 bytes is 48 base64url characters; anything longer is refused before decrypting. */
export const TOKEN_LENGTH_LIMIT = 64;
export const TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';
export const TOKEN_HEADERS = ['x-aws-ec2-metadata-token', 'x-metadata-token'] as const;

const IV_BYTES = 12;
const TAG_BYTES = 16;
const BODY_BYTES = 8;

export interface TokenIdentity {
  network: string;
  instance: string;
  mac: string;
  port: string;
}

export function tokenAad(who: TokenIdentity): Buffer {
  return Buffer.from(`berth-imds-v1|${who.network}|${who.instance}|${who.mac}|${who.port}`);
}

/** The TTL header's problem, in words that say how to fix it; undefined when fine. */
export function ttlProblem(raw: string | string[] | undefined): string | undefined {
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value === '')
    return `missing ${TTL_HEADER}; send a value between ${MIN_TTL_SECONDS} and ${MAX_TTL_SECONDS}`;
  if (!/^\d{1,6}$/.test(value.trim()))
    return `${TTL_HEADER} "${value}" is not a whole number of seconds between ${MIN_TTL_SECONDS} and ${MAX_TTL_SECONDS}`;
  const ttl = Number(value);
  if (ttl < MIN_TTL_SECONDS || ttl > MAX_TTL_SECONDS)
    return `${TTL_HEADER} ${ttl} is out of range; send a value between ${MIN_TTL_SECONDS} and ${MAX_TTL_SECONDS}`;
  return undefined;
}

export type TokenCheck = { ok: true } | { ok: false; reason: string };

/** Tokens remembered as checked, per authority; a guest holds one or two at a time. */
const CHECKED_LIMIT = 64;

export class TokenAuthority {
  /**
   * Tokens that already authenticated, with their expiry and the identity
   * they were bound to. A guest sends the same token with every request;
   * a cipher context per request was the token path's main cost.
   */
  private readonly checked = new Map<string, { aad: string; expiry: number }>();

  constructor(
    private readonly key: Buffer,
    private readonly now: () => number = Date.now,
  ) {
    if (key.length !== 32) throw new Error('token key must be 32 bytes (AES-256)');
  }

  issue(who: TokenIdentity, ttlSeconds: number): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(tokenAad(who));
    const body = Buffer.alloc(BODY_BYTES);
    body.writeBigUInt64BE(BigInt(this.now() + ttlSeconds * 1000));
    const sealed = Buffer.concat([cipher.update(body), cipher.final()]);
    return Buffer.concat([iv, sealed, cipher.getAuthTag()]).toString('base64url');
  }

  check(token: string, who: TokenIdentity): TokenCheck {
    if (token.length > TOKEN_LENGTH_LIMIT) return { ok: false, reason: 'token too long' };
    const aad = tokenAad(who);
    const seen = this.checked.get(token);
    if (seen && seen.aad === aad.toString('latin1')) {
      if (seen.expiry > this.now()) return { ok: true };
      this.checked.delete(token);
      return { ok: false, reason: 'token expired' };
    }
    const raw = Buffer.from(token, 'base64url');
    if (raw.length !== IV_BYTES + BODY_BYTES + TAG_BYTES) return { ok: false, reason: 'token malformed' };
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, IV_BYTES));
      decipher.setAAD(aad);
      decipher.setAuthTag(raw.subarray(IV_BYTES + BODY_BYTES));
      const body = Buffer.concat([
        decipher.update(raw.subarray(IV_BYTES, IV_BYTES + BODY_BYTES)),
        decipher.final(),
      ]);
      const expiry = Number(body.readBigUInt64BE());
      if (expiry <= this.now()) return { ok: false, reason: 'token expired' };
      if (this.checked.size >= CHECKED_LIMIT) this.checked.clear();
      this.checked.set(token, { aad: aad.toString('latin1'), expiry });
      return { ok: true };
    } catch {
      return { ok: false, reason: 'token not issued to this instance' };
    }
  }
}
