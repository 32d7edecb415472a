// Audience-bound identity tokens: a compact JWT (RFC 7519) signed with the
// host's Ed25519 metadata key (JWS alg EdDSA, RFC 8037), the same key that
// signs the EC2-style identity document and whose public half the guests'
// JWKS carries under kid = host id. A guest hands the token to a service it
// wants to prove itself to (GCE's `identity?audience=` flow); that service
// checks it with any JWT library against the JWKS, and `aud` stops a token
// given to one service from being replayed to another. Pure functions: the
// observed identity and the signer come from the caller (identity-tokens.ts).
import { randomBytes } from 'node:crypto';

/**
 * How long a token is valid. Short, because it is a bearer credential handed
 * to a third party: a leaked one is good for five minutes at most. Minting
 * costs the guest one local request, so a client that needs a token again
 * asks again instead of keeping one. Five minutes still covers a verifier
 * whose clock is a minute or two off, and bounds how long a key must stay in
 * the JWKS after it stops signing (rotation).
 */
export const TOKEN_LIFETIME_SECONDS = 300;

/** Audiences are URLs or client ids; 256 covers both and keeps a token small. */
export const AUDIENCE_MAX = 256;
/**
 * The characters of a URI (RFC 3986: unreserved, reserved and `%`). No
 * space, quote, control or non-ASCII character: `aud` is compared byte for
 * byte by verifiers, and a value that prints the same but differs must not
 * be mintable.
 */
const AUDIENCE_RE = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/;

export const AUDIENCE_PARAM = 'audience';

/** The audience query's problem, naming the field; undefined when there is exactly one good value. */
export function audienceProblem(values: readonly string[]): string | undefined {
  const field = `query parameter "${AUDIENCE_PARAM}"`;
  if (values.length === 0 || (values.length === 1 && values[0] === ''))
    return `${field} is required: the token is bound to the service that will verify it (e.g. ?${AUDIENCE_PARAM}=https://service.example)`;
  if (values.length > 1) return `${field} is given ${values.length} times; give it once`;
  const a = values[0] as string;
  if (a.length > AUDIENCE_MAX) return `${field} is ${a.length} characters long; at most ${AUDIENCE_MAX}`;
  if (!AUDIENCE_RE.test(a))
    return `${field} has characters outside a URI's (RFC 3986: letters, digits and -._~:/?#[]@!$&'()*+,;=%)`;
  return undefined;
}

/** The audience values of a raw query string (after `?`), decoded. */
export function audiencesOf(query: string): string[] {
  return new URLSearchParams(query).getAll(AUDIENCE_PARAM);
}

/** What the host observed and knows about the caller, for the claims. */
export interface TokenSubject {
  hostId: string;
  instance: string;
  name: string;
  network: string;
  mac: string;
  role?: string;
  imageSha256?: string;
}

export interface IdentityClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  instance_name: string;
  network: string;
  mac: string;
  host: string;
  role?: string;
  image_sha256?: string;
}

/** `iss` names the host: a URI (it has a colon, RFC 7519 4.1.1), `berth:host:<host id>`. */
export function issuerOf(hostId: string): string {
  return `berth:host:${hostId}`;
}

/**
 * The claims of one token. No `nbf`: a verifier whose clock runs behind the
 * host's would refuse a fresh token for a while; `exp` bounds the validity.
 */
export function identityClaims(
  s: TokenSubject,
  audience: string,
  nowMs: number,
  lifetime = TOKEN_LIFETIME_SECONDS,
): IdentityClaims {
  const iat = Math.floor(nowMs / 1000);
  return {
    iss: issuerOf(s.hostId),
    sub: s.instance,
    aud: audience,
    iat,
    exp: iat + lifetime,
    // Lets a verifier refuse a replay within the lifetime, and the audit trail name one token.
    jti: randomBytes(12).toString('base64url'),
    instance_name: s.name,
    network: s.network,
    mac: s.mac,
    host: s.hostId,
    ...(s.role ? { role: s.role } : {}),
    ...(s.imageSha256 ? { image_sha256: s.imageSha256 } : {}),
  };
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * A compact JWS over the claims. `sign` is the host key's Ed25519 signer
 * (keys.ts), which answers in base64; JWS wants base64url.
 */
export function signToken(claims: IdentityClaims, kid: string, sign: (data: string) => string): string {
  const input = `${b64url({ alg: 'EdDSA', typ: 'JWT', kid })}.${b64url(claims)}`;
  return `${input}.${Buffer.from(sign(input), 'base64').toString('base64url')}`;
}
