// The Express middleware end to end: a real Express app on a real loopback
// port in front of a real tollgate serve, driven by fetch.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';

import express from 'express';

import { rateLimit, Tollgate, TollgateBadRequest } from '../dist/esm/index.js';
import { policies, startServe, uniqueKey, writeTemp } from '../testing/harness.mjs';

/** Serves app on 127.0.0.1 and returns its URL and close(). */
async function listen(app) {
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(() => ok()); }),
  };
}

describe('Express middleware', () => {
  let serve;
  let tg;
  const servers = [];
  before(async () => {
    serve = await startServe(['--config', writeTemp('express-policies.yaml', policies)]);
    tg = new Tollgate({ url: serve.url, timeoutMs: 5000 });
  });
  after(async () => {
    for (const s of servers) await s.close();
    await serve?.stop();
  });
  const app = async (middleware) => {
    const a = express();
    const errors = [];
    a.get('/work', middleware, (req, res) => res.json({ ok: true }));
    a.use((err, req, res, next) => {
      errors.push(err);
      res.status(500).json({ error: String(err) });
    });
    const s = await listen(a);
    servers.push(s);
    return { ...s, errors };
  };

  test('sets RateLimit headers; answers 429 with Retry-After and the JSON body', async () => {
    const prefix = uniqueKey('mw');
    const s = await app(rateLimit(tg, { limit: 2, window: '1h', key: (req) => `${prefix}:${req.ip}` }));
    const r1 = await fetch(`${s.url}/work`);
    assert.equal(r1.status, 200);
    assert.deepEqual(await r1.json(), { ok: true });
    assert.equal(r1.headers.get('ratelimit-policy'), '"default";q=2;w=3600');
    assert.match(r1.headers.get('ratelimit'), /^"default";r=1;t=\d+$/);
    assert.equal((await fetch(`${s.url}/work`)).status, 200);
    const r3 = await fetch(`${s.url}/work`);
    assert.equal(r3.status, 429);
    assert.match(r3.headers.get('retry-after'), /^[1-9]\d*$/);
    assert.match(r3.headers.get('ratelimit'), /^"default";r=0;t=\d+$/);
    const body = await r3.json();
    assert.equal(body.error.code, 'rate_limited');
    assert.ok(body.error.retry_after_ms > 0);
    assert.match(body.error.message, /retry in \d+s/);
  });

  test('the default key is ip: and the client address', async () => {
    const policy = 'api-hourly';
    const s = await app(rateLimit(tg, { policy }));
    // The app listens on 127.0.0.1, so Express's req.ip is 127.0.0.1.
    const before = (await tg.peek({ key: 'ip:127.0.0.1', policy })).used;
    assert.equal((await fetch(`${s.url}/work`)).status, 200);
    assert.equal((await fetch(`${s.url}/work`)).status, 200);
    assert.equal((await tg.peek({ key: 'ip:127.0.0.1', policy })).used, before + 2);
  });

  test('key and cost as functions of the request, under a policy', async () => {
    const prefix = uniqueKey('cust');
    const s = await app(rateLimit(tg, {
      policy: 'tiny',
      key: (req) => `${prefix}:${req.get('x-customer')}`,
      cost: async (req) => Number(req.query.cost ?? 1),
    }));
    const get = (customer, cost) => fetch(`${s.url}/work?cost=${cost}`, { headers: { 'x-customer': customer } });
    assert.equal((await get('a', 2)).status, 200);
    const denied = await get('a', 1);
    assert.equal(denied.status, 429);
    assert.equal(denied.headers.get('ratelimit-policy'), '"tiny";q=2;w=3600');
    assert.equal((await get('b', 1)).status, 200, 'another customer has its own counter');
    assert.equal((await tg.peek({ key: `${prefix}:a`, policy: 'tiny' })).used, 2);
    assert.equal((await tg.peek({ key: `${prefix}:b`, policy: 'tiny' })).used, 1);
  });

  test('bad input goes to next(err)', async () => {
    const s = await app(rateLimit(tg, { policy: 'tiny', key: () => uniqueKey('big'), cost: () => 3 }));
    const r = await fetch(`${s.url}/work`);
    assert.equal(r.status, 500);
    assert.equal(s.errors.length, 1);
    assert.ok(s.errors[0] instanceof TollgateBadRequest);
    assert.equal(s.errors[0].code, 'cost_exceeds_limit');
  });

  test('bad options throw at once', () => {
    assert.throws(() => rateLimit({}, { policy: 'tiny' }), /Tollgate client/);
    assert.throws(() => rateLimit(tg, { limit: 5 }), /policy, or a limit and window/);
  });

  test('with the service stopped: open lets requests through without headers, closed answers 503', async () => {
    const gone = await startServe();
    await gone.stop();
    const open = new Tollgate({ url: gone.url, timeoutMs: 2000, failureMode: 'open' });
    const closed = new Tollgate({ url: gone.url, timeoutMs: 2000 });
    const so = await app(rateLimit(open, { limit: 1, window: '1h' }));
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${so.url}/work`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('ratelimit'), null);
    }
    const sc = await app(rateLimit(closed, { limit: 1, window: '1h' }));
    const r = await fetch(`${sc.url}/work`);
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error.code, 'unavailable');
  });
});
