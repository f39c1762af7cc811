// Several submissions per SubmitStream message: once the scheduler announced it takes them (the
// stream's initial metadata), the submissions made in one turn of the event loop go as one message
// and answers may come back several per message; each caller still gets its own task. A scheduler
// that announces nothing gets one submission per message. Messages are counted by a client
// interceptor on the stream, outside the submitter.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Client } from '../src/index.js';
import { protocol } from '../src/protocol.js';
import { buildSpec } from '../src/spec.js';
import { BATCH_HEADER, MAX_BATCH_BYTES, MAX_PER_MESSAGE, perMessage, sizeBound } from '../src/submitter.js';
import { ADDRESS, SKIP, only, withWorker } from './_support.js';

const STREAM = '/tasktide.v1.Scheduler/SubmitStream';

/** Counts of the SubmitStream messages a client sends and receives, and an interceptor keeping them. */
function streamCounter() {
  const counts = { sent: 0, entries: 0, largest: 0, received: 0, batchesReceived: 0 };
  const interceptor = (opts, nextCall) => {
    if (opts.method_definition.path !== STREAM) return new grpc.InterceptingCall(nextCall(opts));
    return new grpc.InterceptingCall(nextCall(opts), {
      sendMessage(message, next) {
        const n = message.batch?.length || 1;
        counts.sent += 1;
        counts.entries += n;
        counts.largest = Math.max(counts.largest, n);
        next(message);
      },
      start(metadata, listener, next) {
        next(metadata, {
          onReceiveMessage(message, nextMessage) {
            counts.received += 1;
            if (message.batch.length) counts.batchesReceived += 1;
            nextMessage(message);
          },
        });
      },
    });
  };
  return { counts, interceptor };
}

/** `producers` loops, each submitting its share of `n` one at a time; the handles in order of i. */
async function oneByOne(client, producers, n, submitOne) {
  const handles = new Array(n);
  await Promise.all(
    Array.from({ length: producers }, async (_, p) => {
      for (let i = p; i < n; i += producers) handles[i] = await submitOne(i);
    }),
  );
  return handles;
}

describe('several submissions per message, against the platform', { skip: SKIP, timeout: 120_000 }, () => {
  const closing = [];
  after(() => closing.forEach((c) => c.close()));

  test('producers woken by one answer share the next message; each gets its own task', async () => {
    const { counts, interceptor } = streamCounter();
    const client = new Client(ADDRESS, { interceptors: [interceptor] });
    closing.push(client);
    const n = 400;
    await withWorker(
      client,
      { concurrency: 8 },
      (w) => w.register('n.inc', ([x]) => x + 1),
      async (_, queue) => {
        const handles = await oneByOne(client, 8, n, (i) => client.submit('n.inc', [i], { queue }));
        assert.equal(new Set(handles.map((h) => h.id)).size, n);
        assert.equal(counts.entries, n);
        assert.ok(counts.sent < n, `${counts.sent} messages for ${n} submissions`);
        assert.ok(counts.batchesReceived > 0, 'answers came several per message');
        const results = await Promise.all(handles.map((h) => h.get({ timeout: 30 })));
        assert.deepEqual(
          results,
          handles.map((_, i) => i + 1),
        );
      },
    );
  });

  test('submissions made at once share messages once the scheduler announced batches', async () => {
    const { counts, interceptor } = streamCounter();
    const client = new Client(ADDRESS, { interceptors: [interceptor] });
    closing.push(client);
    await withWorker(
      client,
      {},
      (w) => w.register('n.inc', ([x]) => x + 1),
      async (_, queue) => {
        await client.submit('n.inc', [0], { queue }); // opens the stream; its answer follows the announcement
        assert.equal(counts.sent, 1);
        const n = 300;
        const handles = await Promise.all(Array.from({ length: n }, (_, i) => client.submit('n.inc', [i], { queue })));
        assert.equal(counts.entries, 1 + n);
        // The first goes at once; the others, made while it is in flight, together.
        assert.ok(counts.sent <= 3, `${counts.sent - 1} messages for ${n} submissions`);
        assert.equal(new Set(handles.map((h) => h.id)).size, n);
        for (const i of [0, 137, n - 1]) assert.equal(await handles[i].get({ timeout: 30 }), i + 1);
      },
    );
  });
});

test("a request's size bound is at least its encoded size", () => {
  const encode = protocol().Scheduler.service.SubmitStream.requestSerialize;
  const specs = [
    buildSpec('n.noop', []),
    buildSpec('n.keys', [], { headers: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`${i}`.repeat(1000), ''])) }),
    buildSpec('n.big', ['x'.repeat(300_000)], { kwargs: { k: 'é'.repeat(70_000) }, queue: 'q'.repeat(200) }),
    buildSpec('n.all', [1, 2.5, null], {
      queue: 'q',
      priority: -100,
      eta: 4e9,
      expires: 60,
      idempotencyKey: 'k'.repeat(300),
      maxRetries: 3,
      rateLimit: '10/s',
      timeLimit: 5,
      link: ['a'.repeat(32), 'b'.repeat(32)],
      headers: { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, 'ключ-é': 'значение'.repeat(40), '': '' },
    }),
  ];
  for (const [i, spec] of specs.entries()) {
    const request = { seq: String(2 ** 53 + i), spec };
    assert.ok(sizeBound(request) >= encode(request).length, spec.name);
  }
});

