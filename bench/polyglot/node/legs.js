// The legs of an idle round trip from Node.js: one task submitted with client.submit(), then
// handle.get() until its result, a worker in this process (concurrency 8) idle in between, as in
// bench.js's round-trip row. Prints one JSON line: per leg, p50 and p90 in ms; CPU per round trip
// of this process and of the tasktide server (--server-pid, with its child processes).
//
//   node legs.js --address 127.0.0.1:50051 --server-pid PID [--n 300]
//
// Legs: submit (until the submission was confirmed), deliver (confirmed -> the handler started),
// run (the handler), result (the handler returned -> get() resolved: the outcome written, recorded
// and the Wait answered).
import { parseArgs } from 'node:util';

import { Client, Worker } from '@tasktide/client';

import { procSeconds } from './proc.js';

const { values: opt } = parseArgs({
  options: {
    address: { type: 'string', default: '127.0.0.1:50051' },
    'server-pid': { type: 'string', default: '0' },
    n: { type: 'string', default: '300' },
    queue: { type: 'string', default: `legs-${process.pid}` },
  },
});

/** CPU microseconds of a process and its child processes, from /proc (0 without a pid). */
function serverMicros(pid) {
  return pid === '0' ? 0 : procSeconds(pid) * 1e6;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;
const client = new Client(opt.address);
const worker = new Worker(client, { queues: [opt.queue], concurrency: 8 });
let current = {};
worker.register('bench.legs', () => {
  current.started = now();
  current.returned = now();
  return null;
});
const running = worker.run();

async function roundTrip() {
  current = { t0: now() };
  const handle = await client.submit('bench.legs', [], { queue: opt.queue });
  current.confirmed = now();
  await handle.get();
  current.done = now();
  return current;
}

for (let i = 0; i < 20; i++) await roundTrip(); // connections open, code warm
const n = Number(opt.n);
const rows = [];
const own = process.cpuUsage();
const server = serverMicros(opt['server-pid']);
for (let i = 0; i < n; i++) rows.push(await roundTrip());
const used = process.cpuUsage(own);
const serverUsed = serverMicros(opt['server-pid']) - server;

const quantiles = (from, to) => {
  const xs = rows.map((r) => r[to] - r[from]).sort((a, b) => a - b);
  return [xs[Math.floor(xs.length / 2)], xs[Math.floor(xs.length * 0.9)]].map((x) => Number(x.toFixed(3)));
};
const figures = {
  submit_ms: quantiles('t0', 'confirmed'),
  deliver_ms: quantiles('confirmed', 'started'),
  run_ms: quantiles('started', 'returned'),
  result_ms: quantiles('returned', 'done'),
  total_ms: quantiles('t0', 'done'),
  cpu_us_node_per_rtt: Math.round((used.user + used.system) / n),
  cpu_us_server_per_rtt: Math.round(serverUsed / n),
};
await worker.stop();
await running;
client.close();
console.log(JSON.stringify({ lang: 'node', figures }));
process.exit(0);
