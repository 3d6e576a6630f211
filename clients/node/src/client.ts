import { randomUUID } from 'node:crypto';

import { batchBody, batchResults, type BatchCheck } from './batch.js';
import {
  TollgateAuth,
  TollgateBadRequest,
  TollgateError,
  TollgateUnavailable,
  type ErrorCode,
} from './errors.js';

/** How a limit counts; see the Tollgate README. */
export type Algorithm = 'sliding_log' | 'sliding_window' | 'gcra';

/** A limit given with the request instead of a policy of the service. */
export interface InlineLimit {
  /** Units that fit in one window: 1 to 10^15. */
  limit: number;
  /**
   * The rolling window: a Go duration string such as `"1h"`, `"1m30s"` or
   * `"250ms"`, or a number of milliseconds. 1 ms to 30 days.
   */
  window: string | number;
  /** Default `sliding_log` (exact). */
  algorithm?: Algorithm;
  policy?: undefined;
  limits?: undefined;
}

/** A policy of the service's `--config` file, by name. */
export interface PolicyRef {
  policy: string;
  limit?: undefined;
  window?: undefined;
  algorithm?: undefined;
  limits?: undefined;
}

/**
 * Several inline limits of the key, checked together: allowed only if the
 * cost fits all (1 to 8), and a denial records nothing in any.
 */
export interface InlineLimits {
  limits: InlineLimit[];
  policy?: undefined;
  limit?: undefined;
  window?: undefined;
  algorithm?: undefined;
}

/** What a check applies to: a named policy, an inline limit, or several. */
export type Target = PolicyRef | InlineLimit | InlineLimits;

/** A consume: spend `cost` units of `key` if they fit. */
export type ConsumeRequest = Target & {
  /** What is limited, such as a customer id: 1 to 512 bytes. */
  key: string;
  /** Units to spend, at least 1. Default 1. */
  cost?: number;
  /**
   * Identifies this consume so that a retry within 10 s is not counted
   * twice. Default: a new random UUID per call (the client's own retry
   * reuses it). Set it to reuse one across your own retries.
   */
  requestId?: string;
  /** Aborts the call (on top of the client's timeout). */
  signal?: AbortSignal;
};

/** A peek: what a consume of 1 unit would get, recording nothing. */
export type PeekRequest = Target & { key: string; signal?: AbortSignal };

/** A refund: give `cost` units of `key` back (never retried). */
export type RefundRequest = Target & { key: string; cost?: number; signal?: AbortSignal };

/** A reset: forget `key` under `policy`, or the inline key without one. */
export interface ResetRequest {
  key: string;
  policy?: string;
  signal?: AbortSignal;
}

/** The RateLimit header fields the service sent, to pass on to a client. */
export interface RateLimitHeaders {
  /** `RateLimit-Policy`, e.g. `"api-hourly";q=100;w=3600`. */
  policy?: string;
  /** `RateLimit`, e.g. `"api-hourly";r=97;t=3600`. */
  rateLimit?: string;
  /** `Retry-After` in whole seconds (on a denial). */
  retryAfter?: string;
}

/** A result with the usage as of the check. */
export interface Counted {
  /** Whether the request fits (a refund: always true). */
  allowed: boolean;
  /** The limit's units. */
  limit: number;
  /** Units in use in the window, this request's included when allowed. */
  used: number;
  /** Units left in the window. */
  remaining: number;
  /** Milliseconds until the same request would first fit; 0 when allowed. */
  retryAfterMs: number;
  /** Milliseconds until usage falls to 0. */
  resetAfterMs: number;
  /** A shadow policy would have denied; allowed is true anyway. */
  shadowDenied: boolean;
  /**
   * null, or `local-fallback`: the service's store was unavailable and a
   * fail_local policy answered from the service instance's memory.
   */
  degraded: null | 'local-fallback';
  headers: RateLimitHeaders;
  /** The X-Request-Id of the call. */
  requestId: string;
  /**
   * For several limits (inline `limits`, or a policy of several): each
   * limit's figures, in order; the fields above are the tightest limit's.
   */
  limits?: LimitResult[];
}

/** One limit's part of a result of several limits. */
export interface LimitResult {
  /** Its name in the RateLimit-Policy header, `<policy>/<window>`. */
  name: string;
  limit: number;
  window: string;
  algorithm: Algorithm;
  allowed: boolean;
  used: number;
  remaining: number;
  retryAfterMs: number;
  resetAfterMs: number;
}

