// Test harness: builds and runs a real `tollgate serve` (and, for the
// cluster tests, the local Redis Cluster through testing/cluster), all on
// loopback, each start and stop bounded in time. Every process started here
// is killed when the test process exits.
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

const work = mkdtempSync(join(tmpdir(), 'tollgate-node-test-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

/** A new file in the test's temp dir with content, mode 0600. */
export function writeTemp(name, content) {
  const p = join(work, name);
  writeFileSync(p, content);
  chmodSync(p, 0o600);
  return p;
}

const builds = new Map();

/** go build of pkg (relative to the repo root) into the temp dir, once per process. */
export function goBuild(pkg, name) {
  if (!builds.has(pkg)) {
    const out = join(work, name);
    builds.set(pkg, new Promise((ok, fail) => {
      execFile('go', ['build', '-o', out, pkg], { cwd: repoRoot, timeout: 300_000 }, (err, _stdout, stderr) => {
        if (err) fail(new Error(`go build ${pkg}: ${err.message}\n${stderr}`));
        else ok(out);
      });
    }));
  }
  return builds.get(pkg);
}

/** Waits for p, failing after ms with what. */
async function within(ms, what, p) {
  let timer;
  const timeout = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Stops a child: SIGTERM, then SIGKILL if it has not exited within 10 s. */
async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return;
  }
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  try {
    await within(10_000, 'stop', exited);
  } catch {
    child.kill('SIGKILL');
    await exited;
  }
  children.delete(child);
}

/**
 * Starts `tollgate serve --listen 127.0.0.1:0 ...args` and resolves once it
 * listens, with its url, its log lines so far and stop().
 */
export async function startServe(args = []) {
  const bin = await goBuild('./cmd/tollgate', 'tollgate');
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--log-level', 'info', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(child);
  const logs = [];
  const listening = new Promise((ok, fail) => {
    createInterface({ input: child.stderr }).on('line', (line) => {
      logs.push(line);
      try {
        const rec = JSON.parse(line);
        if (rec.msg === 'listening') ok(rec.addr);
      } catch {
        // not a log record
      }
    });
    child.on('exit', (code, sig) => fail(new Error(`tollgate serve exited (${code ?? sig}) before listening:\n${logs.join('\n')}`)));
  });
  const addr = await within(30_000, 'tollgate serve start', listening);
  return { url: `http://${addr}`, addr, logs, child, stop: () => stopChild(child) };
}

/**
 * Starts the local Redis Cluster. Resolves to { addrs, stop } or, when
 * redis-server is missing outside CI, { skip: reason }.
 */
export async function startCluster() {
  const bin = await goBuild('./clients/node/testing/cluster', 'cluster');
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  const stderr = [];
  child.stderr.on('data', (d) => stderr.push(d));
  const first = new Promise((ok, fail) => {
    createInterface({ input: child.stdout }).once('line', (line) => ok(JSON.parse(line)));
    child.on('exit', (code) => fail(Object.assign(new Error(`cluster exited (${code}):\n${Buffer.concat(stderr)}`), { code })));
  });
  let info;
  try {
    info = await within(90_000, 'cluster start', first);
  } catch (err) {
    await stopChild(child);
    if (err.code === 3 && process.env.CI !== 'true') {
      return { skip: 'redis-server is not installed (scripts/test.sh installs it)' };
    }
    throw err;
  }
  return {
    addrs: info.addrs,
    stop: async () => {
      child.stdin.end(); // the helper stops the cluster when its stdin closes
      try {
        await within(30_000, 'cluster stop', once(child, 'exit'));
      } finally {
        await stopChild(child);
      }
    },
  };
}

/**
 * A loopback HTTP proxy to upstream. decide(n, req) for the n-th request
 * (from 1) returns 'forward', 'drop' (forward, then cut the connection
 * without answering), '503' (forward, then answer 503 unavailable) or
 * 'refuse503' (answer 503 without forwarding). It records every request's
 * body in bodies.
 */
export async function startProxy(upstream, decide) {
  const bodies = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    bodies.push(body.toString());
    const action = decide(bodies.length, req);
    if (action === 'refuse503') {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"unavailable","message":"store unavailable"}}\n');
      return;
    }
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    const up = await fetch(upstream + req.url, { method: req.method, headers, body, signal: AbortSignal.timeout(10_000) });
    const upBody = Buffer.from(await up.arrayBuffer());
    if (action === 'drop') {
      req.socket.destroy();
      return;
    }
    if (action === '503') {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"unavailable","message":"store unavailable"}}\n');
      return;
    }
    const out = {};
    up.headers.forEach((v, k) => {
      if (k !== 'content-length' && k !== 'connection' && k !== 'keep-alive') out[k] = v;
    });
    res.writeHead(up.status, out);
    res.end(upBody);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    bodies,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(() => ok()); }),
  };
}

/** A loopback TCP server that accepts connections and never answers. */
export async function startSilentServer() {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((ok) => { for (const s of sockets) s.destroy(); server.close(() => ok()); }),
  };
}

/** The policies the tests' services run with. */
export const policies = `
policies:
  - name: api-hourly
    units: 100
    window: 1h
  - name: tiny
    units: 2
    window: 1h
  - name: shadow
    units: 1
    window: 1h
    shadow: true
`;

/** A unique key prefix per test run. */
export function uniqueKey(name) {
  return `${name}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}
