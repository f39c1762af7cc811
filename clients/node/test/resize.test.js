// ResizeWorker against a running platform: a Node.js worker grows and shrinks while it runs, and
// reports its new size (ListWorkers).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { Client, NotFound, Worker } from '../src/index.js';
import { ADDRESS, SKIP, freshQueue, recordingLogger, until } from './_support.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('resize', { skip: SKIP }, () => {
  const client = new Client(ADDRESS);
  after(() => client.close());

  test('a Resize from the registry (ResizeWorker) grows and shrinks the pool', async () => {
    const queue = freshQueue();
    const workerId = `node-resized-${queue}`;
    const worker = new Worker(client, { queues: [queue], workerId, concurrency: 1, prefetch: 1, logger: recordingLogger() });
    let running = 0;
    let most = 0;
    let release;
    const released = new Promise((resolve) => (release = resolve));
    worker.register('node.held', async () => {
      running += 1;
      most = Math.max(most, running);
      await released;
      running -= 1;
      return 'released';
    });
    const run = worker.run();
    try {
      const steady = async (n) => {
        await until(() => running >= n, 20, `${n} running`);
        await sleep(500);
        assert.equal(running, n);
      };
      const handles = [];
      for (let i = 0; i < 6; i++) handles.push(await client.submit('node.held', [], { queue }));
      await steady(1);
      const size = async () => (await client.workers()).find((w) => w.workerId === workerId);
      assert.deepEqual([(await size()).concurrency, (await size()).resizable], [1, true]);
      assert.equal(await client.resizeWorker(workerId, 3), 1);
      await steady(3); // grown: three at a time, no more
      await until(async () => (await size()).concurrency === 3, 10, 'the new size reported');
      assert.equal(await client.resizeWorker(workerId, 1), 1);
      await until(async () => (await size()).concurrency === 1, 10, 'the smaller size reported');
      most = 0;
      release(); // the three running end; the three left run one at a time
      for (const h of handles) assert.equal(await h.get({ timeout: 20 }), 'released');
      assert.equal(most, 1);
      await assert.rejects(client.resizeWorker('no-such-worker', 2), (err) => err instanceof NotFound);
      await assert.rejects(client.resizeWorker(workerId, 0), RangeError);
    } finally {
      await worker.stop();
      await run;
    }
  });
});
