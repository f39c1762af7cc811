// The package as users get it: `npm pack` (of a copy of the package and the repository's proto/, so
// the packing never touches the files other tests load), the tarball unpacked into a project outside
// the repository (its dependencies linked from this package's node_modules, no network), then used there
// against a running platform: a client submits, a worker from the package runs the task.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { ADDRESS, SKIP, freshQueue } from './_support.js';

const run = promisify(execFile);
const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const APP = `
import { Client, Worker } from '@tasktide/client';
import { fileURLToPath } from 'node:url';

const queue = process.argv[2];
const client = new Client(process.env.TASKTIDE_ADDRESS);
const worker = new Worker(client, { queues: [queue], logger: { warn() {}, error() {} } });
worker.register('packed.add', ([x, y]) => x + y);
const running = worker.run();
const sum = await (await client.submit('packed.add', [40, 2], { queue })).get({ timeout: 20 });
await worker.stop();
await running;
client.close();
const where = fileURLToPath(import.meta.resolve('@tasktide/client'));
console.log(JSON.stringify({ sum, where }));
`;

describe('packaging', { skip: SKIP }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tasktide-pack-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('the packed package installs outside the repository and runs a task there', async () => {
    const source = path.join(tmp, 'repository', 'clients', 'node');
    for (const entry of ['package.json', 'README.md', 'src', 'types', 'scripts']) {
      fs.cpSync(path.join(PKG, entry), path.join(source, entry), { recursive: true });
    }
    fs.cpSync(path.join(PKG, '..', '..', 'proto'), path.join(tmp, 'repository', 'proto'), { recursive: true });
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: source });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf('[')));
    const files = packed.files.map((f) => f.path);
    for (const f of ['src/index.js', 'src/contrib/opentelemetry.js', 'types/index.d.ts', 'README.md']) {
      assert.ok(files.includes(f), `${f} is in the package`);
    }
    assert.ok(files.includes('proto/tasktide/v1/task.proto'), 'the .proto files travel with the package');
    assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('node_modules/')), files.join(' '));
    assert.ok(!fs.existsSync(path.join(source, 'proto')), 'the packing copy of proto/ was removed');

    const app = path.join(tmp, 'app');
    const target = path.join(app, 'node_modules', '@tasktide', 'client');
    fs.mkdirSync(target, { recursive: true });
    await run('tar', ['xzf', path.join(tmp, packed.filename), '-C', target, '--strip-components=1']);
    const manifest = JSON.parse(fs.readFileSync(path.join(target, 'package.json'), 'utf8'));
    assert.equal(manifest.publishConfig.access, 'public');
    for (const dep of Object.keys(manifest.dependencies)) {
      const link = path.join(app, 'node_modules', dep);
      fs.mkdirSync(path.dirname(link), { recursive: true });
      fs.symlinkSync(path.join(PKG, 'node_modules', dep), link, 'dir');
    }
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', type: 'module', private: true }));
    fs.writeFileSync(path.join(app, 'main.js'), APP);

    const env = { ...process.env, TASKTIDE_ADDRESS: ADDRESS };
    delete env.TASKTIDE_PROTO_PATH;
    const out = await run(process.execPath, ['main.js', freshQueue()], { cwd: app, env });
    const result = JSON.parse(out.stdout.trim().split('\n').at(-1));
    assert.equal(result.sum, 42);
    assert.equal(result.where, path.join(fs.realpathSync(target), 'src', 'index.js'));
  });
});
