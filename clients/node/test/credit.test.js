// The credit window's arithmetic (src/credit.js), without a platform.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CreditWindow } from '../src/credit.js';

test('the default window starts at three tasks per slot', () => {
  const w = new CreditWindow(8);
  assert.equal(w.target(), 32);
  assert.equal(w.open(), 32);
  assert.equal(w.open(5), 27, 'what is in hand counts against the window');
  assert.equal(w.open(40), 0, 'more in hand than the target: nothing granted');
  assert.equal(w.window, 40);
});

test('short tasks grow the window to 32 per slot, batch by batch', () => {
  const w = new CreditWindow(8);
  w.open();
  for (let i = 0; i < 200; i++) w.observe(0.001);
  assert.equal(w.target(), 8 * 33);
  assert.equal(w.returned(8), 8 + 264 - 32, 'one batch grants up to the target');
  assert.equal(w.window, 264);
  assert.equal(w.returned(8), 8, 'at the target, what comes back is granted again');
});

test('long tasks shrink the window by withholding credit', () => {
  const w = new CreditWindow(2);
  for (let i = 0; i < 200; i++) w.observe(0.001);
  assert.equal(w.open(), 66);
  for (let i = 0; i < 400; i++) w.observe(1.0);
  assert.equal(w.target(), 8);
  assert.equal(w.returned(10), 0);
  assert.equal(w.window, 56);
  let granted = 0;
  for (let i = 0; i < 6; i++) granted += w.returned(10);
  assert.equal(w.window, 8);
  assert.equal(granted, 12, 'the last batch tops the window up to its target');
});

test('a fixed prefetch stays fixed', () => {
  const w = new CreditWindow(4, 2);
  for (let i = 0; i < 100; i++) w.observe(0.0001);
  assert.equal(w.target(), 6);
  assert.equal(w.open(1), 5);
  assert.equal(w.returned(3), 3);
});
