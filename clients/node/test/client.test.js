// The client against a running platform; with TASKTIDE_TEST_PYTHON_QUEUE set, a Python worker
// (tests/tasks_app.py) consumes that queue and runs the t.* tasks.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { Client, InvalidArgument, TaskCancelled, TaskFailed, TaskTimeout, Unavailable } from '../src/index.js';
import { ADDRESS, PYTHON_QUEUE, SKIP, freshQueue, only } from './_support.js';

describe('client', { skip: SKIP }, () => {
  const client = new Client(ADDRESS);
  after(() => client.close());
  const python = { skip: PYTHON_QUEUE ? false : 'TASKTIDE_TEST_PYTHON_QUEUE is not set' };

  test('a Python worker runs a task submitted from Node', python, async () => {
    const handle = await client.submit('t.add', [2, 3], { queue: PYTHON_QUEUE });
    assert.match(handle.id, /^[0-9a-f]{32}$/);
    assert.equal(await handle.get({ timeout: 20 }), 5);
    assert.equal(await handle.status(), 'SUCCEEDED');
  });

  test('JSON values keep their shape across languages', python, async () => {
    const value = { n: 1, f: 1.5, s: 'é', list: [true, null], nested: { a: [] } };
    const handle = await client.submit('t.echo', [value], { queue: PYTHON_QUEUE });
    assert.deepEqual(await handle.get({ timeout: 20 }), value);
  });

  test('a Python error comes back as TaskFailed with its type, message and traceback', python, async () => {
    const handle = await client.submit('t.boom', ['no such thing'], { queue: PYTHON_QUEUE });
    const err = await handle.get({ timeout: 20 }).then(
      () => assert.fail('the task should have failed'),
      (e) => e,
    );
    assert.ok(err instanceof TaskFailed);
    assert.equal(err.taskId, handle.id);
    assert.equal(err.remoteType, 'ValueError');
    assert.equal(err.remoteMessage, 'no such thing');
    assert.match(err.remoteTraceback, /raise ValueError\(message\)/);
    assert.equal(err.state, 'FAILED');
  });

  test('kwargs and a batch submission', python, async () => {
    const handles = await client.submitBatch([
      { name: 't.add', args: [1], kwargs: { y: 10 }, queue: PYTHON_QUEUE },
      { name: 't.add', args: [20, 22], queue: PYTHON_QUEUE },
    ]);
    assert.equal(handles.length, 2);
    assert.notEqual(handles[0].id, handles[1].id);
    assert.deepEqual(await Promise.all(handles.map((h) => h.get({ timeout: 20 }))), [11, 42]);
  });

  test('watch streams the events of a task until it is final', python, async () => {
    const handle = await client.submit('t.add', [4, 4], { queue: PYTHON_QUEUE });
    const events = [];
    for await (const event of handle.watch()) events.push(event);
    const last = events.at(-1);
    assert.equal(last.state, 'SUCCEEDED');
    assert.equal(last.result, 8);
    assert.equal(last.taskId, handle.id);
    assert.ok(events.some((e) => e.state === 'RUNNING'));
    assert.ok(last.atMs > 1_600_000_000_000, 'times are Unix milliseconds');
  });

  test('an idempotency key returns the existing task; a delayed task can be cancelled', async () => {
    const queue = freshQueue();
    const key = `key-${queue}`;
    const first = await client.submit('t.add', [1, 1], { queue, countdown: 3600, idempotencyKey: key });
    const again = await client.submit('t.add', [1, 1], { queue, countdown: 3600, idempotencyKey: key });
    assert.equal(again.id, first.id);
    assert.equal(again.existing, true);
    assert.equal(await first.status(), 'SCHEDULED');
    assert.equal((await first.explain()).reason, 'ETA');
    assert.equal(await first.cancel(), 'CANCELLED');
    await assert.rejects(first.get({ timeout: 10 }), TaskCancelled);
  });

  test('waiting on a task nobody runs ends in TaskTimeout', async () => {
    const handle = await client.submit('t.add', [1, 2], { queue: freshQueue() });
    assert.equal(await handle.status(), 'QUEUED');
    assert.equal((await handle.explain()).reason, 'NO_WORKER');
    await assert.rejects(handle.get({ timeout: 0.2 }), TaskTimeout);
  });

  test('an unknown id is UNKNOWN; a malformed one is refused', async () => {
    assert.equal(await client.status('0'.repeat(32)), 'UNKNOWN');
    const refused = (e) => e instanceof InvalidArgument && e.code === 'INVALID_ARGUMENT';
    await assert.rejects(client.status('not-an-id'), refused);
  });

  test('an unreachable platform is Unavailable', async () => {
    const nowhere = new Client('127.0.0.1:1', only('127.0.0.1:1'));
    try {
      await assert.rejects(nowhere.submit('t.add', [1, 2]), Unavailable);
    } finally {
      nowhere.close();
    }
  });
});
