// A Node worker for tasks submitted from any language, for example from Python:
//   client.submit("node.add", [2, 3]).get(timeout=10)  ->  5
//
//   TASKTIDE_ADDRESS=127.0.0.1:50051 TASKTIDE_QUEUES=default node examples/worker.js
//
// SIGTERM or SIGINT drains: tasks not started are released, running ones finish, then it exits.
import { Client, Worker } from '../src/index.js';

const client = new Client();
const worker = new Worker(client, {
  queues: (process.env.TASKTIDE_QUEUES || 'default').split(','),
  concurrency: Number(process.env.TASKTIDE_CONCURRENCY || 4),
  handleSignals: true,
});

worker.register('node.add', ([x, y]) => x + y);

worker.register('node.echo', (args, kwargs) => ({ args, kwargs }));

worker.register('node.fail', ([message]) => {
  throw new RangeError(message);
});

worker.register('node.sleep', async ([seconds], kwargs, ctx) => {
  ctx.progress(0, 'started');
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return `slept ${seconds} on attempt ${ctx.attempt}`;
});

console.log(`node worker ${worker.workerId} consuming ${worker.queues.join(',')}`);
await worker.run();
client.close();
console.log(`node worker ${worker.workerId} stopped after ${worker.completed} tasks`);
