/**
 * @tollgate/client: a client of the Tollgate rate-limit and quota service
 * (`tollgate serve`) and Express middleware on top of it. No runtime
 * dependencies: it uses the global fetch of Node 18 and newer.
 */
export {
  DEFAULT_TIMEOUT_MS,
  Tollgate,
  type Algorithm,
  type ConsumeRequest,
  type Counted,
  type InlineLimit,
  type InlineLimits,
  type LimitResult,
  type PeekRequest,
  type PolicyRef,
  type RateLimitHeaders,
  type RefundRequest,
  type ResetRequest,
  type Result,
  type Target,
  type TollgateOptions,
  type Uncounted,
} from './client.js';
export { type BatchCheck } from './batch.js';
export {
  TollgateAuth,
  TollgateBadRequest,
  TollgateError,
  TollgateUnavailable,
  type ErrorCode,
  type TollgateErrorDetails,
} from './errors.js';
export {
  clientIP,
  rateLimit,
  type MiddlewareRequest,
  type MiddlewareResponse,
  type NextFunction,
  type RateLimitedBody,
  type RateLimitOptions,
} from './express.js';
