// The client against tollgate serve on the local Redis Cluster (3 masters,
// 3 replicas on 127.0.0.11-16), started and stopped by the test.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Tollgate } from '../dist/esm/index.js';
import { policies, startCluster, startProxy, startServe, uniqueKey, writeTemp } from '../testing/harness.mjs';

describe('client on the Redis Cluster', () => {
  let cluster;
  let serve;
  let tg;
  before(async (t) => {
    cluster = await startCluster();
    if (cluster.skip) return;
    serve = await startServe([
      '--redis-cluster', cluster.addrs.join(','),
      '--config', writeTemp('cluster-policies.yaml', policies),
      '--check-timeout', '2s',
    ]);
    tg = new Tollgate({ url: serve.url, timeoutMs: 5000 });
  });
  after(async () => {
    await serve?.stop();
    await cluster?.stop?.();
  });

  test('consume, peek, refund and reset over keys on every shard', async (t) => {
    if (cluster.skip) return t.skip(cluster.skip);
    // 30 keys land on all three masters' slots.
    for (let i = 0; i < 30; i++) {
      const key = uniqueKey(`cluster-${i}`);
      for (const algorithm of ['sliding_log', 'sliding_window', 'gcra']) {
        const lim = { limit: 5, window: '1h', algorithm };
        assert.equal((await tg.consume({ key, cost: 3, ...lim })).used, 3, `${key} ${algorithm}`);
        const denied = await tg.consume({ key, cost: 3, ...lim });
        assert.equal(denied.allowed, false);
        assert.ok(denied.retryAfterMs > 0);
      }
      assert.equal((await tg.peek({ key, limit: 5, window: '1h' })).used, 3);
      assert.equal((await tg.refund({ key, cost: 1, limit: 5, window: '1h' })).used, 2);
      await tg.reset({ key });
      assert.equal((await tg.peek({ key, limit: 5, window: '1h' })).used, 0);
    }
  });

  test('a policy by name', async (t) => {
    if (cluster.skip) return t.skip(cluster.skip);
    const key = uniqueKey('cluster-policy');
    assert.equal((await tg.consume({ key, policy: 'tiny', cost: 2 })).remaining, 0);
    assert.equal((await tg.consume({ key, policy: 'tiny' })).allowed, false);
  });

  test('a lost answer is retried and counted once on the Cluster too', async (t) => {
    if (cluster.skip) return t.skip(cluster.skip);
    const p = await startProxy(serve.url, (n) => (n === 1 ? 'drop' : 'forward'));
    try {
      const key = uniqueKey('cluster-retry');
      const r = await new Tollgate({ url: p.url, timeoutMs: 5000 }).consume({ key, cost: 4, policy: 'api-hourly' });
      assert.equal(r.used, 4);
      assert.equal(p.bodies.length, 2);
      assert.equal((await tg.peek({ key, policy: 'api-hourly' })).used, 4);
    } finally {
      await p.close();
    }
  });
});
