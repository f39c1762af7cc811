// The OpenTelemetry plug-in against a running platform: a Node producer's send span and a Node
// worker's process span in one trace, the worker's span the child, named and attributed as the
// Python client's spans are.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { SpanKind, SpanStatusCode, context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { Client } from '../src/index.js';
import { TracingHooks } from '../src/contrib/opentelemetry.js';
import { ADDRESS, SKIP, failure, until, withWorker } from './_support.js';

describe('tracing', { skip: SKIP }, () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const hooks = new TracingHooks({ tracerProvider: provider, propagator: new W3CTraceContextPropagator() });
  const client = new Client(ADDRESS, { hooks });
  after(async () => {
    client.close();
    await provider.shutdown();
  });
  const spans = () => exporter.getFinishedSpans();
  const parentId = (s) => s.parentSpanContext?.spanId ?? s.parentSpanId;

  test('the worker continues the trace the producer wrote into the task headers', async () => {
    await withWorker(
      client,
      {},
      (w) => {
        w.register('node.add', ([x, y]) => x + y);
        w.register('node.fail', () => {
          throw new RangeError('no');
        });
      },
      async (worker, queue) => {
        const handle = await client.submit('node.add', [1, 2], { queue });
        assert.equal(await handle.get({ timeout: 20 }), 3);
        const failed = await client.submit('node.fail', [], { queue });
        await failure(failed.get({ timeout: 20 }));
        const of = (id) => spans().filter((s) => s.attributes['messaging.message.id'] === id);
        await until(() => of(handle.id).length === 2 && of(failed.id).length === 2, 10, 'both spans of each task');

        const [send] = of(handle.id).filter((s) => s.kind === SpanKind.PRODUCER);
        const [proc] = of(handle.id).filter((s) => s.kind === SpanKind.CONSUMER);
        assert.equal(send.name, `send ${queue}`);
        assert.equal(proc.name, `process ${queue}`);
        assert.equal(proc.spanContext().traceId, send.spanContext().traceId);
        assert.equal(parentId(proc), send.spanContext().spanId);
        assert.deepEqual(
          [send.attributes['messaging.system'], send.attributes['messaging.operation.type']],
          ['tasktide', 'send'],
        );
        assert.equal(send.attributes['messaging.destination.name'], queue);
        assert.equal(send.attributes['tasktide.task.name'], 'node.add');
        assert.equal(proc.attributes['messaging.operation.type'], 'process');
        assert.equal(proc.attributes['messaging.client.id'], worker.workerId);
        assert.equal(proc.attributes['tasktide.task.attempt'], 0);
        assert.equal(proc.attributes['tasktide.outcome'], 'success');

        const [bad] = of(failed.id).filter((s) => s.kind === SpanKind.CONSUMER);
        assert.equal(bad.attributes['tasktide.outcome'], 'failure');
        assert.equal(bad.status.code, SpanStatusCode.ERROR);
        assert.deepEqual(
          bad.events.map((e) => [e.name, e.attributes['exception.type']]),
          [['exception', 'RangeError']],
        );
      },
    );
  });

  test('a batch is one CLIENT send span with a PRODUCER create span per task', async () => {
    await withWorker(
      client,
      {},
      (w) => w.register('node.add', ([x, y]) => x + y),
      async (worker, queue) => {
        const handles = await client.submitBatch([
          { name: 'node.add', args: [1, 1], queue },
          { name: 'node.add', args: [2, 2], queue },
        ]);
        assert.deepEqual(await Promise.all(handles.map((h) => h.get({ timeout: 20 }))), [2, 4]);
        const of = (id) => spans().filter((s) => s.attributes['messaging.message.id'] === id);
        await until(() => handles.every((h) => of(h.id).length === 2), 10, 'the spans of the batch');
        const creates = handles.map((h) => of(h.id).find((s) => s.kind === SpanKind.PRODUCER));
        const parents = new Set(creates.map(parentId));
        assert.equal(parents.size, 1);
        const batch = spans().find((s) => s.spanContext().spanId === [...parents][0]);
        assert.equal(batch.kind, SpanKind.CLIENT);
        assert.equal(batch.attributes['messaging.batch.message_count'], 2);
        for (const [i, h] of handles.entries()) {
          const proc = of(h.id).find((s) => s.kind === SpanKind.CONSUMER);
          assert.equal(parentId(proc), creates[i].spanContext().spanId);
        }
      },
    );
  });

  test('with a context manager, a task submitted inside a task joins its trace', async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      await withWorker(
        client,
        {},
        (w) => {
          w.register('node.child', ([x]) => x * 2);
          w.register('node.parent', async ([x], kwargs, ctx) => {
            const child = await client.submit('node.child', [x], { queue: ctx.queue });
            return { child: child.id, value: await child.get({ timeout: 20 }) };
          });
        },
        async (worker, queue) => {
          const parent = await client.submit('node.parent', [21], { queue });
          const { child, value } = await parent.get({ timeout: 20 });
          assert.equal(value, 42);
          const of = (id) => spans().filter((s) => s.attributes['messaging.message.id'] === id);
          await until(() => of(child).length === 2, 10, 'the spans of the child task');
          const parentProcess = of(parent.id).find((s) => s.kind === SpanKind.CONSUMER);
          const childSend = of(child).find((s) => s.kind === SpanKind.PRODUCER);
          assert.equal(childSend.spanContext().traceId, parentProcess.spanContext().traceId);
          assert.equal(parentId(childSend), parentProcess.spanContext().spanId);
        },
      );
    } finally {
      context.disable();
    }
  });

  test('a process hook that fails does not lose the attempt', async () => {
    const broken = new Client(ADDRESS, {
      hooks: {
        process() {
          throw new Error('hook broke');
        },
      },
    });
    try {
      await withWorker(
        broken,
        {},
        (w) => w.register('node.add', ([x, y]) => x + y),
        async (worker, queue, logger) => {
          const handle = await client.submit('node.add', [2, 2], { queue });
          assert.equal(await handle.get({ timeout: 20 }), 4);
          assert.match(logger.warnings.join('\n'), /the process hook failed: hook broke/);
        },
      );
    } finally {
      broken.close();
    }
  });
});
