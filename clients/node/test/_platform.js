// Gives the tests a platform when none is named: without TASKTIDE_ADDRESS, `tasktide dev` is started
// (embedded Redis, port 0, the address read from the line it prints) with a Python worker for
// tests.tasks_app:app on a fresh queue (TASKTIDE_TEST_PYTHON_QUEUE); both are stopped when the test
// process exits. So `node --test` run alone tests against real services instead of skipping.
// The Python interpreter is $TASKTIDE_PYTHON, else the repository's .venv, else python3.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function python() {
  if (process.env.TASKTIDE_PYTHON) return process.env.TASKTIDE_PYTHON;
  const venv = path.join(ROOT, '.venv', 'bin', 'python');
  return fs.existsSync(venv) ? venv : 'python3';
}

function listening(dev) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tasktide dev did not listen within 60 s')), 60_000);
    readline.createInterface({ input: dev.stdout }).on('line', (line) => {
      const found = /listening on (\S+:\d+)/.exec(line);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    dev.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tasktide dev exited (${code}) before listening`));
    });
  });
}

async function startPlatform() {
  const py = python();
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'tasktide-node-test-'));
  const env = { ...process.env, TASKTIDE_REDIS_URL: '', TASKTIDE_LEASE_SECONDS: '3' };
  // stdout of the test process belongs to the test runner: the children write to stderr only.
  const dev = spawn(py, ['-m', 'tasktide.cli', 'dev', '--address', '127.0.0.1:0', '--data-dir', data], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const children = [dev];
  process.on('exit', () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    fs.rmSync(data, { recursive: true, force: true });
  });
  const address = await listening(dev);
  const queue = `node-python-${crypto.randomBytes(5).toString('hex')}`;
  const worker = spawn(py, ['-m', 'tasktide.cli', 'worker', 'tests.tasks_app:app', '--queues', queue], {
    cwd: ROOT,
    env: { ...env, TASKTIDE_ADDRESS: address },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(worker);
  for (const child of children) child.unref(); // the tests' own work decides when the process ends
  dev.stdout.unref();
  process.env.TASKTIDE_ADDRESS = address;
  process.env.TASKTIDE_TEST_PYTHON_QUEUE = queue;
}

if (!process.env.TASKTIDE_ADDRESS) await startPlatform();
