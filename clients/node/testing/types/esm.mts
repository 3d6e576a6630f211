// Compiled (never run) by test/package.test.mjs: the declarations of the
// ESM build, through the package's exports, as an ESM consumer sees them.
import { rateLimit, Tollgate, TollgateBadRequest, type Result } from '@tollgate/client';
import express from 'express';

const tg = new Tollgate({ url: 'http://127.0.0.1:8080', token: 't', timeoutMs: 500, failureMode: 'open' });

export async function flow(customer: string, rows: number): Promise<number | null> {
  const peek: Result = await tg.peek({ key: customer, policy: 'api-hourly' });
  if (peek.used === null) {
    // Let through without the usage: the service or its store is down.
    const why: 'unreachable' | 'store-unavailable' = peek.degraded;
    return why === 'unreachable' ? null : peek.remaining;
  }
  const remaining: number = peek.remaining;
  const cost = Math.min(rows, remaining);
  const r = await tg.consume({ key: customer, cost, limit: 100, window: '1h', algorithm: 'gcra' });
  return r.used;
}

export function errors(err: unknown): string | undefined {
  return err instanceof TollgateBadRequest ? err.code : undefined;
}

// @ts-expect-error a policy and an inline limit together
void tg.consume({ key: 'k', policy: 'p', limit: 1, window: '1h' });
// @ts-expect-error an unknown algorithm
void tg.consume({ key: 'k', limit: 1, window: '1h', algorithm: 'leaky' });
// @ts-expect-error no key
void tg.peek({ policy: 'p' });

const app = express();
app.use(rateLimit(tg, { policy: 'api-hourly', key: (req: express.Request) => req.get('x-customer') ?? 'anonymous' }));
app.use(rateLimit(tg, { limit: 60, window: 60_000, cost: () => 2 }));
