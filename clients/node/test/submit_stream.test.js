// submit() over one SubmitStream against a running platform: many submissions share the stream,
// each confirmed with its own id; a refused one rejects alone; the transport can be chosen; a
// program that submits and never closes its client still ends; a broken stream fails what it
// carried and the next submission opens another; a scheduler without SubmitStream gets Submit calls.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Client, InvalidArgument, Unavailable } from '../src/index.js';
import { protocol } from '../src/protocol.js';
import { ADDRESS, SKIP, freshQueue, only } from './_support.js';

const SUBMIT = '/tasktide.v1.Scheduler/Submit';
const STREAM = '/tasktide.v1.Scheduler/SubmitStream';

/** A client whose scheduler calls and streams are counted by method path. */
function countedClient(options = {}) {
  const calls = new Map();
  const count = (opts, nextCall) => {
    const p = opts.method_definition.path;
    calls.set(p, (calls.get(p) ?? 0) + 1);
    return new grpc.InterceptingCall(nextCall(opts));
  };
  const client = new Client(ADDRESS, { interceptors: [count], ...options });
  return { client, calls: (p) => calls.get(p) ?? 0 };
}

function nested(depth) {
  let v = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

describe('submit over a stream', { skip: SKIP }, () => {
  const closing = [];
  after(() => closing.forEach((c) => c.close()));

  test('concurrent submissions share one stream, each confirmed with its own id', async () => {
    const { client, calls } = countedClient();
    closing.push(client);
    const queue = freshQueue();
    const n = 300;
    const handles = await Promise.all(Array.from({ length: n }, (_, i) => client.submit('node.noop', [i], { queue })));
    const ids = new Set(handles.map((h) => h.id));
    assert.equal(ids.size, n);
    for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(calls(STREAM), 1);
    assert.equal(calls(SUBMIT), 0);
    for (const i of [0, n - 1]) {
      // The answer means the platform holds the task.
      assert.equal(await handles[i].status(), 'QUEUED');
    }
  });

  test('a refused submission rejects alone and the stream goes on', async () => {
    const { client, calls } = countedClient();
    closing.push(client);
    const queue = freshQueue();
    const [bad, good] = await Promise.allSettled([
      client.submit('node.noop', [nested(100)], { queue }),
      client.submit('node.noop', [1], { queue }),
    ]);
    assert.equal(bad.status, 'rejected');
    assert.ok(bad.reason instanceof InvalidArgument, String(bad.reason));
    assert.match(bad.reason.message, /depth|nest/i);
    assert.equal(good.status, 'fulfilled');
    await client.submit('node.noop', [2], { queue });
    assert.equal(calls(SUBMIT), 0);
  });

  test("submitTransport 'unary' makes a Submit call per task; an unknown one is refused", async () => {
    const { client, calls } = countedClient({ submitTransport: 'unary' });
    closing.push(client);
    await client.submit('node.noop', [], { queue: freshQueue() });
    assert.equal(calls(SUBMIT), 1);
    assert.equal(calls(STREAM), 0);
    assert.throws(() => new Client(ADDRESS, { submitTransport: 'carrier-pigeon' }), TypeError);
  });

  test('an aborted submission rejects with the signal reason; the client goes on', async () => {
    const { client } = countedClient();
    closing.push(client);
    const reason = new Error('stop');
    await assert.rejects(client.submit('node.noop', [], { signal: AbortSignal.abort(reason) }), (e) => e === reason);
    const handle = await client.submit('node.noop', [], { queue: freshQueue() });
    assert.match(handle.id, /^[0-9a-f]{32}$/);
  });

  test('a program that submits and never closes its client ends by itself', { timeout: 60_000 }, async () => {
    const script = `
      import { Client } from './src/index.js';
      const client = new Client(process.env.TASKTIDE_ADDRESS);
      const h = await client.submit('node.noop', [], { queue: 'node-exit-check' });
      console.log(h.id);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(code, 0);
    assert.match(out.trim(), /^[0-9a-f]{32}$/);
  });
});

/** A scheduler of the test's own implementing `methods`; resolves to {server, address}. */
async function fakeScheduler(methods) {
  const server = new grpc.Server();
  server.addService(protocol().Scheduler.service, methods);
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

describe('submit against schedulers of the test', () => {
  test('a stream that breaks rejects its submissions with Unavailable; the next opens a new one', async () => {
    let streams = 0;
    const { server, address } = await fakeScheduler({
      SubmitStream(call) {
        const first = ++streams === 1;
        call.on('data', (req) => {
          if (first) call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'scheduler going away' });
          else call.write({ seq: req.seq, result: { taskId: 'c'.repeat(32), existing: false } });
        });
        call.on('end', () => call.end());
      },
    });
    const client = new Client(address, only(address));
    try {
      await assert.rejects(client.submit('x', []), Unavailable);
      assert.equal((await client.submit('x', [])).id, 'c'.repeat(32));
      assert.equal(streams, 2);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('a scheduler without SubmitStream gets Submit calls', async () => {
    let submits = 0;
    const { server, address } = await fakeScheduler({
      Submit(call, callback) {
        submits += 1;
        callback(null, { taskId: 'b'.repeat(32), existing: false });
      },
    });
    const client = new Client(address, only(address));
    try {
      for (let i = 0; i < 2; i++) assert.equal((await client.submit('x', [])).id, 'b'.repeat(32));
      assert.equal(submits, 2);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});
