// TracingHooks: tasktide's client and worker hooks that trace with OpenTelemetry, as the Python
// client's TracingHooks do. This module is the only one that imports @opentelemetry/api (an optional
// peer dependency): the core never loads it.
//
//   import { TracingHooks } from '@tasktide/client/opentelemetry';
//   const client = new Client(address, { hooks: new TracingHooks() });
//
// A submit starts a PRODUCER span "send {queue}" and writes its W3C trace context into the task's
// headers; a worker extracts it and runs each attempt in a CONSUMER span "process {queue}", its
// child, so one trace crosses languages. Tasks submitted from inside a task continue the trace when
// a context manager is registered (for example AsyncLocalStorageContextManager).

import { SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';

import * as c from './conventions.js';

const FAILED = new Set(['OUTCOME_KIND_FAILURE', 'OUTCOME_KIND_RETRY', 'OUTCOME_KIND_TIMEOUT']);

/** Status, outcome and error of an attempt on its span. */
export function recordOutcome(span, outcome) {
  span.setAttribute(c.OUTCOME, c.OUTCOME_NAMES[outcome.kind] ?? 'unknown');
  if (FAILED.has(outcome.kind)) {
    const err = outcome.error ?? {};
    span.addEvent('exception', {
      'exception.type': err.type ?? '',
      'exception.message': err.message ?? '',
      'exception.stacktrace': err.traceback ?? '',
    });
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${err.type}: ${err.message}` });
  }
}

export class TracingHooks {
  /**
   * Options: tracerProvider (default: the one registered with the OpenTelemetry API), propagator
   * (how trace context is written to task headers; default: the registered one, W3C in the SDKs).
   */
  constructor({ tracerProvider, propagator } = {}) {
    this.tracer = (tracerProvider ?? trace.getTracerProvider()).getTracer('tasktide');
    this.propagator = propagator ?? null;
  }

  inject(ctx, carrier) {
    if (this.propagator) this.propagator.inject(ctx, carrier, { set: (h, k, v) => (h[k] = v) });
    else propagation.inject(ctx, carrier);
  }

  extract(carrier) {
    const getter = { get: (h, k) => h[k], keys: (h) => Object.keys(h) };
    const active = context.active();
    return this.propagator ? this.propagator.extract(active, carrier, getter) : propagation.extract(active, carrier);
  }

  /** Around Submit/SubmitBatch: `call()` sends `specs`, whose headers get the trace context first. */
  async send(specs, batch, call) {
    const queues = new Set(specs.map((s) => c.queueOf(s.queue)));
    const queue = queues.size === 1 ? [...queues][0] : '';
    const attrs = c.attributes('send', queue, '', batch ? '' : specs[0].name);
    let name = c.spanName('send', queue);
    if (batch) {
      attrs[c.BATCH_COUNT] = specs.length;
      if (!queue) {
        delete attrs[c.DESTINATION];
        name = 'send';
      }
    }
    const kind = batch ? SpanKind.CLIENT : SpanKind.PRODUCER;
    const span = this.tracer.startSpan(name, { kind, attributes: attrs }, context.active());
    const inSpan = trace.setSpan(context.active(), span);
    const creates = [];
    if (batch && span.isRecording()) {
      for (const spec of specs) {
        const create = this.tracer.startSpan(
          c.spanName('create', spec.queue),
          { kind: SpanKind.PRODUCER, attributes: c.attributes('create', spec.queue, '', spec.name) },
          inSpan,
        );
        this.inject(trace.setSpan(context.active(), create), spec.headers);
        creates.push(create);
      }
    } else {
      for (const spec of specs) this.inject(inSpan, spec.headers);
    }
    try {
      const response = await context.with(inSpan, call);
      if (span.isRecording()) {
        if (batch) response.results.forEach((r, i) => creates[i]?.setAttribute(c.MESSAGE_ID, r.taskId));
        else span.setAttribute(c.MESSAGE_ID, response.taskId);
      }
      return response;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${err?.name}: ${err?.message}` });
      throw err;
    } finally {
      for (const create of creates) create.end();
      span.end();
    }
  }

  /** Around one attempt on a worker: `run()` resolves to its Outcome message (null if given back). */
  async process(assignment, workerId, run) {
    const task = assignment.task;
    const spec = task.spec;
    const parent = this.extract(spec.headers ?? {});
    const span = this.tracer.startSpan(
      c.spanName('process', spec.queue),
      { kind: SpanKind.CONSUMER, attributes: c.attributes('process', spec.queue, task.id, spec.name) },
      parent,
    );
    if (span.isRecording()) {
      span.setAttribute(c.TASK_ATTEMPT, task.attempt);
      span.setAttribute(c.TASK_DELIVERY, assignment.delivery);
      span.setAttribute(c.CLIENT_ID, workerId);
    }
    try {
      const outcome = await context.with(trace.setSpan(parent, span), run);
      if (outcome && span.isRecording()) recordOutcome(span, outcome);
      return outcome;
    } finally {
      span.end();
    }
  }
}
