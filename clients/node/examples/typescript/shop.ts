// Typed use of @tasktide/client: checked by `tsc -p examples/typescript` (see test/types.test.js).
// Lines marked @ts-expect-error must fail to type-check: the declarations catch those mistakes.
import { Client, TaskFailed, TaskTimeout, Worker, type TaskContext, type TaskHandle } from '@tasktide/client';
import { TracingHooks } from '@tasktide/client/opentelemetry';

interface Order {
  sku: string;
  quantity: number;
}

export async function main(): Promise<void> {
  const client = new Client(process.env.TASKTIDE_ADDRESS, { token: 'secret', hooks: new TracingHooks() });
  const worker = new Worker(client, { queues: ['shop'], concurrency: 2, shutdownTimeout: 30 });

  worker.register<[number, number], {}, number>('shop.add', ([x, y]) => x + y);
  worker.register<[Order], { express?: boolean }, string>('shop.ship', async ([order], { express }, ctx: TaskContext) => {
    ctx.progress(0.5, 'packing');
    ctx.signal.throwIfAborted();
    return `${order.quantity} x ${order.sku}${express ? ' (express)' : ''}`;
  });
  // @ts-expect-error: the function returns a string, not the number it was registered with
  worker.register<[number], {}, number>('shop.bad', ([x]) => `${x}`);

  const running = worker.run();
  const controller = new AbortController();
  const sum: TaskHandle<number> = await client.submit<number, [number, number]>('shop.add', [1, 2], {
    queue: 'shop',
    priority: 10,
    eta: new Date(Date.now() + 1000),
    expires: 3600,
    maxRetries: 3,
    retryJitter: false,
    rateLimit: '10/s',
    signal: controller.signal,
  });
  const total: number = await sum.get({ timeout: 10 });
  // @ts-expect-error: the result is a number
  const wrong: string = await sum.get();
  // @ts-expect-error: arguments must match the declared tuple
  await client.submit<number, [number, number]>('shop.add', ['1', 2]);
  // @ts-expect-error: priority is a number
  await client.submit('shop.add', [1, 2], { priority: 'high' });

  const shipped = await client.submit<string, [Order], { express: boolean }>(
    'shop.ship',
    [{ sku: 'tea', quantity: total }],
    { kwargs: { express: true }, queue: 'shop' },
  );
  try {
    console.log((await shipped.get({ timeout: 0 })).toUpperCase(), wrong);
  } catch (err) {
    if (err instanceof TaskFailed) console.log(err.remoteType, err.remoteMessage, err.state);
    else if (err instanceof TaskTimeout) console.log('not yet', err.timeout);
    else throw err;
  }
  for await (const event of shipped.watch({ signal: AbortSignal.timeout(5000) })) {
    console.log(event.state, event.progress, event.result?.length);
  }
  await worker.stop({ timeout: 5 });
  await running;
  client.close();
}
