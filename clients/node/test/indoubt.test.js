// The outcomes a worker sends again after a lost session (src/indoubt.js), without a platform.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InDoubt } from '../src/indoubt.js';

const outcome = (taskId, leaseToken) => ({ taskId, leaseToken });
const ids = (outcomes) => outcomes.map((o) => o.taskId);

test('the outcomes written during the last lease are sent again, until the lease passes', () => {
  const d = new InDoubt();
  d.written([outcome('a', '1')], 30_000, 0);
  d.written([outcome('b', '2'), outcome('c', '3')], 30_000, 20_000);
  assert.deepEqual(ids(d.take(30_000, 40_000)), ['b', 'c']);
  assert.ok(d.wasResent({ taskId: 'b', leaseToken: '2' }));
  assert.ok(!d.wasResent({ taskId: 'b', leaseToken: '9' }), 'the lease token must match');
  assert.deepEqual(ids(d.take(30_000, 45_000)), ['b', 'c'], 'a session lost again sends them again');
  assert.deepEqual(d.take(30_000, 51_000), []);
  assert.ok(!d.wasResent({ taskId: 'b', leaseToken: '2' }));
});

test('what is kept is bounded', () => {
  const d = new InDoubt(3);
  d.written(['a', 'b', 'c', 'd', 'e'].map((id, i) => outcome(id, String(i))), 60_000, 0);
  assert.deepEqual(ids(d.take(60_000, 0)), ['c', 'd', 'e']);
});

test('outcomes older than the lease are let go as others are written', () => {
  const d = new InDoubt();
  for (let i = 0; i < 100; i++) d.written([outcome(String(i), '1')], 30_000, 0);
  d.written([outcome('late', '1')], 30_000, 31_000);
  assert.equal(d.size, 1, 'only the outcome of the last lease is kept');
  assert.deepEqual(ids(d.take(30_000, 31_000)), ['late']);
});

test('at its limit, what is kept stays the newest outcomes in order', () => {
  const d = new InDoubt(1000);
  for (let i = 0; i < 5500; i++) d.written([outcome(String(i), '1')], 60_000, 0);
  assert.equal(d.size, 1000);
  const kept = ids(d.take(60_000, 0));
  assert.equal(kept[0], '4500');
  assert.equal(kept.at(-1), '5499');
});