/** A request let through without knowing the usage. */
export interface Uncounted {
  allowed: true;
  /** The limit's units, when known. */
  limit: number | null;
  used: null;
  remaining: null;
  retryAfterMs: 0;
  resetAfterMs: null;
  shadowDenied: false;
  /**
   * `store-unavailable`: the service's store failed and the policy is
   * fail_open. `unreachable`: the service could not be reached (or failed)
   * and the client's failureMode is `open`.
   */
  degraded: 'store-unavailable' | 'unreachable';
  headers: RateLimitHeaders;
  requestId: string;
  /** For `unreachable`: the error the call failed with. */
  error?: TollgateError;
}

/**
 * What consume and peek return: Counted, or Uncounted when the request was
 * let through without the usage. `used === null` tells them apart (and
 * narrows the type).
 */
export type Result = Counted | Uncounted;

/** Options of a Tollgate client. */
export interface TollgateOptions {
  /** The service's base URL, e.g. `http://127.0.0.1:8080`. Required. */
  url: string | URL;
  /** A bearer token (`--api-token-file`, or an admin token for reset). Default: none. */
  token?: string;
  /**
   * Bound on each attempt of a call, in milliseconds; a consume or peek
   * makes at most two attempts. Default 1000 (DEFAULT_TIMEOUT_MS).
   */
  timeoutMs?: number;
  /**
   * What consume and peek answer when the service cannot be reached or
   * answers 5xx after the retry: `closed` (default) throws
   * TollgateUnavailable, `open` returns an allowed result with `degraded:
   * 'unreachable'`. Refund and reset always throw.
   */
  failureMode?: 'open' | 'closed';
  /** The fetch to use. Default: the global fetch (Node 18+). */
  fetch?: typeof fetch;
}

/** The default per-attempt timeout, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 1000;

type Op = 'consume' | 'peek' | 'refund' | 'reset' | 'batch';

/**
 * A client of the Tollgate HTTP API (`tollgate serve`).
 *
 * ```ts
 * const tg = new Tollgate({ url: 'http://127.0.0.1:8080', token, failureMode: 'open' });
 * const r = await tg.consume({ key: 'cust-42', cost: 3, policy: 'api-hourly' });
 * if (!r.allowed) throw new Error(`retry in ${r.retryAfterMs} ms`);
 * ```
 *
 * Safe for concurrent use; keep one per service.
 */
