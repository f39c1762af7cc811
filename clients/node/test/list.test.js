// listTasks against a running platform: cancelled tasks of a fresh queue, newest first, page by page.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { Client, InvalidArgument } from '../src/index.js';
import { ADDRESS, SKIP, freshQueue } from './_support.js';

describe('listTasks', { skip: SKIP }, () => {
  const client = new Client(ADDRESS);
  after(() => client.close());

  test('lists the tasks of a queue by state, newest first, with a cursor', async () => {
    const queue = freshQueue();
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const h = await client.submit('t.add', [i, i], { queue, countdown: 3600 });
      await h.cancel();
      ids.push(h.id);
    }
    let listed = [];
    for (let round = 0; round < 200 && listed.length < 3; round++) {
      listed = [];
      let cursor = '';
      do {
        const page = await client.listTasks({ states: 'CANCELLED', queue, limit: 2, cursor });
        listed.push(...page.tasks);
        cursor = page.nextCursor;
      } while (cursor);
      if (listed.length < 3) await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(
      listed.map((t) => t.taskId),
      [...ids].reverse(),
    );
    assert.ok(listed.every((t) => t.state === 'CANCELLED'));
    const counted = await client.listTasks({ limit: 1, counts: true });
    assert.ok(counted.countsByState.CANCELLED >= 3);
    await assert.rejects(client.listTasks({ cursor: 'not a cursor!' }), InvalidArgument);
  });
});
