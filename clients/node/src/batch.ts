// POST /v1/batch: the wire form of Tollgate.batch's checks and answers.
// Kept apart from client.ts, which passes in the helpers it shares, so that
// neither file grows past what one reads at once.
import type { ConsumeRequest, Counted, PeekRequest, RateLimitHeaders, Result, Target, Uncounted } from './client.js';
import { TollgateBadRequest, TollgateError } from './errors.js';

/**
 * A check of a batch: a consume (`op` absent or `'consume'`) or a peek
 * (`op: 'peek'`, no cost). A `signal` of a check is ignored: pass one to
 * batch itself.
 */
export type BatchCheck = (ConsumeRequest & { op?: 'consume' }) | (PeekRequest & { op: 'peek' });

/** The helpers of client.ts that a batch's body is built with. */
type Builders = (
  checks: BatchCheck[],
  checkKey: (req: { key?: unknown }) => string,
  checkCost: (cost: unknown) => number,
  target: (t: Target) => Record<string, unknown>,
  limitOf: (t: Target) => number | null,
  newID: () => string,
) => { body: { checks: Record<string, unknown>[] }; limits: Array<number | null> };

/**
 * The body of a batch, each check checked as its own call checks it, and
 * each check's limit (for an unreachable result). Every consume gets a
 * request id, so that the batch's retry counts none twice.
 */
export const batchBody: Builders = (checks, checkKey, checkCost, target, limitOf, newID) => {
  if (!Array.isArray(checks) || checks.length === 0) {
    throw new TollgateBadRequest('batch: want a non-empty array of checks', { code: 'invalid_json' });
  }
  const limits: Array<number | null> = [];
  const items = checks.map((c, i) => {
    try {
      const op = c?.op;
      if (op === 'peek') {
        limits.push(limitOf(c));
        return { op, key: checkKey(c), ...target(c) };
      }
      if (op !== undefined && op !== 'consume') {
        throw new TollgateBadRequest(`op ${JSON.stringify(op)}: want 'consume' or 'peek'`, { code: 'invalid_json' });
      }
      const id = (c as ConsumeRequest).requestId ?? newID();
      if (typeof id !== 'string' || id === '') {
        throw new TollgateBadRequest('requestId must be a non-empty string', { code: 'invalid_request_id' });
      }
      limits.push(limitOf(c));
      return { key: checkKey(c), cost: checkCost((c as ConsumeRequest).cost), ...target(c), request_id: id };
    } catch (err) {
      if (err instanceof TollgateError) {
        throw new TollgateBadRequest(`batch: checks[${i}]: ${err.message}`, { code: err.code });
      }
      throw err;
    }
  });
  return { body: { checks: items }, limits };
};

/** What batchResults builds results with (client.ts's own). */
interface Makers {
  counted: (json: Record<string, unknown>, headers: RateLimitHeaders, degraded: string | undefined, requestId: string) => Counted;
  unreachable: (limit: number | null, requestId: string, error: TollgateError) => Uncounted;
  errorOf: (status: number, json: Record<string, unknown> | undefined) => TollgateError;
}

/**
 * Each check's answer, in order, from a batch's 200 body: a Result for 200
 * and 429, else the error its own call would have thrown (with failureMode
 * 'open', an unreachable result for a 5xx, as consume answers).
 */
export function batchResults(json: Record<string, unknown>, limits: Array<number | null>, requestId: string,
  failureMode: 'open' | 'closed', make: Makers): Array<Result | TollgateError> {
  const results = json.results as unknown[];
  if (results.length !== limits.length) {
    throw new TollgateError(`tollgate batch: ${results.length} results for ${limits.length} checks`, { status: 200, requestId });
  }
  return results.map((r, i) => {
    const entry = (r ?? {}) as { status?: unknown; body?: unknown; degraded?: unknown };
    const status = typeof entry.status === 'number' ? entry.status : 0;
    const body = entry.body !== null && typeof entry.body === 'object' ? (entry.body as Record<string, unknown>) : undefined;
    if ((status === 200 || status === 429) && body !== undefined && typeof body.allowed === 'boolean') {
      if (body.degraded === 'store-unavailable') {
        return {
          allowed: true, limit: typeof body.limit === 'number' ? body.limit : null, used: null, remaining: null,
          retryAfterMs: 0, resetAfterMs: null, shadowDenied: false, degraded: 'store-unavailable', headers: {}, requestId,
        } satisfies Uncounted;
      }
      return make.counted(body, {}, typeof entry.degraded === 'string' ? entry.degraded : undefined, requestId);
    }
    const err = make.errorOf(status, body);
    return status >= 500 && failureMode === 'open' ? make.unreachable(limits[i] ?? null, requestId, err) : err;
  });
}
