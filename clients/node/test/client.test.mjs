// The client against a real `tollgate serve` on the memory store, with
// policies and bearer tokens.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Tollgate, TollgateAuth, TollgateBadRequest, TollgateError } from '../dist/esm/index.js';
import { policies, startServe, uniqueKey, writeTemp } from '../testing/harness.mjs';

const API = 'api-token-1';
const ADMIN = 'admin-token-1';

describe('client on the memory store', () => {
  let serve;
  let tg;
  before(async () => {
    serve = await startServe([
      '--config', writeTemp('client-policies.yaml', policies),
      '--api-token-file', writeTemp('client-api-tokens', `${API}\n`),
      '--admin-token-file', writeTemp('client-admin-tokens', `${ADMIN}\n`),
    ]);
    tg = new Tollgate({ url: serve.url, token: ADMIN, timeoutMs: 5000 });
  });
  after(() => serve?.stop());

  test('consume, peek, refund and reset an inline limit, with typed results', async () => {
    const key = uniqueKey('inline');
    const lim = { limit: 10, window: '1h' };
    const r1 = await tg.consume({ key, cost: 3, ...lim });
    assert.equal(r1.allowed, true);
    assert.equal(r1.degraded, null);
    assert.equal(r1.limit, 10);
    assert.equal(r1.used, 3);
    assert.equal(r1.remaining, 7);
    assert.equal(r1.retryAfterMs, 0);
    assert.ok(r1.resetAfterMs > 0 && r1.resetAfterMs <= 3_600_000);
    assert.equal(r1.shadowDenied, false);
    assert.equal(r1.headers.policy, '"default";q=10;w=3600');
    assert.match(r1.headers.rateLimit, /^"default";r=7;t=\d+$/);
    assert.ok(r1.requestId.length > 0);

    const peek = await tg.peek({ key, ...lim });
    assert.equal(peek.used, 3, 'peek records nothing');

    const denied = await tg.consume({ key, cost: 8, ...lim });
    assert.equal(denied.allowed, false);
    assert.equal(denied.used, 3, 'a denied consume records nothing');
    assert.ok(denied.retryAfterMs > 0);
    assert.match(denied.headers.retryAfter, /^\d+$/);

    const refunded = await tg.refund({ key, cost: 2, ...lim });
    assert.equal(refunded.used, 1);
    assert.equal((await tg.consume({ key, cost: 9, ...lim })).allowed, true);

    await tg.reset({ key });
    assert.equal((await tg.peek({ key, ...lim })).used, 0);
  });

  test('several inline limits: all or nothing, each limit\'s figures, the tightest on top', async () => {
    const key = uniqueKey('limits');
    const limits = [{ limit: 3, window: '1s', algorithm: 'gcra' }, { limit: 100, window: '1h' }];
    const r1 = await tg.consume({ key, cost: 2, limits });
    assert.equal(r1.allowed, true);
    assert.equal(r1.limits.length, 2);
    assert.deepEqual(r1.limits.map((l) => [l.name, l.used, l.allowed]), [['default/1s', 2, true], ['default/1h', 2, true]]);
    assert.equal(r1.limit, 3); // the tightest: 1 remaining of 3
    assert.match(r1.headers.policy, /^"default\/1s";q=3;w=1, "default\/1h";q=100;w=3600$/);
    const r2 = await tg.consume({ key, cost: 2, limits });
    assert.equal(r2.allowed, false);
    assert.equal(r2.limits[0].allowed, false);
    assert.equal(r2.limits[1].allowed, true);
    assert.ok(r2.retryAfterMs > 0);
    // The denial recorded nothing in the hour.
    const hour = await tg.peek({ key, limit: 100, window: '1h' });
    assert.equal(hour.used, 2);
    await assert.rejects(tg.consume({ key, limits: [] }), TollgateBadRequest);
    await assert.rejects(tg.consume({ key, limits, limit: 5, window: '1m' }), TollgateBadRequest);
  });

  test('a window in milliseconds and an algorithm', async () => {
    const key = uniqueKey('gcra');
    const r = await tg.consume({ key, limit: 5, window: 60_000, algorithm: 'gcra' });
    assert.equal(r.allowed, true);
    assert.equal(r.headers.policy, '"default";q=5;w=60');
  });

  test('a policy by name, counted apart from the inline key', async () => {
    const key = uniqueKey('policy');
    const r = await tg.consume({ key, policy: 'tiny', cost: 2 });
    assert.equal(r.allowed, true);
    assert.equal(r.remaining, 0);
    assert.equal(r.headers.policy, '"tiny";q=2;w=3600');
    assert.equal((await tg.consume({ key, policy: 'tiny' })).allowed, false);
    assert.equal((await tg.peek({ key, limit: 2, window: '1h' })).used, 0, 'the inline key is another counter');
    await tg.reset({ key, policy: 'tiny' });
    assert.equal((await tg.consume({ key, policy: 'tiny' })).used, 1);
  });

  test('a shadow policy lets a denial through, flagged', async () => {
    const key = uniqueKey('shadow');
    await tg.consume({ key, policy: 'shadow' });
    const r = await tg.consume({ key, policy: 'shadow' });
    assert.equal(r.allowed, true);
    assert.equal(r.shadowDenied, true);
  });

  test('bad input: TollgateBadRequest with the server\'s code', async () => {
    const key = uniqueKey('bad');
    const cases = [
      [{ key, policy: 'no-such-policy' }, 'unknown_policy'],
      [{ key, cost: 11, limit: 10, window: '1h' }, 'cost_exceeds_limit'],
      [{ key, limit: 10, window: 'an hour' }, 'invalid_limit'],
      [{ key, limit: 10, window: '1h', algorithm: 'leaky' }, 'invalid_limit'],
      [{ key: 'k'.repeat(513), limit: 10, window: '1h' }, 'invalid_key'],
      [{ key, limit: 10, window: '1h', requestId: 'r'.repeat(129) }, 'invalid_request_id'],
    ];
    for (const [req, code] of cases) {
      await assert.rejects(tg.consume(req), (err) => {
        assert.ok(err instanceof TollgateBadRequest, `${JSON.stringify(req).slice(0, 80)}: ${err}`);
        assert.equal(err.code, code);
        assert.equal(err.status, 400, 'answered by the server');
        assert.match(err.message, new RegExp(code));
        return true;
      });
    }
  });

  test('bad input the client refuses itself, without a call', async () => {
    const key = uniqueKey('client-bad');
    const cases = [
      [{ key: '', limit: 1, window: '1h' }, 'invalid_key'],
      [{ key, cost: 0, limit: 1, window: '1h' }, 'invalid_cost'],
      [{ key, cost: 1.5, limit: 1, window: '1h' }, 'invalid_cost'],
      [{ key, limit: 1 }, 'invalid_limit'],
      [{ key }, 'invalid_limit'],
      [{ key, policy: 'tiny', limit: 1, window: '1h' }, 'invalid_limit'],
      [{ key, limit: 1, window: 0 }, 'invalid_limit'],
    ];
    for (const [req, code] of cases) {
      await assert.rejects(tg.consume(req), (err) => {
        assert.ok(err instanceof TollgateBadRequest, String(err));
        assert.equal(err.code, code, JSON.stringify(req));
        assert.equal(err.status, undefined, 'refused before any call');
        return true;
      });
    }
  });

  test('bad options: clear errors from the constructor', () => {
    assert.throws(() => new Tollgate({ url: 'not a url' }), /not an absolute URL/);
    assert.throws(() => new Tollgate({ url: 'ftp://127.0.0.1' }), /want http: or https:/);
    assert.throws(() => new Tollgate({ url: serve.url, timeoutMs: 0 }), RangeError);
    assert.throws(() => new Tollgate({ url: serve.url, failureMode: 'sometimes' }), /want 'open' or 'closed'/);
    assert.throws(() => new Tollgate({ url: serve.url, token: 'two words' }), /token/);
    assert.throws(() => new Tollgate(), /options must be an object/);
  });

  test('tokens: TollgateAuth for none, an unknown one, and an API token on reset', async () => {
    const key = uniqueKey('auth');
    const lim = { limit: 10, window: '1h' };
    for (const token of [undefined, 'unknown-token']) {
      const c = new Tollgate({ url: serve.url, token, timeoutMs: 5000 });
      await assert.rejects(c.consume({ key, ...lim }), (err) => {
        assert.ok(err instanceof TollgateAuth, String(err));
        assert.equal(err.status, 401);
        assert.equal(err.code, 'unauthorized');
        return true;
      });
    }
    const api = new Tollgate({ url: serve.url, token: API, timeoutMs: 5000 });
    assert.equal((await api.consume({ key, ...lim })).used, 1);
    await assert.rejects(api.reset({ key }), (err) => {
      assert.ok(err instanceof TollgateAuth, String(err));
      assert.equal(err.status, 403);
      assert.equal(err.code, 'forbidden');
      return true;
    });
  });

  test('a wrong URL path is a TollgateError, not unavailability', async () => {
    const c = new Tollgate({ url: `${serve.url}/nope`, token: ADMIN, timeoutMs: 5000, failureMode: 'open' });
    await assert.rejects(c.consume({ key: 'k', limit: 1, window: '1h' }), (err) => {
      assert.ok(err instanceof TollgateError && err.constructor === TollgateError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.code, 'not_found');
      return true;
    });
  });

  test('a caller\'s abort signal ends the call with its reason', async () => {
    const ctl = new AbortController();
    ctl.abort(new Error('caller gave up'));
    await assert.rejects(tg.consume({ key: 'k', limit: 1, window: '1h', signal: ctl.signal }), /caller gave up/);
  });
});
