// Type declarations of @tasktide/client (the JavaScript in src/ is the implementation).

import type { CallCredentials, ChannelCredentials, ChannelOptions, Interceptor } from '@grpc/grpc-js';

/** A JSON-compatible value: what task arguments and results are made of. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type TaskState =
  | 'UNKNOWN'
  | 'SCHEDULED'
  | 'QUEUED'
  | 'RUNNING'
  | 'RETRYING'
  | 'SUCCEEDED'
  | 'FAILED'
  | 'CANCELLED'
  | 'EXPIRED'
  | 'DEAD';

export const TASK_STATES: readonly TaskState[];
export const FINAL_STATES: ReadonlySet<TaskState>;
export const DEFAULT_ADDRESS: string;
export const DEFAULT_CHANNEL_OPTIONS: Readonly<ChannelOptions>;

/** How the client reaches the platform. */
export interface ConnectionOptions {
  schedulerAddress?: string;
  registryAddress?: string;
  resultsAddress?: string;
  /**
   * Channel credentials (default: TLS with the PEM files named by TASKTIDE_TLS_CA, and
   * TASKTIDE_TLS_CERT with TASKTIDE_TLS_KEY for mutual TLS, when set; else insecure).
   */
  credentials?: ChannelCredentials;
  /** TLS with the system's root certificates. */
  tls?: boolean;
  /** Composed with TLS channel credentials. */
  callCredentials?: CallCredentials;
  /** Sent as `authorization: Bearer TOKEN` (default TASKTIDE_TOKEN; '' sends none). */
  token?: string;
  /** Over DEFAULT_CHANNEL_OPTIONS (keepalive, message sizes, reconnect backoff). */
  channelOptions?: ChannelOptions;
  interceptors?: Interceptor[];
  hooks?: Hooks;
  /**
   * How submit() sends a task: 'stream' (default: one message on a SubmitStream shared by every
   * caller of the client, confirmed per task) or 'unary' (a Submit call per task). Default
   * TASKTIDE_SUBMIT_TRANSPORT.
   */
  submitTransport?: 'stream' | 'unary';
}

/** Options of submit(): the same meaning and units as the Python client's (see README.md). */
export interface SubmitOptions<K extends object = Record<string, unknown>> {
  kwargs?: K;
  queue?: string;
  /** -100..100, higher first. */
  priority?: number;
  /** Seconds from the server's receipt. */
  countdown?: number;
  /** A Date, or Unix seconds. */
  eta?: Date | number;
  /** A Date, or seconds from now. */
  expires?: Date | number;
  idempotencyKey?: string;
  maxRetries?: number;
  /** Seconds before the first retry; doubles each attempt. */
  retryBackoff?: number;
  /** Cap of the retry pause, seconds. */
  retryBackoffMax?: number;
  retryJitter?: boolean;
  /** Seconds; aborts ctx.signal. */
  softTimeLimit?: number;
  /** Seconds; the attempt is reported TIMEOUT. */
  timeLimit?: number;
  /** "100/s", "10/m", "500/h", per task name. */
  rateLimit?: string;
  headers?: Record<string, string>;
  /** Ids of the tasks this one is linked to. */
  link?: string[];
  signal?: AbortSignal;
}

export interface BatchEntry<A extends unknown[] = unknown[], K extends object = Record<string, unknown>>
  extends Omit<SubmitOptions<K>, 'signal'> {
  name: string;
  args?: A;
}

export interface WaitOptions {
  /** Seconds; none waits for ever, 0 looks once. */
  timeout?: number | null;
  signal?: AbortSignal;
}

export interface WatchOptions {
  untilFinal?: boolean;
  finalOnly?: boolean;
  cursors?: Record<string, string>;
  signal?: AbortSignal;
}

export interface RemoteError {
  type: string;
  message: string;
  traceback: string;
}

export interface TaskResult<R = unknown> {
  taskId: string;
  found: boolean;
  state: TaskState;
  name: string;
  attempt: number;
  result: R | null;
  error: RemoteError | null;
  updatedMs: number;
  createdMs: number;
  workerId: string;
}

export interface TaskEvent<R = unknown> {
  taskId: string;
  cursor: string;
  state: TaskState;
  atMs: number;
  attempt: number;
  name: string;
  queue: string;
  workerId: string;
  result: R | null;
  error: RemoteError | null;
  progress: number;
  message: string;
  progressOnly: boolean;
}

