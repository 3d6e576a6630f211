// failureMode with the service stopped or silent: 'closed' throws
// TollgateUnavailable, 'open' answers allowed and flagged; refund and reset
// always throw.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Tollgate, TollgateUnavailable } from '../dist/esm/index.js';
import { startServe, startSilentServer, uniqueKey } from '../testing/harness.mjs';

const lim = { limit: 10, window: '1h' };

describe('the service stopped', () => {
  let url;
  before(async () => {
    const serve = await startServe();
    url = serve.url;
    // It answers while it runs...
    const r = await new Tollgate({ url, timeoutMs: 5000 }).consume({ key: uniqueKey('up'), ...lim });
    assert.equal(r.allowed, true);
    // ...and is gone for the tests: its port refuses connections.
    await serve.stop();
  });

  test("failureMode 'closed' (the default): consume and peek throw TollgateUnavailable", async () => {
    const tg = new Tollgate({ url, timeoutMs: 2000 });
    assert.equal(tg.failureMode, 'closed');
    for (const call of [() => tg.consume({ key: 'k', ...lim }), () => tg.peek({ key: 'k', ...lim })]) {
      await assert.rejects(call(), (err) => {
        assert.ok(err instanceof TollgateUnavailable, String(err));
        assert.equal(err.status, undefined, 'no answer');
        assert.ok(err.cause, 'the network error is the cause');
        return true;
      });
    }
  });

  test("failureMode 'open': consume and peek answer allowed, flagged unreachable", async () => {
    const tg = new Tollgate({ url, timeoutMs: 2000, failureMode: 'open' });
    const r = await tg.consume({ key: 'k', cost: 3, ...lim });
    assert.equal(r.allowed, true);
    assert.equal(r.degraded, 'unreachable');
    assert.equal(r.limit, 10);
    assert.equal(r.used, null);
    assert.equal(r.remaining, null);
    assert.ok(r.error instanceof TollgateUnavailable);
    const p = await tg.peek({ key: 'k', policy: 'api-hourly' });
    assert.equal(p.allowed, true);
    assert.equal(p.degraded, 'unreachable');
    assert.equal(p.limit, null, 'a policy\'s limit is not known to the client');
  });

  test("refund and reset throw TollgateUnavailable even with failureMode 'open'", async () => {
    const tg = new Tollgate({ url, timeoutMs: 2000, failureMode: 'open' });
    await assert.rejects(tg.refund({ key: 'k', ...lim }), TollgateUnavailable);
    await assert.rejects(tg.reset({ key: 'k' }), TollgateUnavailable);
  });
});

describe('the service accepts connections but never answers', () => {
  let silent;
  before(async () => { silent = await startSilentServer(); });
  after(() => silent?.close());

  test('each attempt ends at timeoutMs: closed throws, open lets through', async () => {
    const closed = new Tollgate({ url: silent.url, timeoutMs: 200 });
    await assert.rejects(closed.consume({ key: 'k', ...lim }), (err) => {
      assert.ok(err instanceof TollgateUnavailable, String(err));
      assert.match(err.message, /no answer within 200 ms/);
      return true;
    });
    const open = new Tollgate({ url: silent.url, timeoutMs: 200, failureMode: 'open' });
    const r = await open.consume({ key: 'k', ...lim });
    assert.equal(r.degraded, 'unreachable');
    assert.match(r.error.message, /no answer within 200 ms/);
  });
});
