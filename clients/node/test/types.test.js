// The shipped TypeScript declarations (types/) type-check a small program that uses them
// (examples/typescript), whose @ts-expect-error lines prove that misuse is refused.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');

test('tsc --noEmit accepts the TypeScript example and refuses its marked mistakes', async () => {
  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, [TSC, '-p', 'examples/typescript', '--noEmit'], { cwd: PKG }).catch(
    (err) => assert.fail(`tsc failed:\n${err.stdout}${err.stderr}`),
  );
  assert.equal(stdout.trim(), '');
});

test('the package exports its declarations', async () => {
  const pkg = JSON.parse(await (await import('node:fs/promises')).readFile(path.join(PKG, 'package.json'), 'utf8'));
  assert.equal(pkg.exports['.'].types, './types/index.d.ts');
  assert.equal(pkg.exports['./opentelemetry'].types, './types/opentelemetry.d.ts');
  assert.ok(pkg.files.includes('types/'));
});
