/**
 * Errors thrown by the client. Every error is a TollgateError; catch the
 * subclasses to tell bad input, credentials and an unreachable service
 * apart.
 */

/** The error codes of the Tollgate HTTP API (api/openapi.yaml, ErrorCode). */
export type ErrorCode =
  | 'invalid_json'
  | 'body_too_large'
  | 'invalid_key'
  | 'invalid_cost'
  | 'invalid_limit'
  | 'unknown_policy'
  | 'cost_exceeds_limit'
  | 'invalid_request_id'
  | 'too_many_checks'
  | 'unauthorized'
  | 'forbidden'
  | 'method_not_allowed'
  | 'not_found'
  | 'unavailable'
  | 'internal';

/** Details common to every TollgateError. */
export interface TollgateErrorDetails {
  /** The HTTP status the service answered, if it answered. */
  status?: number;
  /** The service's error code, or the client's for input it refused itself. */
  code?: ErrorCode | string;
  /** The X-Request-Id of the failed call. */
  requestId?: string;
  /** The underlying error (network failure, timeout), if any. */
  cause?: unknown;
}

/** The base class of the client's errors. */
export class TollgateError extends Error {
  readonly status: number | undefined;
  readonly code: ErrorCode | string | undefined;
  readonly requestId: string | undefined;

  constructor(message: string, details: TollgateErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.status = details.status;
    this.code = details.code;
    this.requestId = details.requestId;
  }
}

/**
 * The request was refused as bad input (HTTP 400, or by the client before
 * sending it): `code` says why, for example `invalid_limit`,
 * `unknown_policy` or `cost_exceeds_limit`. Retrying the same request fails
 * the same way.
 */
export class TollgateBadRequest extends TollgateError {
  declare readonly code: ErrorCode | string;
}

/**
 * The token is missing or unknown (401, code `unauthorized`), or not an
 * admin token where one is needed (403, code `forbidden`).
 */
export class TollgateAuth extends TollgateError {}

/**
 * The service could not be reached or did not answer in time, or answered
 * that its store is unavailable (503). A consume was retried once first.
 * With `failureMode: 'open'`, consume and peek answer a degraded result
 * instead of throwing this.
 */
export class TollgateUnavailable extends TollgateError {}
