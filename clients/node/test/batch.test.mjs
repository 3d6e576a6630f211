// Tollgate.batch against a real `tollgate serve` on the memory store.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Tollgate, TollgateAuth, TollgateBadRequest, TollgateError, TollgateUnavailable } from '../dist/esm/index.js';
import { policies, startServe, startSilentServer, uniqueKey, writeTemp } from '../testing/harness.mjs';

const ADMIN = 'batch-admin-token';
const TENANT = 'batch-tenant-token';

describe('batch', () => {
  let serve;
  let tg;
  before(async () => {
    serve = await startServe([
      '--config', writeTemp('batch-policies.yaml', policies),
      '--api-token-file', writeTemp('batch-api-tokens', `${TENANT} policies=tiny inline=false ops=check\n`),
      '--admin-token-file', writeTemp('batch-admin-tokens', `${ADMIN}\n`),
    ]);
    tg = new Tollgate({ url: serve.url, token: ADMIN, timeoutMs: 5000 });
  });
  after(() => serve?.stop());

  test('answers each check in order: allowed, denied, peeks, policies', async () => {
    const key = uniqueKey('batch');
    const lim = { limit: 2, window: '1h' };
    await tg.consume({ key: `${key}-full`, cost: 2, ...lim });
    const results = await tg.batch([
      { key, cost: 2, ...lim },
      { key: `${key}-full`, ...lim },
      { op: 'peek', key: `${key}-other`, limit: 7, window: '1m' },
      { key, policy: 'shadow', cost: 1 },
      { op: 'consume', key, policy: 'tiny' },
    ]);
    assert.equal(results.length, 5);
    assert.deepEqual(results.map((r) => [r.allowed, r.used, r.limit]), [[true, 2, 2], [false, 2, 2], [true, 0, 7], [true, 1, 1], [true, 1, 2]]);
    assert.ok(results[1].retryAfterMs > 0);
    assert.deepEqual(results[0].headers, {}, 'no RateLimit headers per check');
    assert.ok(results.every((r) => r.requestId === results[0].requestId && r.requestId.length > 0));
    assert.equal((await tg.peek({ key, ...lim })).used, 2);
  });

  test('an invalid check refuses the batch and records nothing', async () => {
    const key = uniqueKey('batch-invalid');
    const lim = { limit: 5, window: '1h' };
    // Refused by the client before sending,
    await assert.rejects(tg.batch([{ key, ...lim }, { key, cost: 0, ...lim }]),
      (err) => err instanceof TollgateBadRequest && /checks\[1\]/.test(err.message) && err.code === 'invalid_cost');
    await assert.rejects(tg.batch([]), TollgateBadRequest);
    // and by the service.
    await assert.rejects(tg.batch([{ key, ...lim }, { key, policy: 'no-such-policy' }]),
      (err) => err instanceof TollgateBadRequest && err.code === 'unknown_policy' && err.status === 400);
    const many = Array.from({ length: 101 }, () => ({ op: 'peek', key, ...lim }));
    await assert.rejects(tg.batch(many), (err) => err instanceof TollgateBadRequest && err.code === 'too_many_checks');
    assert.equal((await tg.peek({ key, ...lim })).used, 0);
  });

  test('a check outside the token\'s scope refuses the batch: 403, nothing recorded', async () => {
    const key = uniqueKey('batch-scope');
    const tenant = new Tollgate({ url: serve.url, token: TENANT, timeoutMs: 5000 });
    await assert.rejects(tenant.batch([{ key, policy: 'tiny' }, { key, policy: 'api-hourly' }]),
      (err) => err instanceof TollgateAuth && err.status === 403);
    assert.equal((await tg.peek({ key, policy: 'tiny' })).used, 0);
    const ok = await tenant.batch([{ key, policy: 'tiny' }]);
    assert.equal(ok[0].used, 1);
  });

  test('a request id repeated across batches counts once', async () => {
    const key = uniqueKey('batch-id');
    const checks = [{ key, cost: 2, limit: 3, window: '1h', requestId: `${key}-r1` }];
    assert.equal((await tg.batch(checks))[0].used, 2);
    assert.equal((await tg.batch(checks))[0].used, 2, 'the repeat counts nothing');
  });
});

describe('batch without a service', () => {
  test('unreachable: thrown, or with failureMode open every check let through', async () => {
    const silent = await startSilentServer();
    try {
      const closed = new Tollgate({ url: silent.url, timeoutMs: 100 });
      await assert.rejects(closed.batch([{ key: 'k', limit: 5, window: '1m' }]), TollgateUnavailable);
      const open = new Tollgate({ url: silent.url, timeoutMs: 100, failureMode: 'open' });
      const results = await open.batch([{ key: 'k', limit: 5, window: '1m' }, { op: 'peek', key: 'k', policy: 'p' }]);
      assert.deepEqual(results.map((r) => [r.allowed, r.degraded, r.limit]), [[true, 'unreachable', 5], [true, 'unreachable', null]]);
      assert.ok(results[0].error instanceof TollgateError);
    } finally {
      await silent.close?.();
    }
  });
});
