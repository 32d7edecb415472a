// The one error catalog. Every error berth reports carries a stable code, the
// HTTP status the admin API answers with, and the cause it came from.
// docs/errors.md documents each code; test/unit/errors.test.ts keeps the two in step.

export const ERROR_CATALOG = {
  BERTH_ERR_INVALID_ARGUMENT: { status: 400, summary: 'a request or config field is missing or malformed' },
  BERTH_ERR_UNAUTHORIZED: {
    status: 401,
    summary: 'a credential is missing, expired or bound to another identity',
  },
  BERTH_ERR_FORBIDDEN: { status: 403, summary: 'the caller is known but not allowed to do this' },
  BERTH_ERR_NOT_FOUND: { status: 404, summary: 'the named object does not exist' },
  BERTH_ERR_ALREADY_EXISTS: { status: 409, summary: 'an object with that name or key already exists' },
  BERTH_ERR_CONFLICT: {
    status: 409,
    summary: 'the object is in use or the change clashes with existing state',
  },
  BERTH_ERR_KERNEL_FEATURE: { status: 422, summary: 'the running kernel lacks a feature the request needs' },
  BERTH_ERR_EXHAUSTED: { status: 503, summary: 'a pool (MAC addresses, IP addresses) has no free entry' },
  BERTH_ERR_NOT_IMPLEMENTED: { status: 501, summary: 'the feature has not landed yet' },
  BERTH_ERR_CONFIG: { status: 500, summary: 'the daemon configuration is invalid' },
  BERTH_ERR_STORE_LOCKED: { status: 500, summary: 'another berthd holds the state directory' },
  BERTH_ERR_STORE_CORRUPT: {
    status: 500,
    summary: 'the state store cannot be read; it is never reset silently',
  },
  BERTH_ERR_STORE_VERSION: { status: 500, summary: 'the state store was written by a newer berth' },
  BERTH_ERR_STORE_IO: { status: 500, summary: 'the state store could not be read or written' },
  BERTH_ERR_STORE_FULL: {
    status: 507,
    summary: 'the state store has no room to write; writes are refused until space is freed',
  },
  BERTH_ERR_SOCKET_IN_USE: { status: 500, summary: 'another process answers on the admin socket' },
  BERTH_ERR_HOST_OP: {
    status: 500,
    summary: 'an operation on the host (links, nftables, namespaces) failed',
  },
  BERTH_ERR_DAEMON_UNREACHABLE: {
    status: 503,
    summary: 'berthctl could not reach berthd on its admin socket',
  },
  BERTH_ERR_CLUSTER_UNAVAILABLE: {
    status: 503,
    summary: 'the cluster store (etcd) cannot be reached; guests keep being served, changes are refused',
  },
  BERTH_ERR_INTERNAL: { status: 500, summary: 'an unexpected failure inside berthd' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export interface BerthErrorOptions {
  cause?: unknown;
  /** The request or config field the error is about, as a dotted path. */
  field?: string;
}

const brand = Symbol.for('berth.error');

export class BerthError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options: BerthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BerthError';
    this.code = code;
    this.status = ERROR_CATALOG[code].status;
    this.field = options.field;
  }

  // A brand keeps instanceof working across two copies of this module
  // (dist/ and the .ts sources in tests).
  get [brand](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }

  toJSON(): { code: ErrorCode; message: string; field?: string } {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, field: this.field };
  }
}

/** Text of an unknown thrown value, for the "<cause>" part of a message. */
export function causeText(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  return String(cause);
}

/** `could not <verb> <object> "name": <cause>`, the one message shape berth uses. */
export function couldNot(
  code: ErrorCode,
  verb: string,
  object: string,
  name: string,
  cause: unknown,
  options: Omit<BerthErrorOptions, 'cause'> = {},
): BerthError {
  const reason = typeof cause === 'string' ? cause : causeText(cause);
  return new BerthError(code, `could not ${verb} ${object} "${name}": ${reason}`, { ...options, cause });
}

/**
 * A change refused because etcd does not answer: one message for the client,
 * the mirror and the probe, naming the endpoints tried and why.
 */
export function clusterUnavailable(
  verb: string,
  object: string,
  endpoints: readonly string[],
  cause: unknown,
): BerthError {
  const reason = typeof cause === 'string' ? cause : causeText(cause);
  return new BerthError(
    'BERTH_ERR_CLUSTER_UNAVAILABLE',
    `could not ${verb} ${object}: the cluster store is unreachable (etcd at ${endpoints.join(', ')}): ${reason}`,
    typeof cause === 'string' ? {} : { cause },
  );
}

/** A field-level validation failure: `<field>: <reason>`. */
export function invalidField(field: string, reason: string): BerthError {
  return new BerthError('BERTH_ERR_INVALID_ARGUMENT', `${field}: ${reason}`, { field });
}

export function isBerthError(value: unknown): value is BerthError {
  return value instanceof BerthError;
}
