// Type declarations of @tasktide/client/opentelemetry (needs @opentelemetry/api installed).

import type { Span, TextMapPropagator, TracerProvider } from '@opentelemetry/api';

import type { AssignmentMessage, Hooks, TaskSpecMessage } from './index.js';

export interface TracingHooksOptions {
  /** Default: the provider registered with the OpenTelemetry API. */
  tracerProvider?: TracerProvider;
  /** Default: the propagator registered with the OpenTelemetry API. */
  propagator?: TextMapPropagator;
}

export class TracingHooks implements Hooks {
  constructor(options?: TracingHooksOptions);
  send<T>(specs: TaskSpecMessage[], batch: boolean, call: () => Promise<T>): Promise<T>;
  process<T>(assignment: AssignmentMessage, workerId: string, run: () => Promise<T>): Promise<T>;
}

export function recordOutcome(span: Span, outcome: { kind: string; error?: { type: string; message: string } }): void;
