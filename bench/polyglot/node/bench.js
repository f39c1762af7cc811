// polybench-node measures one system from Node.js and prints one JSON line of figures: the
// tasktide Node.js client (producer and worker) or BullMQ, on the Redis server the driver
// (bench/polyglot) started.
//
//   node bench.js --system tasktide --address 127.0.0.1:50051
//   node bench.js --system bullmq --redis 127.0.0.1:6379 --db 2
//
// Workloads (each on queues of its own), the same as the Go program's (bench/polyglot/go/main.go):
//   one_by_one      tasks/s, one producer awaiting each submission before the next
//   one_by_one_x8   tasks/s, 8 such producers at once
//   bulk            tasks/s, --bulk tasks in one go (tasktide: submitBatch; BullMQ: addBulk), in
//                   calls of 1,000
//   end_to_end      tasks/s, --e2e tasks submitted as in bulk while a worker in this process
//                   (--concurrency) runs them (no-op), until the last handler returned
//   rtt_p50_ms/p99  one task submitted and its result seen by the producer, worker idle (after
//                   WARM_ROUND_TRIPS not measured)
//                   (tasktide: handle.get(); BullMQ: job.waitUntilFinished(queueEvents));
//                   rtt_submit_p50_ms: the first leg, until the submission was confirmed
// Each row's cpu_us_* counts every process involved; cpu_us_client_* this process alone.
import { parseArgs } from 'node:util';

import IORedis from 'ioredis';

import { procSeconds } from './proc.js';

const BATCH = 1000;

const { values: opt } = parseArgs({
  options: {
    system: { type: 'string', default: 'tasktide' },
    address: { type: 'string', default: '' },
    redis: { type: 'string', default: '127.0.0.1:6379' },
    db: { type: 'string', default: '2' },
    one: { type: 'string', default: '2000' },
    bulk: { type: 'string', default: '5000' },
    e2e: { type: 'string', default: '10000' },
    rtt: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    rows: { type: 'string', default: 'all' },
    tag: { type: 'string', default: '' },
    'server-pid': { type: 'string', default: '0' },
  },
});

// CPU seconds used so far by this process, the tasktide server (--server-pid) and the Redis server
// (INFO cpu): figures that, unlike wall time, other programs running on the machine barely change.
const [redisHost, redisPort] = opt.redis.split(':');
const meterRedis = new IORedis({ host: redisHost, port: Number(redisPort), lazyConnect: true });

async function cpuSeconds() {
  const own = process.cpuUsage();
  let total = (own.user + own.system) / 1e6;
  const pid = Number(opt['server-pid']);
  if (pid > 0) total += procSeconds(pid);
  const info = await meterRedis.info('cpu');
  for (const line of info.split('\r\n')) {
    const [k, v] = line.split(':');
    if (k === 'used_cpu_user' || k === 'used_cpu_sys') total += Number(v);
  }
  return total;
}

async function tasktide() {
  const { Client, Worker } = await import('@tasktide/client');
  const client = new Client(opt.address); // TASKTIDE_SUBMIT_TRANSPORT chooses how submit() sends
  const workers = [];
  return {
    submitOne: (queue) => client.submit('bench.noop', [], { queue }),
    async submitMany(queue, name, n) {
      for (let sent = 0; sent < n; sent += BATCH) {
        const size = Math.min(BATCH, n - sent);
        await client.submitBatch(Array.from({ length: size }, () => ({ name, args: [], queue })));
      }
    },
    async startWorker(queue, concurrency, done) {
      const worker = new Worker(client, { queues: [queue], concurrency });
      worker.register('bench.noop', () => null);
      worker.register('bench.count', () => {
        done();
        return null;
      });
      workers.push([worker, worker.run()]);
    },
    async roundTrip(queue) {
      const handle = await client.submit('bench.noop', [], { queue });
      const confirmed = process.hrtime.bigint();
      await handle.get();
      return confirmed;
    },
    async close() {
      for (const [worker, running] of workers) {
        await worker.stop();
        await running;
      }
      client.close();
    },
  };
}

