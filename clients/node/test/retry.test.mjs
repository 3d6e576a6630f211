// Retries through a loopback proxy in front of a real tollgate serve: a
// consume whose first answer is lost (connection cut, or a 503 after the
// service counted it) is retried once with the same request id, and counted
// once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Tollgate, TollgateUnavailable } from '../dist/esm/index.js';
import { startProxy, startServe, uniqueKey } from '../testing/harness.mjs';

const lim = { limit: 100, window: '1h' };

describe('retries', () => {
  let serve;
  let direct;
  const proxies = [];
  before(async () => {
    serve = await startServe();
    direct = new Tollgate({ url: serve.url, timeoutMs: 5000 });
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await serve?.stop();
  });
  const proxy = async (decide) => {
    const p = await startProxy(serve.url, decide);
    proxies.push(p);
    return p;
  };

  for (const action of ['drop', '503']) {
    test(`a consume whose first answer is lost (${action}) is retried once and counted once`, async () => {
      const p = await proxy((n) => (n === 1 ? action : 'forward'));
      const tg = new Tollgate({ url: p.url, timeoutMs: 5000 });
      const key = uniqueKey(`retry-${action}`);
      const r = await tg.consume({ key, cost: 7, ...lim });
      assert.equal(r.allowed, true);
      assert.equal(r.used, 7, 'the retry was deduplicated, not counted again');
      assert.equal(p.bodies.length, 2, 'two attempts');
      const [first, second] = p.bodies.map((b) => JSON.parse(b));
      assert.ok(first.request_id, 'the consume carries a request id');
      assert.equal(second.request_id, first.request_id, 'the retry carries the same id');
      assert.equal((await direct.peek({ key, ...lim })).used, 7, 'the service counted 7 units once');

      // Without the request id, the same loss counts twice: the test can fail.
      const again = uniqueKey(`no-id-${action}`);
      await direct.consume({ key: again, cost: 7, ...lim, requestId: 'a' });
      await direct.consume({ key: again, cost: 7, ...lim, requestId: 'b' });
      assert.equal((await direct.peek({ key: again, ...lim })).used, 14);
    });
  }

  test('each consume gets a new request id', async () => {
    const p = await proxy(() => 'forward');
    const tg = new Tollgate({ url: p.url, timeoutMs: 5000 });
    const key = uniqueKey('ids');
    await tg.consume({ key, ...lim });
    await tg.consume({ key, ...lim });
    const ids = p.bodies.map((b) => JSON.parse(b).request_id);
    assert.equal(new Set(ids).size, 2);
    assert.equal((await direct.peek({ key, ...lim })).used, 2);
  });

  test('a caller\'s requestId is sent as is', async () => {
    const p = await proxy(() => 'forward');
    const tg = new Tollgate({ url: p.url, timeoutMs: 5000 });
    await tg.consume({ key: uniqueKey('own-id'), ...lim, requestId: 'order-1234' });
    assert.equal(JSON.parse(p.bodies[0]).request_id, 'order-1234');
  });

  test('only once: two lost answers fail with TollgateUnavailable after two attempts', async () => {
    const p = await proxy(() => 'refuse503');
    const tg = new Tollgate({ url: p.url, timeoutMs: 5000 });
    await assert.rejects(tg.consume({ key: uniqueKey('twice'), ...lim }), (err) => {
      assert.ok(err instanceof TollgateUnavailable, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.code, 'unavailable');
      return true;
    });
    assert.equal(p.bodies.length, 2);
  });

  test('a refund is never retried', async () => {
    const p = await proxy(() => 'drop');
    const tg = new Tollgate({ url: p.url, timeoutMs: 5000, failureMode: 'open' });
    const key = uniqueKey('refund');
    await direct.consume({ key, cost: 5, ...lim });
    await assert.rejects(tg.refund({ key, cost: 2, ...lim }), TollgateUnavailable);
    assert.equal(p.bodies.length, 1);
    assert.equal((await direct.peek({ key, ...lim })).used, 3, 'the one refund went through');
  });

  test('a denial is an answer, not retried', async () => {
    const p = await proxy(() => 'forward');
    const tg = new Tollgate({ url: p.url, timeoutMs: 5000 });
    const key = uniqueKey('denied');
    await direct.consume({ key, cost: 100, ...lim });
    const r = await tg.consume({ key, ...lim });
    assert.equal(r.allowed, false);
    assert.equal(p.bodies.length, 1);
  });
});
