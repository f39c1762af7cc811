// tasktide for Node.js: a client that submits tasks by name and reads their results, and a worker
// runtime that runs tasks submitted from any language.

export { Client, TaskHandle, buildSpec, DEFAULT_ADDRESS } from './client.js';
export { Worker } from './worker.js';
export { bearerInterceptor, DEFAULT_CHANNEL_OPTIONS } from './connection.js';
export {
  RetryRequested,
  SoftTimeLimitExceeded,
  TimeLimitExceeded,
  ShutdownLimitExceeded,
  CancelRequested,
} from './attempt.js';
export {
  TasktideError,
  TaskFailed,
  TaskCancelled,
  TaskExpired,
  TaskDead,
  TaskTimeout,
  ServiceError,
  Unavailable,
  InvalidArgument,
  NotFound,
  ResourceExhausted,
  Unauthenticated,
  PermissionDenied,
} from './errors.js';
export { TASK_STATES, FINAL_STATES } from './protocol.js';