export class Tollgate {
  readonly url: string;
  readonly timeoutMs: number;
  readonly failureMode: 'open' | 'closed';
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: TollgateOptions) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('Tollgate: options must be an object with at least url');
    }
    const { url, token, timeoutMs = DEFAULT_TIMEOUT_MS, failureMode = 'closed' } = options;
    let u: URL;
    try {
      u = new URL(String(url));
    } catch {
      throw new TypeError(`Tollgate: url ${JSON.stringify(String(url))} is not an absolute URL such as http://127.0.0.1:8080`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new TypeError(`Tollgate: url ${u.href}: want http: or https:`);
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new RangeError(`Tollgate: timeoutMs ${timeoutMs}: must be a positive number of milliseconds`);
    }
    if (failureMode !== 'open' && failureMode !== 'closed') {
      throw new TypeError(`Tollgate: failureMode ${JSON.stringify(failureMode)}: want 'open' or 'closed'`);
    }
    if (token !== undefined && (typeof token !== 'string' || token === '' || /\s/.test(token))) {
      throw new TypeError('Tollgate: token must be a non-empty string without spaces');
    }
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') {
      throw new TypeError('Tollgate: no global fetch (Node 18 or newer is needed), and no fetch option');
    }
    this.url = u.href.replace(/\/+$/, '');
    this.timeoutMs = timeoutMs;
    this.failureMode = failureMode;
    this.#token = token;
    this.#fetch = f;
  }

  /**
   * Spends `cost` units (default 1) of `key` if they fit. A denied consume
   * records nothing. Retried once, with the same request id, on a network
   * error, a timeout or a 503, so it is never counted twice.
   */
  async consume(req: ConsumeRequest): Promise<Result> {
    const body = { key: checkKey(req), cost: checkCost(req.cost), ...target(req) } as Record<string, unknown>;
    const id = req.requestId ?? randomUUID();
    if (typeof id !== 'string' || id === '') {
      throw new TollgateBadRequest('requestId must be a non-empty string', { code: 'invalid_request_id' });
    }
    body.request_id = id;
    return this.#check('consume', body, id, req.signal, limitOf(req));
  }

  /** What a consume of 1 unit would get, recording nothing. Retried once like consume. */
  async peek(req: PeekRequest): Promise<Result> {
    const body = { key: checkKey(req), ...target(req) };
    return this.#check('peek', body, randomUUID(), req.signal, limitOf(req));
  }

  /**
   * Gives back up to `cost` units (default 1) still in the window, newest
   * first. Never retried (a lost answer may have refunded), never degraded:
   * throws TollgateUnavailable when the service cannot answer.
   */
  async refund(req: RefundRequest): Promise<Counted> {
    const body = { key: checkKey(req), cost: checkCost(req.cost), ...target(req) };
    const { res, json } = await this.#call('refund', body, randomUUID(), req.signal, 1);
    return counted(res, json);
  }

  /**
   * Forgets `key` under `policy` (or the inline key). Needs an admin token
   * when the service has tokens. Throws TollgateUnavailable when the
   * service cannot answer.
   */
  async reset(req: ResetRequest): Promise<void> {
    const body: Record<string, unknown> = { key: checkKey(req) };
    if (req.policy !== undefined) {
      body.policy = checkPolicy(req.policy);
    }
    await this.#call('reset', body, randomUUID(), req.signal, 2);
  }

  /**
   * Runs 1 to 100 consumes and peeks (`op: 'peek'`) in one request and
   * returns each one's answer in order: a Result, or the TollgateError its
   * own call would have thrown (a 5xx answer is an Uncounted `unreachable`
   * result with `failureMode: 'open'`). Throws, with nothing recorded, when
   * the service refuses the batch (one invalid check: TollgateBadRequest;
   * one check outside the token's scope: TollgateAuth). Retried once like
   * consume, each consume with its request id, so none counts twice.
   */
  async batch(checks: BatchCheck[], options: { signal?: AbortSignal } = {}): Promise<Array<Result | TollgateError>> {
    const { body, limits } = batchBody(checks, checkKey, checkCost, target, limitOf, randomUUID);
    const id = randomUUID();
    let answer;
    try {
      answer = await this.#call('batch', body, id, options.signal, 2);
    } catch (err) {
      if (err instanceof TollgateUnavailable && this.failureMode === 'open' && !options.signal?.aborted) {
        return limits.map((limit) => unreachable(limit, err.requestId ?? id, err));
      }
      throw err;
    }
    return batchResults(answer.json, limits, requestIdOf(answer.res, id), this.failureMode, {
      counted: countedFrom, unreachable, errorOf: (status, json) => errorFrom('batch', status, json, requestIdOf(answer.res, id)),
    });
  }

  async #check(op: Op, body: object, id: string, signal: AbortSignal | undefined, limit: number | null): Promise<Result> {
    let answer;
    try {
      answer = await this.#call(op, body, id, signal, 2);
    } catch (err) {
      if (err instanceof TollgateUnavailable && this.failureMode === 'open' && !signal?.aborted) {
        return unreachable(limit, err.requestId ?? id, err);
      }
      throw err;
    }
    const { res, json } = answer;
    if (json.degraded === 'store-unavailable') {
      return {
        allowed: true, limit: num(json.limit), used: null, remaining: null, retryAfterMs: 0, resetAfterMs: null,
        shadowDenied: false, degraded: 'store-unavailable', headers: headersOf(res), requestId: requestIdOf(res, id),
      };
    }
    return counted(res, json, id);
  }

  /**
   * POSTs body to /v1/op, at most attempts times while the failure is a
   * network error, a timeout or a 503, and returns a 200 or 429 answer.
   */
  async #call(op: Op, body: object, id: string, signal: AbortSignal | undefined, attempts: number):
    Promise<{ res: Response; json: Record<string, unknown> }> {
    const payload = JSON.stringify(body);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': id };
    if (this.#token !== undefined) {
      headers.authorization = `Bearer ${this.#token}`;
    }
    let last: TollgateUnavailable | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      signal?.throwIfAborted();
      let res: Response;
      let text: string;
      try {
        res = await this.#fetch(`${this.url}/v1/${op}`, {
          method: 'POST', headers, body: payload, signal: withTimeout(signal, this.timeoutMs),
        });
        text = await res.text();
      } catch (err) {
        if (signal?.aborted) {
          throw signal.reason;
        }
        const timedOut = err instanceof Error && err.name === 'TimeoutError';
        last = new TollgateUnavailable(
          timedOut ? `tollgate ${op}: no answer within ${this.timeoutMs} ms` : `tollgate ${op}: ${describe(err)}`,
          { requestId: id, cause: err },
        );
        continue;
      }
      if (res.status === 200 || res.status === 429) {
        const json = parseJSON(text);
        const shape = op === 'batch' ? Array.isArray(json?.results) : op === 'reset' || typeof json?.allowed === 'boolean';
        if (json === undefined || !shape) {
          throw new TollgateError(`tollgate ${op}: unexpected answer ${res.status}: ${text.slice(0, 200)}`,
            { status: res.status, requestId: id });
        }
        return { res, json };
      }
      const err = errorOf(op, res, text, id);
      if (!(err instanceof TollgateUnavailable) || res.status !== 503) {
        throw err;
      }
      last = err;
    }
    throw last as TollgateUnavailable;
  }
}

