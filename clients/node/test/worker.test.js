// The Node worker runtime against a running platform: Node submits, a Node worker runs.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { Client, TaskCancelled, TaskFailed, Worker } from '../src/index.js';
import { ADDRESS, SKIP, failure, freshQueue, recordingLogger, sleep, until, withWorker } from './_support.js';

describe('worker', { skip: SKIP }, () => {
  const client = new Client(ADDRESS);
  after(() => client.close());

  test('runs tasks; a thrown error and an unknown name come back as TaskFailed', async () => {
    class QuotaError extends Error {}
    await withWorker(
      client,
      {},
      (w) => {
        w.register('node.add', ([x, y]) => x + y);
        w.register('node.greet', async (args, { name }) => `hello ${name}`);
        w.register('node.quota', function checkQuota() {
          throw new QuotaError('over quota');
        });
      },
      async (worker, queue, logger) => {
        const [add, greet, quota, unknown] = await client.submitBatch([
          { name: 'node.add', args: [2, 3], queue },
          { name: 'node.greet', kwargs: { name: 'Ada' }, queue },
          { name: 'node.quota', queue },
          { name: 'node.nobody', queue },
        ]);
        assert.equal(await add.get({ timeout: 20 }), 5);
        assert.equal(await greet.get({ timeout: 20 }), 'hello Ada');

        const err = await failure(quota.get({ timeout: 20 }));
        assert.ok(err instanceof TaskFailed);
        assert.equal(err.remoteType, 'QuotaError');
        assert.equal(err.remoteMessage, 'over quota');
        assert.match(err.remoteTraceback, /checkQuota/);

        const missing = await failure(unknown.get({ timeout: 20 }));
        assert.equal(missing.remoteType, 'tasktide.UnknownTask');
        assert.match(missing.remoteMessage, new RegExp(worker.workerId));
        assert.deepEqual(logger.warnings, []);
      },
    );
  });

  test('ctx.retry asks for another attempt; autoretry stops when retries are exhausted', async () => {
    const attempts = { flaky: [], doomed: 0 };
    await withWorker(
      client,
      {},
      (w) => {
        w.register('node.flaky', (args, kwargs, ctx) => {
          attempts.flaky.push(ctx.attempt);
          if (ctx.attempt === 0) ctx.retry({ countdown: 0.05 });
          return `attempt ${ctx.attempt}`;
        });
        w.register(
          'node.doomed',
          () => {
            attempts.doomed += 1;
            throw new TypeError('always');
          },
          { maxRetries: 2, retryBackoff: 0.01, retryJitter: false, autoretry: (e) => e instanceof TypeError },
        );
      },
      async (worker, queue) => {
        const flaky = await client.submit('node.flaky', [], { queue, maxRetries: 3 });
        assert.equal(await flaky.get({ timeout: 20 }), 'attempt 1');
        assert.deepEqual(attempts.flaky, [0, 1]);

        const doomed = await client.submit('node.doomed', [], { queue });
        const err = await failure(doomed.get({ timeout: 20 }));
        assert.equal(err.remoteType, 'TypeError');
        assert.equal(attempts.doomed, 3, 'the first attempt and two retries');
      },
    );
  });

  test('credit returns with each outcome batch: more tasks than the credit window all run', async () => {
    await withWorker(
      client,
      { concurrency: 1, prefetch: 1 },
      (w) => w.register('node.square', ([x]) => x * x),
      async (worker, queue) => {
        assert.equal(worker.credit, 2);
        const numbers = [...Array(12).keys()];
        const handles = await client.submitBatch(numbers.map((x) => ({ name: 'node.square', args: [x], queue })));
        const results = await Promise.all(handles.map((h) => h.get({ timeout: 20 })));
        assert.deepEqual(results, numbers.map((x) => x * x));
      },
    );
  });

  test('the outcome of the only task running is written at once, not on a later turn of the event loop', async () => {
    const waiting = []; // what waits to be written, seen on the turn after each task returned
    await withWorker(
      client,
      {},
      (w) =>
        w.register('node.mark', (args, kwargs, ctx) => {
          setImmediate(() => waiting.push([ctx.taskId, w.outboxSize]));
          return 'marked';
        }),
      async (worker, queue) => {
        for (let i = 0; i < 3; i++) {
          const handle = await client.submit('node.mark', [], { queue });
          assert.equal(await handle.get({ timeout: 20 }), 'marked');
          await until(() => waiting.some(([id]) => id === handle.id), 20, 'the turn after the task');
        }
        assert.deepEqual(waiting.map(([, size]) => size), [0, 0, 0]);
      },
    );
  });

  test('heartbeats keep the lease of a task that runs longer than the lease', async (t) => {
    let runs = 0;
    await withWorker(
      client,
      {},
      (w) => {
        w.register('node.long', async () => {
          runs += 1;
          if (w.leaseSeconds <= 5) await sleep(w.leaseSeconds * 1500);
          return 'done';
        });
      },
      async (worker, queue, logger) => {
        const handle = await client.submit('node.long', [], { queue });
        await until(() => runs === 1, 20, 'the task to start');
        if (worker.leaseSeconds > 5) {
          t.skip(`the platform's lease is ${worker.leaseSeconds} s`);
          return;
        }
        assert.equal(await handle.get({ timeout: 30 }), 'done');
        assert.equal(runs, 1, 'the lease never expired, so the task was not redelivered');
        assert.deepEqual(logger.warnings, []);
      },
    );
  });

  test('a cancel signal aborts ctx.signal of a running task', async () => {
    let started = false;
    await withWorker(
      client,
      {},
      (w) => {
        w.register('node.wait', (args, kwargs, ctx) => {
          started = true;
          return new Promise((resolve, reject) => {
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
          });
        });
      },
      async (worker, queue) => {
        const handle = await client.submit('node.wait', [], { queue });
        await until(() => started, 20, 'the task to start');
        await handle.cancel();
        const err = await failure(handle.get({ timeout: 20 }));
        assert.ok(err instanceof TaskCancelled);
        assert.equal(err.remoteType, 'CancelRequested');
      },
    );
  });

  test('a soft time limit aborts ctx.signal; the attempt is recorded as a failure', async () => {
    await withWorker(
      client,
      {},
      (w) => {
        w.register('node.stuck', (args, kwargs, ctx) => new Promise((resolve, reject) => {
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        }));
      },
      async (worker, queue) => {
        const handle = await client.submit('node.stuck', [], { queue, softTimeLimit: 0.2 });
        const err = await failure(handle.get({ timeout: 20 }));
        assert.equal(err.remoteType, 'SoftTimeLimitExceeded');
      },
    );
  });

  test('at the hard time limit the attempt is reported at once, whatever the function does', async () => {
    await withWorker(
      client,
      {},
      (w) => w.register('node.deaf', () => sleep(1000).then(() => 'too late')),
      async (worker, queue) => {
        const handle = await client.submit('node.deaf', [], { queue, timeLimit: 0.2 });
        const err = await failure(handle.get({ timeout: 20 }));
        assert.equal(err.remoteType, 'tasktide.TimeLimitExceeded');
        assert.match(err.remoteMessage, /hard time limit of 0.2 s/);
      },
    );
  });

  test('progress reports reach watchers', async () => {
    await withWorker(
      client,
      {},
      (w) => {
        w.register('node.steps', async (args, kwargs, ctx) => {
          ctx.progress(0.5, 'half way');
          await sleep(50);
          return 'finished';
        });
      },
      async (worker, queue) => {
        const handle = await client.submit('node.steps', [], { queue });
        const events = [];
        for await (const e of handle.watch()) events.push(e);
        const progress = events.find((e) => e.progressOnly);
        assert.ok(progress, 'a progress event was recorded');
        assert.equal(progress.progress, 0.5);
        assert.equal(progress.message, 'half way');
        assert.equal(events.at(-1).result, 'finished');
      },
    );
  });

  test('stop() releases tasks not started, finishes the running one, and another worker runs the rest', async () => {
    const queue = freshQueue();
    const runs = [];
    const register = (w) =>
      w.register('node.slow', async ([label]) => {
        runs.push(label);
        await sleep(300);
        return label;
      });
    const labels = ['a', 'b', 'c'];
    const handles = await client.submitBatch(labels.map((label) => ({ name: 'node.slow', args: [label], queue })));

    const first = new Worker(client, { queues: [queue], concurrency: 1, prefetch: 3, logger: recordingLogger() });
    register(first);
    const running = first.run();
    await until(() => runs.length === 1, 20, 'the first task to start');
    await first.stop();
    await running;
    assert.equal(runs.length, 1, 'nothing started after stop()');
    const started = handles[['a', 'b', 'c'].indexOf(runs[0])];
    assert.equal(await started.status(), 'SUCCEEDED', 'the running task finished');
    const stats = (await client.queueStats()).find((q) => q.queue === queue);
    assert.equal(stats.ready, 2, 'the others went back to their queue');
    assert.equal(stats.leased, 0);

    const second = new Worker(client, { queues: [queue], concurrency: 2, logger: recordingLogger() });
    register(second);
    const again = second.run();
    try {
      assert.deepEqual(await Promise.all(handles.map((h) => h.get({ timeout: 20 }))), ['a', 'b', 'c']);
    } finally {
      await second.stop();
      await again;
    }
    assert.deepEqual([...runs].sort(), ['a', 'b', 'c'], 'each task ran once');
  });
});
