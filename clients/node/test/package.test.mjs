// The package as consumers get it: both builds through "exports", their
// type declarations, and what npm pack puts in the tarball.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

test('import and require resolve to the ESM and CommonJS builds', async () => {
  const esm = await import('@tollgate/client');
  const cjs = require('@tollgate/client');
  for (const mod of [esm, cjs]) {
    for (const name of ['Tollgate', 'TollgateError', 'TollgateBadRequest', 'TollgateAuth', 'TollgateUnavailable', 'rateLimit', 'clientIP']) {
      assert.equal(typeof mod[name], 'function', name);
    }
    const err = new mod.TollgateBadRequest('m', { code: 'invalid_key', status: 400 });
    assert.ok(err instanceof mod.TollgateError && err instanceof Error);
    assert.equal(err.name, 'TollgateBadRequest');
  }
  assert.notEqual(esm.Tollgate, cjs.Tollgate, 'two builds');
  assert.match(require.resolve('@tollgate/client'), /dist\/cjs\/index\.js$/);
});

test('the declarations type-check an ESM and a CommonJS consumer (and reject misuse)', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(root, 'testing/types/tsconfig.json')], { cwd: root, encoding: 'utf8' });
  } catch (err) {
    assert.fail(`tsc: ${err.stdout}${err.stderr}`);
  }
});

test('npm pack: the builds, declarations and README, nothing else', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
  const [info] = JSON.parse(out);
  const files = info.files.map((f) => f.path).sort();
  for (const want of ['package.json', 'README.md', 'dist/esm/index.js', 'dist/esm/index.d.ts', 'dist/cjs/index.js',
    'dist/cjs/index.d.ts', 'dist/cjs/package.json']) {
    assert.ok(files.includes(want), `${want} missing from ${files}`);
  }
  const stray = files.filter((f) => !/^(package\.json|README\.md|dist\/(esm|cjs)\/[a-z]+\.(js|d\.ts)|dist\/cjs\/package\.json)$/.test(f));
  assert.deepEqual(stray, []);
  assert.deepEqual(Object.keys(JSON.parse(execFileSync('npm', ['pkg', 'get', 'dependencies'], { cwd: root, encoding: 'utf8' }))), [],
    'no runtime dependencies');
  console.log(`npm pack: ${info.filename}, ${info.size} bytes packed, ${info.unpackedSize} unpacked, ${files.length} files`);
});
