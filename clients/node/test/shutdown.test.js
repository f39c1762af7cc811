// A worker's shutdown limit against a running platform: stop() drains, and after the limit gives
// back what has not finished (its lease released, its ctx.signal aborted) and returns.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { Client, NotFound, ShutdownLimitExceeded, Worker } from '../src/index.js';
import { ADDRESS, SKIP, freshQueue, recordingLogger, until } from './_support.js';

describe('shutdown limit', { skip: SKIP }, () => {
  const client = new Client(ADDRESS);
  after(() => client.close());

  test('after the limit, a task that does not finish is given back and another worker runs it', async () => {
    const queue = freshQueue();
    let reason = null;
    let quickRuns = 0;
    const first = new Worker(client, { queues: [queue], concurrency: 2, logger: recordingLogger() });
    first.register('node.job', ([label], kwargs, ctx) => {
      if (label === 'quick') {
        quickRuns += 1;
        return 'quick done';
      }
      ctx.signal.addEventListener('abort', () => {
        reason = ctx.signal.reason;
      });
      return new Promise(() => {}); // never finishes on its own
    });
    const running = first.run();
    const stubborn = await client.submit('node.job', ['stubborn'], { queue });
    const quick = await client.submit('node.job', ['quick'], { queue });
    assert.equal(await quick.get({ timeout: 20 }), 'quick done');
    await until(async () => (await stubborn.status()) === 'RUNNING', 20, 'the stubborn task to run');

    await first.stop({ timeout: 0.3 });
    await running;
    assert.ok(reason instanceof ShutdownLimitExceeded, String(reason));
    assert.match(first.logger.warnings.join('\n'), /1 task\(s\) given back/);
    await until(async () => (await stubborn.status()) === 'QUEUED', 20, 'the task to be queued again');
    const stats = (await client.queueStats()).find((q) => q.queue === queue);
    assert.deepEqual([stats.ready, stats.leased], [1, 0]);

    const second = new Worker(client, { queues: [queue], logger: recordingLogger() });
    second.register('node.job', ([label]) => `${label} done by the second worker`);
    const again = second.run();
    try {
      assert.equal(await stubborn.get({ timeout: 20 }), 'stubborn done by the second worker');
    } finally {
      await second.stop();
      await again;
    }
    assert.equal(quickRuns, 1);
  });

  test('a Drain from the registry (DrainWorker) ends run() as stop() does', async () => {
    const queue = freshQueue();
    const workerId = `node-drained-${queue}`;
    const worker = new Worker(client, { queues: [queue], workerId, logger: recordingLogger() });
    worker.register('node.job', () => 'done');
    const running = worker.run();
    const handle = await client.submit('node.job', [], { queue });
    assert.equal(await handle.get({ timeout: 20 }), 'done'); // its session is up
    const [listed] = (await client.workers()).filter((w) => w.workerId === workerId);
    assert.deepEqual([listed.queues, listed.language], [[queue], 'node']);
    assert.equal(await client.drainWorker(workerId), 1);
    await running; // resolves once drained
    const left = async () => !(await client.workers()).some((w) => w.workerId === workerId);
    await until(left, 20, 'the worker to leave');
    const gone = (err) => err instanceof NotFound && /is connected/.test(err.message);
    await assert.rejects(client.drainWorker(workerId), gone);
  });

  test('the shutdownTimeout option is the default limit; tasks that finish in time are not affected', async () => {
    const queue = freshQueue();
    const worker = new Worker(client, { queues: [queue], shutdownTimeout: 10, logger: recordingLogger() });
    let finish;
    worker.register('node.gated', () => new Promise((resolve) => (finish = resolve)));
    const running = worker.run();
    const handle = await client.submit('node.gated', [], { queue });
    await until(() => finish !== undefined, 20, 'the task to start');
    const stopped = worker.stop();
    finish('in time');
    await stopped;
    await running;
    assert.equal(await handle.get({ timeout: 10 }), 'in time');
    assert.deepEqual(worker.logger.warnings, []);
  });
});
