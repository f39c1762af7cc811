// wait() and result() over one Results.Follow stream per Client (src/follower.js): many waits share
// it, a wait that timed out takes its id off, and a later wait of that id is answered.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Client, TaskTimeout, Unavailable } from '../src/index.js';
import { MAX_FAILURES } from '../src/follower.js';
import { protocol } from '../src/protocol.js';
import { ADDRESS, PYTHON_QUEUE, SKIP, failure, freshQueue, only } from './_support.js';

describe('follow', { skip: SKIP }, () => {
  const python = { skip: PYTHON_QUEUE ? false : 'TASKTIDE_TEST_PYTHON_QUEUE is not set' };
  const clients = [];
  after(() => clients.forEach((c) => c.close()));
  const fresh = () => {
    const c = new Client(ADDRESS);
    clients.push(c);
    return c;
  };

  test('many concurrent waits are answered on one stream', async () => {
    const client = fresh();
    const queue = freshQueue(); // no worker: the tasks stay queued until cancelled
    const tasks = Array.from({ length: 40 }, (_, i) => ({ name: 'x.never', args: [i], queue }));
    const handles = await client.submitBatch(tasks);
    const waits = handles.map((h) => h.wait());
    const twice = handles[0].wait(); // a second call for the same id shares its entry
    for (const h of handles) assert.equal(await h.cancel(), 'CANCELLED');
    const results = await Promise.all(waits);
    assert.deepEqual(
      results.map((r) => [r.taskId, r.state]),
      handles.map((h) => [h.id, 'CANCELLED']),
    );
    assert.equal((await twice).state, 'CANCELLED');
    assert.equal(client._follower.opened, 1);
    assert.equal(client._follower._waiters.size, 0);
  });

  test('results computed by a worker arrive on the stream', python, async () => {
    const client = fresh();
    const handles = await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.submit('t.add', [i, 1], { queue: PYTHON_QUEUE })),
    );
    assert.deepEqual(
      await Promise.all(handles.map((h) => h.get({ timeout: 30 }))),
      handles.map((_, i) => i + 1),
    );
    assert.equal(client._follower.opened, 1);
  });

  test('a wait that timed out is taken off, and a later wait of the same id is answered', async () => {
    const client = fresh();
    const handle = await client.submit('x.never', [], { queue: freshQueue() });
    const err = await failure(handle.wait({ timeout: 0.2 }));
    assert.ok(err instanceof TaskTimeout, String(err));
    assert.equal(err.taskId, handle.id);
    assert.equal(client._follower._waiters.has(handle.id), false);
    const later = handle.wait({ timeout: 30 });
    assert.equal(await handle.cancel(), 'CANCELLED');
    assert.equal((await later).state, 'CANCELLED');
  });

  test('an aborted wait rejects with the signal reason and leaves nothing followed', async () => {
    const client = fresh();
    const handle = await client.submit('x.never', [], { queue: freshQueue() });
    const controller = new AbortController();
    const waiting = handle.wait({ signal: controller.signal });
    controller.abort(new Error('stopped waiting'));
    assert.equal((await failure(waiting)).message, 'stopped waiting');
    assert.equal(client._follower._waiters.size, 0);
    await handle.cancel();
  });

  test('a malformed id goes by Wait, which reports it, and the stream is not touched', async () => {
    const client = fresh();
    const err = await failure(client.wait('not-an-id', { timeout: 5 }));
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.equal(client._follower.opened, 0);
  });
});

describe('follow against a results service of the test', () => {
  test('a server without Follow (UNIMPLEMENTED) gets Wait calls, for good', async () => {
    const waits = [];
    const server = new grpc.Server();
    server.addService(protocol().Results.service, {
      Wait(call, callback) {
        waits.push(call.request.taskId);
        callback(null, { taskId: call.request.taskId, found: true, state: 'TASK_STATE_SUCCEEDED' });
      },
    });
    const insecure = grpc.ServerCredentials.createInsecure();
    const port = await new Promise((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', insecure, (err, p) => (err ? reject(err) : resolve(p))),
    );
    const address = `127.0.0.1:${port}`;
    const client = new Client(address, only(address));
    const [a, b] = ['a'.repeat(32), 'b'.repeat(32)];
    try {
      assert.equal((await client.wait(a, { timeout: 10 })).state, 'SUCCEEDED');
      assert.equal(client._follower.unsupported, true);
      assert.equal((await client.wait(b)).state, 'SUCCEEDED');
      assert.deepEqual(waits, [a, b]);
      assert.equal(client._follower.opened, 1);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('a wait on an unreachable platform is Unavailable, not waited for until its timeout', async () => {
    const nowhere = new Client('127.0.0.1:1', only('127.0.0.1:1'));
    try {
      await assert.rejects(nowhere.wait('c'.repeat(32), { timeout: 60 }), Unavailable);
      assert.equal(nowhere._follower.opened, MAX_FAILURES);
    } finally {
      nowhere.close();
    }
  });
});
