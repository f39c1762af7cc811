// Defects fixed in the client, each against a running platform: the hard time limit aborts
// ctx.signal; get/wait with timeout 0 look once instead of giving up unasked; a numeric eta means
// Unix seconds and a numeric expires seconds from now, as in the Python client.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { Client, TaskExpired, TaskTimeout, TimeLimitExceeded, Unavailable } from '../src/index.js';
import { ADDRESS, SKIP, failure, freshQueue, only, until, withWorker } from './_support.js';

describe('defects', { skip: SKIP }, () => {
  const client = new Client(ADDRESS);
  after(() => client.close());

  test('the hard time limit aborts ctx.signal of the function it stops waiting for', async () => {
    let reason = null;
    await withWorker(
      client,
      {},
      (w) =>
        w.register(
          'node.deaf',
          (args, kwargs, ctx) =>
            new Promise((resolve) => {
              ctx.signal.addEventListener('abort', () => {
                reason = ctx.signal.reason;
                resolve('stopped');
              });
            }),
        ),
      async (worker, queue) => {
        const handle = await client.submit('node.deaf', [], { queue, timeLimit: 0.2 });
        const err = await failure(handle.get({ timeout: 20 }));
        assert.equal(err.remoteType, 'tasktide.TimeLimitExceeded');
        await until(() => reason !== null, 10, 'ctx.signal to be aborted');
        assert.ok(reason instanceof TimeLimitExceeded, String(reason));
        assert.match(reason.message, /hard time limit of 0.2 s/);
      },
    );
  });

  test('get and wait with timeout 0 ask the server once: a finished task is returned', async () => {
    await withWorker(
      client,
      {},
      (w) => w.register('node.add', ([x, y]) => x + y),
      async (worker, queue) => {
        const handle = await client.submit('node.add', [20, 22], { queue });
        await until(async () => (await handle.status()) === 'SUCCEEDED', 20, 'the task to finish');
        assert.equal(await handle.get({ timeout: 0 }), 42);
        assert.equal((await handle.wait({ timeout: 0 })).state, 'SUCCEEDED');
      },
    );
    const pending = await client.submit('node.add', [1, 2], { queue: freshQueue() });
    await assert.rejects(pending.get({ timeout: 0 }), TaskTimeout);
  });

  test('get with timeout 0 on an unreachable platform is Unavailable, not a timeout', async () => {
    const nowhere = new Client('127.0.0.1:1', only('127.0.0.1:1'));
    try {
      await assert.rejects(nowhere.wait('0'.repeat(32), { timeout: 0 }), Unavailable);
    } finally {
      nowhere.close();
    }
  });

  test('a numeric eta is Unix seconds, as in the Python client', async () => {
    const queue = freshQueue();
    const etaSeconds = Math.floor(Date.now() / 1000) + 3600;
    const handle = await client.submit('node.add', [1, 2], { queue, eta: etaSeconds });
    const why = await handle.explain();
    assert.equal(why.reason, 'ETA');
    assert.equal(why.etaMs, etaSeconds * 1000);
    assert.equal(why.cancelAsked, false);
    const asDate = await client.submit('node.add', [1, 2], { queue, eta: new Date(etaSeconds * 1000) });
    assert.equal((await asDate.explain()).etaMs, etaSeconds * 1000);
    await assert.rejects(client.submit('node.add', [], { eta: Date.now() }), RangeError);
    await handle.cancel();
    await asDate.cancel();
  });

  test('a numeric expires is seconds from now: a task past it never runs', async () => {
    let runs = 0;
    await withWorker(
      client,
      {},
      (w) =>
        w.register('node.count', () => {
          runs += 1;
          return runs;
        }),
      async (worker, queue) => {
        // Due in 1.5 s but expired after 0.2 s: the scheduler must expire it, not run it.
        const expired = await client.submit('node.count', [], { queue, countdown: 1.5, expires: 0.2 });
        await assert.rejects(expired.get({ timeout: 20 }), TaskExpired);
        const kept = await client.submit('node.count', [], { queue, expires: 60 });
        assert.equal(await kept.get({ timeout: 20 }), 1);
        assert.equal(runs, 1);
      },
    );
  });
});