export interface TaskInfo {
  id: string;
  name: string;
  queue: string;
  state: TaskState;
  attempt: number;
  createdMs: number;
}

export interface Explanation {
  taskId: string;
  state: TaskState;
  reason: string;
  message: string;
  etaMs: number;
  ahead: number;
  /** A Cancel was asked and has not ended the task yet: its worker is to stop it. */
  cancelAsked: boolean;
}

export interface QueueStats {
  queue: string;
  ready: number;
  leased: number;
  dead: number;
  paused: boolean;
  consumers: number;
}

export interface WorkerInfo {
  workerId: string;
  sessionId: string;
  hostname: string;
  pid: number;
  language: string;
  queues: string[];
  concurrency: number;
  /** ResizeWorker can grow or shrink it. */
  resizable: boolean;
}

/** A submitted task whose result is of type R. */
export class TaskHandle<R = unknown> {
  readonly client: Client;
  readonly id: string;
  readonly name: string;
  /** The idempotency key named a task that already existed. */
  readonly existing: boolean;
  get(options?: WaitOptions): Promise<R>;
  wait(options?: WaitOptions): Promise<TaskResult<R>>;
  status(): Promise<TaskState>;
  cancel(): Promise<TaskState>;
  explain(): Promise<Explanation>;
  watch(options?: WatchOptions): AsyncGenerator<TaskEvent<R>, void, undefined>;
}

export interface ListTasksOptions {
  states?: TaskState | TaskState[];
  name?: string;
  queue?: string;
  workerId?: string;
  errorType?: string;
  sinceMs?: number;
  untilMs?: number;
  limit?: number;
  cursor?: string;
  counts?: boolean;
  signal?: AbortSignal;
}

/** One page of listTasks: the latest changed first; nextCursor is '' at the end. */
export interface TaskPage {
  tasks: TaskResult[];
  nextCursor: string;
  countsByState: Partial<Record<TaskState, number>>;
  countsByName: Record<string, number>;
}

export class Client {
  /**
   * `address` (and each service's address): host:port, unix:/path, a resolver target such as
   * dns:///svc.ns:50051, or a comma list of replicas (10.0.0.5:50051,10.0.0.6:50051 or
   * unix:/run/a.sock,unix:/run/b.sock), balanced round robin. Throws a TypeError for a list that
   * cannot be used.
   */
  constructor(address?: string, options?: ConnectionOptions);
  readonly addresses: { scheduler: string; registry: string; results: string };
  readonly hooks: Hooks | null;
  /** Submit by name: R is the task's result type, A its arguments, K its keyword arguments. */
  submit<R = unknown, A extends unknown[] = unknown[], K extends object = Record<string, unknown>>(
    name: string,
    args?: A,
    options?: SubmitOptions<K>,
  ): Promise<TaskHandle<R>>;
  submitBatch<R = unknown>(tasks: BatchEntry[], options?: { signal?: AbortSignal }): Promise<TaskHandle<R>[]>;
  fetch(taskIds: string[], options?: { signal?: AbortSignal }): Promise<TaskResult[]>;
  status(taskId: string): Promise<TaskState>;
  getTask(taskId: string): Promise<TaskInfo>;
  cancel(taskId: string): Promise<TaskState>;
  explain(taskId: string): Promise<Explanation>;
  queueStats(): Promise<QueueStats[]>;
  workers(): Promise<WorkerInfo[]>;
  drainWorker(workerId: string): Promise<number>;
  resizeWorker(workerId: string, concurrency: number): Promise<number>;
  listTasks(options?: ListTasksOptions): Promise<TaskPage>;
  wait<R = unknown>(taskId: string, options?: WaitOptions): Promise<TaskResult<R>>;
  result<R = unknown>(taskId: string, options?: WaitOptions): Promise<R>;
  watch<R = unknown>(taskIds: string[], options?: WatchOptions): AsyncGenerator<TaskEvent<R>, void, undefined>;
  close(): void;
}