/** The error a non-2xx, non-429 answer stands for. */
function errorOf(op: Op, res: Response, text: string, id: string): TollgateError {
  return errorFrom(op, res.status, parseJSON(text), requestIdOf(res, id));
}

/** The error an answer of status with the body json stands for. */
function errorFrom(op: Op, status: number, json: Record<string, unknown> | undefined, requestId: string): TollgateError {
  const e = json?.error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? (e.code as ErrorCode) : undefined;
  const message = `tollgate ${op}: ${status} ${code ?? ''}${typeof e?.message === 'string' ? ': ' + e.message : ''}`;
  const details = { status, code, requestId };
  if (status === 400) {
    return new TollgateBadRequest(message, details);
  }
  if (status === 401 || status === 403) {
    return new TollgateAuth(message, details);
  }
  if (status >= 500) {
    return new TollgateUnavailable(message, details);
  }
  return new TollgateError(message, details);
}

/** The result of a request let through because the service could not answer. */
function unreachable(limit: number | null, requestId: string, error: TollgateError): Uncounted {
  return {
    allowed: true, limit, used: null, remaining: null, retryAfterMs: 0, resetAfterMs: null,
    shadowDenied: false, degraded: 'unreachable', headers: {}, requestId, error,
  };
}

function counted(res: Response, json: Record<string, unknown>, id?: string): Counted {
  return countedFrom(json, headersOf(res), res.headers.get('tollgate-degraded'), requestIdOf(res, id ?? ''));
}

/** A Counted of a result body, the headers it came with and its Tollgate-Degraded. */
function countedFrom(json: Record<string, unknown>, headers: RateLimitHeaders, degraded: string | null | undefined,
  requestId: string): Counted {
  return {
    allowed: json.allowed === true,
    limit: num(json.limit),
    used: num(json.used),
    remaining: num(json.remaining),
    retryAfterMs: num(json.retry_after_ms),
    resetAfterMs: num(json.reset_after_ms),
    shadowDenied: json.shadow_denied === true,
    degraded: degraded === 'local-fallback' ? 'local-fallback' : null,
    headers,
    requestId,
    ...(Array.isArray(json.limits) ? { limits: json.limits.map(limitResult) } : {}),
  };
}

function limitResult(l: Record<string, unknown>): LimitResult {
  return {
    name: String(l.name),
    limit: num(l.limit),
    window: String(l.window),
    algorithm: l.algorithm as Algorithm,
    allowed: l.allowed === true,
    used: num(l.used),
    remaining: num(l.remaining),
    retryAfterMs: num(l.retry_after_ms),
    resetAfterMs: num(l.reset_after_ms),
  };
}

function headersOf(res: Response): RateLimitHeaders {
  const h: RateLimitHeaders = {};
  const policy = res.headers.get('ratelimit-policy');
  const rateLimit = res.headers.get('ratelimit');
  const retryAfter = res.headers.get('retry-after');
  if (policy !== null) h.policy = policy;
  if (rateLimit !== null) h.rateLimit = rateLimit;
  if (retryAfter !== null) h.retryAfter = retryAfter;
  return h;
}

