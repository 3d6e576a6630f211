import type { Result, Target, Tollgate } from './client.js';
import { TollgateUnavailable } from './errors.js';

/**
 * The parts of an Express (or plain Node) request the middleware reads;
 * Express's Request has them all.
 */
export interface MiddlewareRequest {
  /** Express's client address (honours its `trust proxy` setting). */
  ip?: string | undefined;
  socket?: { remoteAddress?: string | undefined } | undefined;
}

/** The parts of an Express response the middleware uses. */
export interface MiddlewareResponse {
  setHeader(name: string, value: string): unknown;
  status(code: number): MiddlewareResponse;
  json(body: unknown): unknown;
  headersSent?: boolean;
}

export type NextFunction = (err?: unknown) => void;

/** Options of rateLimit: a policy or inline limit, and how to key and cost a request. */
export type RateLimitOptions<Req extends MiddlewareRequest = MiddlewareRequest> = Target & {
  /**
   * The key of a request. Default: the client's IP address (`req.ip`,
   * else the socket's peer address), prefixed with `ip:`. Behind a proxy
   * set Express's `trust proxy` so that req.ip is the client's.
   */
  key?: (req: Req) => string | Promise<string>;
  /** The cost of a request, an integer of at least 1. Default 1. */
  cost?: (req: Req) => number | Promise<number>;
  /**
   * Called instead of the default handling when the check throws (the
   * service unreachable with failureMode 'closed', bad input, a bad token).
   * Default: TollgateUnavailable answers 503 `{"error":{"code":"unavailable",…}}`;
   * anything else goes to next(err).
   */
  onError?: (err: unknown, req: Req, res: MiddlewareResponse, next: NextFunction) => void;
};

/** The JSON body of a 429, as the Go middleware (package middleware) sends it. */
export interface RateLimitedBody {
  error: { code: 'rate_limited'; message: string; retry_after_ms: number };
}

/**
 * Express middleware that consumes each request's cost under a policy or
 * inline limit. An allowed request goes on with the RateLimit-Policy and
 * RateLimit header fields set; a denied one is answered 429 with those,
 * Retry-After and a RateLimitedBody. A request let through degraded (the
 * service or its store unavailable, failing open) goes on without them.
 *
 * ```ts
 * app.use(rateLimit(tollgate, { policy: 'api-hourly', key: (req) => req.get('x-customer') ?? 'anonymous' }));
 * ```
 */
export function rateLimit<Req extends MiddlewareRequest = MiddlewareRequest>(
  client: Tollgate,
  options: RateLimitOptions<Req>,
): (req: Req, res: MiddlewareResponse, next: NextFunction) => Promise<void> {
  if (client === null || typeof client !== 'object' || typeof client.consume !== 'function') {
    throw new TypeError('rateLimit: the first argument must be a Tollgate client');
  }
  if (options === null || typeof options !== 'object') {
    throw new TypeError('rateLimit: options must name a policy, or a limit and window');
  }
  const { key = clientIP, cost, onError, ...rest } = options;
  const t = rest as Target;
  const targetFields: Target = t.policy !== undefined
    ? { policy: t.policy }
    : { limit: t.limit as number, window: t.window as string | number, algorithm: t.algorithm };
  if (t.policy === undefined && (t.limit === undefined || t.window === undefined)) {
    throw new TypeError('rateLimit: options must name a policy, or a limit and window');
  }
  return async (req, res, next) => {
    let result: Result;
    try {
      const k = await key(req);
      const c = cost === undefined ? 1 : await cost(req);
      result = await client.consume({ key: k, cost: c, ...targetFields } as Parameters<Tollgate['consume']>[0]);
    } catch (err) {
      if (onError !== undefined) {
        onError(err, req, res, next);
      } else if (err instanceof TollgateUnavailable) {
        res.status(503).json({ error: { code: 'unavailable', message: 'rate limiter unavailable' } });
      } else {
        next(err);
      }
      return;
    }
    const h = result.headers;
    if (h.policy !== undefined) res.setHeader('RateLimit-Policy', h.policy);
    if (h.rateLimit !== undefined) res.setHeader('RateLimit', h.rateLimit);
    if (result.allowed) {
      next();
      return;
    }
    const retryAfter = h.retryAfter ?? String(Math.ceil(result.retryAfterMs / 1000));
    res.setHeader('Retry-After', retryAfter);
    const body: RateLimitedBody = {
      error: { code: 'rate_limited', message: `rate limit exceeded; retry in ${retryAfter}s`, retry_after_ms: result.retryAfterMs },
    };
    res.status(429).json(body);
  };
}

/** The default key: `ip:` and the client's address. */
export function clientIP(req: MiddlewareRequest): string {
  const ip = req.ip ?? req.socket?.remoteAddress;
  if (ip === undefined || ip === '') {
    throw new TypeError('rateLimit: the request has no client address; give options.key');
  }
  return `ip:${ip}`;
}