/** What a task function receives besides its arguments. */
export interface TaskContext {
  readonly taskId: string;
  readonly name: string;
  readonly attempt: number;
  readonly queue: string;
  readonly delivery: number;
  /** Aborted on cancel, soft or hard time limit, or the worker's shutdown limit. */
  readonly signal: AbortSignal;
  readonly headers: Record<string, string>;
  readonly cancelled: boolean;
  progress(value: number, message?: string): void;
  retry(options?: { countdown?: number; cause?: unknown }): never;
  throwIfCancelled(): void;
}

export type TaskFunction<A extends unknown[] = any[], K extends object = Record<string, any>, R = unknown> = (
  args: A,
  kwargs: K,
  ctx: TaskContext,
) => R | Promise<R>;

export interface RegisterOptions {
  maxRetries?: number;
  retryBackoff?: number;
  retryBackoffMax?: number;
  retryJitter?: boolean;
  autoretry?: boolean | ((err: unknown) => boolean);
}

export interface Logger {
  warn?(message: string): void;
  info?(message: string): void;
  error?(message: string): void;
}

export interface WorkerOptions {
  queues?: string[];
  concurrency?: number;
  /** Assignments held beyond concurrency; 0 or unset: it follows the length of the tasks (3 to 32 per slot). */
  prefetch?: number;
  workerId?: string;
  maxBatch?: number;
  handleSignals?: boolean;
  logger?: Logger;
  /** Seconds stop() waits for running tasks before giving them back. */
  shutdownTimeout?: number | null;
}

export class Worker {
  constructor(client: Client, options?: WorkerOptions);
  readonly workerId: string;
  readonly queues: string[];
  readonly concurrency: number;
  readonly completed: number;
  readonly leaseSeconds: number;
  readonly taskNames: string[];
  readonly credit: number;
  /** Messages waiting to be written on the session (bounded: progress is kept latest per attempt). */
  readonly outboxSize: number;
  /** Register a task: A its arguments, K its keyword arguments, R its result. */
  register<A extends unknown[] = any[], K extends object = Record<string, any>, R = unknown>(
    name: string,
    fn: TaskFunction<A, K, R>,
    options?: RegisterOptions,
  ): this;
  /** Resolves once drained; rejects with Unauthenticated or PermissionDenied if the registry refuses. */
  run(): Promise<void>;
  stop(options?: { timeout?: number | null }): Promise<void>;
}

/** Around submits and attempts (TracingHooks of '@tasktide/client/opentelemetry' is one). */
export interface Hooks {
  send?<T>(specs: TaskSpecMessage[], batch: boolean, call: () => Promise<T>): Promise<T>;
  process?<T>(assignment: AssignmentMessage, workerId: string, run: () => Promise<T>): Promise<T>;
}

/** The TaskSpec message as hooks see it (headers may be written). */
export interface TaskSpecMessage {
  name: string;
  queue: string;
  headers: Record<string, string>;
  [field: string]: unknown;
}

export interface AssignmentMessage {
  task: { id: string; attempt: number; spec: TaskSpecMessage };
  leaseToken: string;
  delivery: number;
}

export function buildSpec(name: string, args?: unknown[], options?: Omit<SubmitOptions, 'signal'>): TaskSpecMessage;
export function bearerInterceptor(token: string): Interceptor;

export class RetryRequested extends Error {
  countdown?: number;
  retryCause?: unknown;
}
export class SoftTimeLimitExceeded extends Error {}
export class TimeLimitExceeded extends Error {}
export class ShutdownLimitExceeded extends Error {}
export class CancelRequested extends Error {}

export class TasktideError extends Error {}
export class TaskFailed extends TasktideError {
  readonly taskId: string;
  readonly remoteType: string;
  readonly remoteMessage: string;
  readonly remoteTraceback: string;
  readonly state: TaskState;
}
export class TaskCancelled extends TaskFailed {}
export class TaskExpired extends TaskFailed {}
export class TaskDead extends TaskFailed {}
export class TaskTimeout extends TasktideError {
  readonly taskId: string;
  readonly timeout: number | null | undefined;
}
export class ServiceError extends TasktideError {
  /** The gRPC status name, e.g. 'NOT_FOUND'. */
  readonly code: string;
}
export class Unavailable extends ServiceError {}
export class InvalidArgument extends ServiceError {}
export class NotFound extends ServiceError {}
export class ResourceExhausted extends ServiceError {}
export class Unauthenticated extends ServiceError {}
export class PermissionDenied extends ServiceError {}
