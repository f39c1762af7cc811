// Pieces of the worker's Session stream that hold no state: the hello message and the pause before
// reconnecting.

import os from 'node:os';

const RECONNECT_MIN_MS = 200;
const RECONNECT_MAX_MS = 5000;

/**
 * The pause before reconnect number `n` (from 0): doubling from 200 ms up to 5 s, the upper half of
 * it random, so workers that lost the registry together do not return together.
 */
export function reconnectDelay(n, random = Math.random) {
  const ceiling = Math.min(RECONNECT_MIN_MS * 2 ** n, RECONNECT_MAX_MS);
  return ceiling / 2 + random() * (ceiling / 2);
}

/** A promise with its resolve function. */
export function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** The first message of a session: who the worker is and what it runs. */
export function helloMessage(worker) {
  return {
    hello: {
      workerId: worker.workerId,
      hostname: os.hostname(),
      pid: process.pid,
      queues: worker.queues,
      taskNames: worker.taskNames,
      concurrency: worker.concurrency,
      language: 'node',
      resizable: true,
    },
  };
}
