// Shared by the tests: they run against the platform at TASKTIDE_ADDRESS, or one _platform.js starts.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import './_platform.js';
import { Worker } from '../src/index.js';

export const ADDRESS = process.env.TASKTIDE_ADDRESS;
export const PYTHON_QUEUE = process.env.TASKTIDE_TEST_PYTHON_QUEUE;
export const SKIP = ADDRESS ? false : 'TASKTIDE_ADDRESS is not set';

/**
 * Client options that send every service's calls to `address`, a server of the test's own, whatever
 * TASKTIDE_SCHEDULER/REGISTRY/RESULTS_ADDRESS name for the platform under test (they are set when
 * its services run as separate processes, and would otherwise win over `address`).
 */
export function only(address, options = {}) {
  return { schedulerAddress: address, registryAddress: address, resultsAddress: address, ...options };
}

export function freshQueue() {
  return `node-${crypto.randomBytes(5).toString('hex')}`;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until `check()` is true, polling; fails after `seconds`. */
export async function until(check, seconds, what) {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A logger that keeps warnings, so tests can assert none were logged. */
export function recordingLogger() {
  const warnings = [];
  return { warnings, warn: (m) => warnings.push(m), info() {}, error: (m) => warnings.push(m) };
}

/** A worker on a fresh queue, running while `body(worker, queue)` runs, stopped afterwards. */
export async function withWorker(client, options, register, body) {
  const queue = freshQueue();
  const logger = recordingLogger();
  const worker = new Worker(client, { queues: [queue], concurrency: 2, logger, ...options });
  register(worker);
  const running = worker.run();
  try {
    await body(worker, queue, logger);
  } finally {
    await worker.stop();
    await running;
  }
  return worker;
}

export function failure(promise) {
  return promise.then(
    () => assert.fail('the task should have failed'),
    (e) => e,
  );
}
