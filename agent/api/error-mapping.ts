// Maps whatever a route threw (a BerthError, a fastify validation error, a
// parse error) onto the error catalog, and the catalog entry onto the wire.
import type { FastifyError } from 'fastify';
import { BerthError } from '../../base/errors.js';
import { fieldPath } from '../config/validate.js';
import type { ErrorBody } from './types.js';

/** Maps anything a handler threw onto the catalog. */
export function toBerthError(err: FastifyError | Error): BerthError {
  if (err instanceof BerthError) return err;
  const fe = err as FastifyError;
  if (fe.validation && fe.validation.length > 0) {
    const first = fe.validation[0] as {
      instancePath?: string;
      message?: string;
      params?: Record<string, unknown>;
    };
    const base = fieldPath(first.instancePath ?? '');
    const missing =
      (first.params?.requiredProperties as string[] | undefined)?.[0] ??
      (first.params?.missingProperty as string | undefined);
    const field =
      [fe.validationContext === 'body' ? '' : fe.validationContext, base, missing]
        .filter(Boolean)
        .join('.') || 'request';
    return new BerthError(
      'BERTH_ERR_INVALID_ARGUMENT',
      `${field}: ${missing ? 'is required' : (first.message ?? 'is invalid')}`,
      {
        field,
        cause: err,
      },
    );
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new BerthError('BERTH_ERR_INVALID_ARGUMENT', `could not parse request: ${fe.message}`, {
      cause: err,
    });
  }
  return new BerthError('BERTH_ERR_INTERNAL', `could not handle request: ${err.message}`, { cause: err });
}

export function errorBody(err: BerthError): ErrorBody {
  return { error: err.toJSON() };
}