async function bullmq() {
  const { Queue, QueueEvents, Worker } = await import('bullmq');
  const [host, port] = opt.redis.split(':');
  const connection = { host, port: Number(port), db: Number(opt.db), maxRetriesPerRequest: null };
  const queues = new Map();
  const queueOf = (name) => {
    if (!queues.has(name)) queues.set(name, new Queue(name, { connection }));
    return queues.get(name);
  };
  const closing = [];
  let events = null;
  return {
    submitOne: (queue) => queueOf(queue).add('bench.noop', {}),
    async submitMany(queue, name, n) {
      for (let sent = 0; sent < n; sent += BATCH) {
        const size = Math.min(BATCH, n - sent);
        await queueOf(queue).addBulk(Array.from({ length: size }, () => ({ name, data: {} })));
      }
    },
    async startWorker(queue, concurrency, done) {
      const worker = new Worker(
        queue,
        async (job) => {
          if (job.name === 'bench.count') done();
          return null;
        },
        { connection, concurrency },
      );
      await worker.waitUntilReady();
      events = new QueueEvents(queue, { connection });
      await events.waitUntilReady();
      closing.push(worker, events);
    },
    async roundTrip(queue) {
      const job = await queueOf(queue).add('bench.noop', {});
      const confirmed = process.hrtime.bigint();
      await job.waitUntilFinished(events);
      return confirmed;
    },
    async close() {
      for (const c of [...closing, ...queues.values()]) await c.close();
    },
  };
}

/** Runs f once: n tasks/s by wall time as `row`, and CPU µs per task of every process involved. */
async function rate(out, row, n, f) {
  const cpu = await cpuSeconds();
  const own = process.cpuUsage();
  const start = process.hrtime.bigint();
  await f();
  out[row] = n / (Number(process.hrtime.bigint() - start) / 1e9);
  out[`cpu_us_${row}`] = ((await cpuSeconds()) - cpu) / n * 1e6;
  out[`cpu_us_client_${row}`] = clientMicros(own) / n;
}

/** CPU µs of this process since `since` (a process.cpuUsage() reading). */
function clientMicros(since) {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

async function parallel(producers, n, f) {
  await Promise.all(
    Array.from({ length: producers }, async (_, p) => {
      const count = Math.floor(n / producers) + (p < n % producers ? 1 : 0);
      for (let i = 0; i < count; i++) await f();
    }),
  );
}

const WARM_ROUND_TRIPS = 10; // made before the round trips measured

async function main() {
  const sys = opt.system === 'bullmq' ? await bullmq() : await tasktide();
  const q = (row) => `pb-${row}-${opt.tag}`;
  const [n1, bulk, e2e, rtt, concurrency] = [opt.one, opt.bulk, opt.e2e, opt.rtt, opt.concurrency].map(Number);
  const out = {};
  await sys.submitOne(q('warm')); // connections open, not measured
  await rate(out, 'one_by_one', n1, async () => {
    for (let i = 0; i < n1; i++) await sys.submitOne(q('one'));
  });
  await rate(out, 'one_by_one_x8', n1, () => parallel(8, n1, () => sys.submitOne(q('one8'))));
  if (opt.rows !== 'submit') {
    await rate(out, 'bulk', bulk, () => sys.submitMany(q('bulk'), 'bench.noop', bulk));
    let left = e2e;
    let allDone;
    const finished = new Promise((resolve) => (allDone = resolve));
    await sys.startWorker(q('run'), concurrency, () => {
      if (--left === 0) allDone();
    });
    await sys.roundTrip(q('run')); // the worker is connected and warm
    await rate(out, 'end_to_end', e2e, async () => {
      await sys.submitMany(q('run'), 'bench.count', e2e);
      await finished;
    });
    // Not measured, as bench/workloads.py's latency row: the end-to-end row's last outcomes are
    // still being recorded as it ends.
    for (let i = 0; i < WARM_ROUND_TRIPS; i++) await sys.roundTrip(q('run'));
    const cpu = await cpuSeconds();
    const own = process.cpuUsage();
    const samples = [];
    const submitted = [];
    for (let i = 0; i < rtt; i++) {
      const start = process.hrtime.bigint();
      const confirmed = await sys.roundTrip(q('run'));
      samples.push(Number(process.hrtime.bigint() - start) / 1e6);
      submitted.push(Number(confirmed - start) / 1e6);
    }
    out.cpu_us_rtt = ((await cpuSeconds()) - cpu) / rtt * 1e6;
    out.cpu_us_client_rtt = clientMicros(own) / rtt;
    const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    out.rtt_submit_p50_ms = median(submitted);
    out.rtt_p50_ms = median(samples);
    out.rtt_p99_ms = samples[Math.floor((samples.length * 99) / 100)];
  }
  await sys.close();
  meterRedis.disconnect();
  console.log(JSON.stringify({ lang: 'node', system: opt.system, figures: out }));
}

await main();
process.exit(0);