/**
 * A scheduler of the test's own: sends `header` (if any) as its stream's initial metadata, answers
 * each submission with a task id made of its name's number, `group` answers per message (in reverse
 * order, as batches when more than one), and keeps every request message it received.
 */
async function fakeScheduler({ header, group = 1 }) {
  const received = [];
  const server = new grpc.Server();
  server.addService(protocol().Scheduler.service, {
    SubmitStream(call) {
      if (header !== undefined) {
        const md = new grpc.Metadata();
        md.set(BATCH_HEADER, header);
        call.sendMetadata(md);
      }
      let ready = [];
      const answer = () => {
        const out = ready.reverse();
        ready = [];
        call.write(out.length === 1 ? out[0] : { batch: out });
      };
      call.on('data', (req) => {
        received.push(req);
        for (const entry of req.batch.length ? req.batch : [req]) {
          const id = entry.spec.name.replace(/\D/g, '').padStart(32, '0');
          ready.push({ seq: entry.seq, result: { taskId: id, existing: false } });
          if (ready.length >= group) answer();
        }
        if (ready.length) answer();
      });
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, received, address: `127.0.0.1:${port}` };
}

const idOf = (i) => String(i).padStart(32, '0');

test('what a scheduler announces is read as a count of submissions per message, within bounds', () => {
  const announced = (value) => {
    const md = new grpc.Metadata();
    if (value !== undefined) md.set(BATCH_HEADER, value);
    return perMessage(md);
  };
  assert.equal(announced(undefined), 1);
  assert.equal(announced('7'), 7);
  assert.equal(announced(String(MAX_PER_MESSAGE * 50)), MAX_PER_MESSAGE);
  for (const bad of ['0', '-3', 'many', '2.5', '']) assert.equal(announced(bad), 1, bad);
});

describe('several submissions per message, against schedulers of the test', { timeout: 60_000 }, () => {
  test('a scheduler that announces no batches gets one submission per message', async () => {
    const { server, received, address } = await fakeScheduler({});
    const client = new Client(address, only(address));
    try {
      const first = await client.submit('t0', []);
      assert.equal(first.id, idOf(0));
      const together = await Promise.all(Array.from({ length: 100 }, (_, i) => client.submit(`t${i + 1}`, [])));
      const looped = await oneByOne(client, 8, 80, (i) => client.submit(`t${i + 101}`, []));
      assert.deepEqual(
        [...together, ...looped].map((h) => h.id),
        Array.from({ length: 180 }, (_, i) => idOf(i + 1)),
      );
      assert.equal(received.length, 181);
      assert.ok(received.every((req) => req.batch.length === 0));
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('a submission aborted before its message was written is not sent', async () => {
    const { server, received, address } = await fakeScheduler({ header: '7' });
    const client = new Client(address, only(address));
    try {
      await client.submit('t0', []);
      const stop = new AbortController();
      const first = client.submit('t1', []); // alone: written at once
      const aborted = client.submit('t2', [], { signal: stop.signal }); // waits for the next message
      const last = client.submit('t3', []);
      stop.abort(new Error('stop'));
      await assert.rejects(aborted, /stop/);
      assert.deepEqual([(await first).id, (await last).id], [idOf(1), idOf(3)]);
      const names = received.flatMap((req) => (req.batch.length ? req.batch : [req])).map((r) => r.spec.name);
      assert.deepEqual(names, ['t0', 't1', 't3']);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('a message of several submissions stays under MAX_BATCH_BYTES; a larger submission goes alone', async () => {
    const { server, received, address } = await fakeScheduler({ header: '1000' });
    const client = new Client(address, only(address));
    try {
      await client.submit('t0', []);
      const args = (i) => [(i === 4 ? 'y' : 'x').repeat(i === 4 ? 1_200_000 : 300_000)];
      const handles = await Promise.all([1, 2, 3, 4, 5, 6, 7].map((i) => client.submit(`t${i}`, args(i))));
      assert.deepEqual(
        handles.map((h) => h.id),
        [1, 2, 3, 4, 5, 6, 7].map(idOf),
      );
      const sizes = received.slice(1).map((req) => req.batch.length || 1);
      assert.deepEqual(sizes, [1, 2, 1, 3]); // t1 at once; t4 alone
      const encode = protocol().Scheduler.service.SubmitStream.requestSerialize;
      for (const req of received) if (req.batch.length) assert.ok(encode(req).length < MAX_BATCH_BYTES);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('messages hold at most what the scheduler announced; answers in batches reach their callers', async () => {
    const { server, received, address } = await fakeScheduler({ header: '7', group: 5 });
    const client = new Client(address, only(address));
    try {
      await client.submit('t0', []);
      const n = 40;
      const handles = await Promise.all(Array.from({ length: n }, (_, i) => client.submit(`t${i + 1}`, [])));
      assert.deepEqual(
        handles.map((h) => h.id),
        Array.from({ length: n }, (_, i) => idOf(i + 1)),
      );
      const sizes = received.slice(1).map((req) => req.batch.length || 1);
      assert.equal(sizes.reduce((a, b) => a + b), n);
      assert.equal(Math.max(...sizes), 7);
      assert.ok(sizes.length <= 8, sizes.join(' '));
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});