function requestIdOf(res: Response, fallback: string): string {
  return res.headers.get('x-request-id') ?? fallback;
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}

function parseJSON(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
  }
  return String(err);
}

/** The signal of one attempt: the caller's, bounded by timeoutMs. */
function withTimeout(signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  if (signal === undefined) {
    return timeout;
  }
  const any = (AbortSignal as { any?: (signals: AbortSignal[]) => AbortSignal }).any;
  if (any !== undefined) {
    return any([signal, timeout]);
  }
  // Node 18 has no AbortSignal.any.
  const ctl = new AbortController();
  const abort = (s: AbortSignal) => () => ctl.abort(s.reason);
  if (signal.aborted) ctl.abort(signal.reason);
  signal.addEventListener('abort', abort(signal), { once: true });
  timeout.addEventListener('abort', abort(timeout), { once: true });
  return ctl.signal;
}

function checkKey(req: { key?: unknown }): string {
  if (req === null || typeof req !== 'object') {
    throw new TypeError('tollgate: the request must be an object with a key');
  }
  if (typeof req.key !== 'string' || req.key === '') {
    throw new TollgateBadRequest(`invalid key ${JSON.stringify(req.key)}: want a non-empty string`, { code: 'invalid_key' });
  }
  return req.key;
}

function checkCost(cost: unknown): number {
  if (cost === undefined) {
    return 1;
  }
  if (typeof cost !== 'number' || !Number.isSafeInteger(cost) || cost < 1) {
    throw new TollgateBadRequest(`invalid cost ${String(cost)}: want an integer of at least 1`, { code: 'invalid_cost' });
  }
  return cost;
}

function checkPolicy(policy: unknown): string {
  if (typeof policy !== 'string' || policy === '') {
    throw new TollgateBadRequest(`invalid policy ${JSON.stringify(policy)}: want a policy's name`, { code: 'unknown_policy' });
  }
  return policy;
}

/** The wire fields of a target: a policy, limit, window and algorithm, or limits. */
function target(t: Target): Record<string, unknown> {
  const inline = t.limit !== undefined || t.window !== undefined || t.algorithm !== undefined;
  if (t.policy !== undefined) {
    if (inline || t.limits !== undefined) {
      throw new TollgateBadRequest('give either a policy or inline limits, not both', { code: 'invalid_limit' });
    }
    return { policy: checkPolicy(t.policy) };
  }
  if (t.limits !== undefined) {
    if (inline) {
      throw new TollgateBadRequest('give either limits or limit and window, not both', { code: 'invalid_limit' });
    }
    if (!Array.isArray(t.limits) || t.limits.length < 1 || t.limits.length > 8) {
      throw new TollgateBadRequest('limits: want 1 to 8 limits', { code: 'invalid_limit' });
    }
    return { limits: t.limits.map((l: InlineLimit) => target(l)) };
  }
  if (t.limit === undefined || t.window === undefined) {
    throw new TollgateBadRequest('a policy, or limit and window, is required', { code: 'invalid_limit' });
  }
  if (typeof t.limit !== 'number' || !Number.isSafeInteger(t.limit) || t.limit < 1) {
    throw new TollgateBadRequest(`invalid limit ${String(t.limit)}: want an integer of at least 1`, { code: 'invalid_limit' });
  }
  const out: Record<string, unknown> = { limit: t.limit, window: windowOf(t.window) };
  if (t.algorithm !== undefined) {
    out.algorithm = t.algorithm;
  }
  return out;
}

function windowOf(w: unknown): string {
  if (typeof w === 'number') {
    if (!Number.isSafeInteger(w) || w < 1) {
      throw new TollgateBadRequest(`invalid window ${w}: want whole milliseconds, at least 1`, { code: 'invalid_limit' });
    }
    return `${w}ms`;
  }
  if (typeof w !== 'string' || w === '') {
    throw new TollgateBadRequest(`invalid window ${JSON.stringify(w)}: want a duration such as "1h" or milliseconds`,
      { code: 'invalid_limit' });
  }
  return w;
}

function limitOf(t: Target): number | null {
  if (t.limits !== undefined && Array.isArray(t.limits) && t.limits.length > 0) {
    return Math.min(...t.limits.map((l: InlineLimit) => l.limit));
  }
  return typeof t.limit === 'number' ? t.limit : null;
}
