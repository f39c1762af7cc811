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
import {
  BATCH_HEADER,
  BYTES_HEADER,
  MAX_BATCH_BYTES,
  MAX_PER_MESSAGE,
  messageBounds,
  sizeBound,
} from '../src/submitter.js';
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

test("a request's size bound is at least its encoded size as an entry of a batch", () => {
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
  const batchOf = (requests) => encode({ batch: requests }).length;
  for (const [i, spec] of specs.entries()) {
    const request = { seq: String(2 ** 53 + i), spec };
    assert.ok(sizeBound(request) >= batchOf([request]), spec.name);
  }
  const all = specs.map((spec, i) => ({ seq: String(i + 1), spec }));
  assert.ok(all.reduce((n, r) => n + sizeBound(r), 0) >= batchOf(all));
});

/**
 * A scheduler of the test's own: sends `header` and `bytes` (if any) as its stream's initial
 * metadata (BATCH_HEADER, BYTES_HEADER), answers each submission with a task id made of its name's
 * number, `group` answers per message (in reverse order, as batches when more than one), and keeps
 * every request message it received. `options` are its gRPC server's.
 */
async function fakeScheduler({ header, bytes, group = 1, options = {} }) {
  const received = [];
  const server = new grpc.Server(options);
  server.addService(protocol().Scheduler.service, {
    SubmitStream(call) {
      if (header !== undefined || bytes !== undefined) {
        const md = new grpc.Metadata();
        if (header !== undefined) md.set(BATCH_HEADER, header);
        if (bytes !== undefined) md.set(BYTES_HEADER, bytes);
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

test('what a scheduler announces is read as a count of submissions and a size per message, within bounds', () => {
  const announced = (count, size) => {
    const md = new grpc.Metadata();
    if (count !== undefined) md.set(BATCH_HEADER, count);
    if (size !== undefined) md.set(BYTES_HEADER, size);
    return messageBounds(md);
  };
  const perMessage = (value) => announced(value).perMessage;
  assert.equal(perMessage(undefined), 1);
  assert.equal(perMessage('7'), 7);
  assert.equal(perMessage(String(MAX_PER_MESSAGE * 50)), MAX_PER_MESSAGE);
  for (const bad of ['0', '-3', 'many', '2.5', '', '+7', '7 ']) assert.equal(perMessage(bad), 1, bad);
  const batchBytes = (value) => announced('50', value).batchBytes;
  assert.equal(batchBytes(undefined), MAX_BATCH_BYTES); // a scheduler from before the size header
  assert.equal(batchBytes('65536'), 65536);
  assert.equal(batchBytes(String(16 * 1024 * 1024)), MAX_BATCH_BYTES);
  assert.equal(batchBytes('9'.repeat(400)), MAX_BATCH_BYTES);
  for (const bad of ['0', '-65536', '+65536', '65536 bytes', '0x10000', '6.5e4', '']) {
    assert.equal(batchBytes(bad), MAX_BATCH_BYTES, bad);
  }
  assert.deepEqual(announced('7', 'many'), { perMessage: 7, batchBytes: MAX_BATCH_BYTES });
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

  test('a message of several submissions stays under the size the scheduler announced', async () => {
    // A scheduler taking messages of 64 KiB at most, as one configured so: a message of several
    // 20 KiB submissions under the client's own 1 MiB bound would end the stream with
    // RESOURCE_EXHAUSTED and fail every submission it carried.
    const limit = 64 * 1024;
    const options = { 'grpc.max_receive_message_length': limit };
    const { server, received, address } = await fakeScheduler({ header: '1000', bytes: String(limit), options });
    const client = new Client(address, only(address));
    try {
      await client.submit('t0', []);
      const n = 40;
      const big = ['x'.repeat(20_000)];
      const handles = await Promise.all(Array.from({ length: n }, (_, i) => client.submit(`t${i + 1}`, big)));
      assert.deepEqual(
        handles.map((h) => h.id),
        Array.from({ length: n }, (_, i) => idOf(i + 1)),
      );
      const encode = protocol().Scheduler.service.SubmitStream.requestSerialize;
      const batches = received.filter((req) => req.batch.length > 1).map((req) => encode(req).length);
      assert.ok(batches.length > 0, 'no message carried several submissions');
      assert.ok(Math.max(...batches) <= limit, batches.join(' '));
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('a malformed size announced by the scheduler leaves the 1 MiB bound', async () => {
    const { server, received, address } = await fakeScheduler({ header: '1000', bytes: '65536 bytes' });
    const client = new Client(address, only(address));
    try {
      await client.submit('t0', []);
      await Promise.all(Array.from({ length: 40 }, (_, i) => client.submit(`t${i + 1}`, ['x'.repeat(20_000)])));
      const encode = protocol().Scheduler.service.SubmitStream.requestSerialize;
      const largest = Math.max(...received.filter((req) => req.batch.length > 1).map((req) => encode(req).length));
      assert.ok(largest > 64 * 1024 && largest <= MAX_BATCH_BYTES, `largest message of several: ${largest} bytes`);
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
