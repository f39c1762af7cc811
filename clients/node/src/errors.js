// The error tree of the tasktide Node.js client.
//
//   TasktideError
//   ├── TaskFailed            the task ran and failed; carries remoteType, remoteMessage, remoteTraceback
//   │   └── TaskCancelled / TaskExpired / TaskDead
//   ├── TaskTimeout           waiting for a result took longer than asked
//   └── ServiceError          the platform answered with an error status (`code`, e.g. 'NOT_FOUND')
//       ├── Unavailable       the platform cannot be reached
//       ├── InvalidArgument   the request was refused as malformed
//       ├── NotFound          no such task
//       ├── ResourceExhausted a limit was reached
//       ├── Unauthenticated   the platform refused the credentials (or their absence)
//       └── PermissionDenied  the credentials do not allow the call
//
// gRPC statuses are mapped here, at the boundary, so callers never handle grpc errors themselves.

import grpc from '@grpc/grpc-js';

export class TasktideError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The task ran and failed. Nothing of the remote error is evaluated; it is data. */
export class TaskFailed extends TasktideError {
  constructor(taskId, remoteType, remoteMessage, remoteTraceback = '', state = 'FAILED') {
    super(`task ${taskId} ${state.toLowerCase()}: ${remoteType}: ${remoteMessage}`);
    this.taskId = taskId;
    this.remoteType = remoteType;
    this.remoteMessage = remoteMessage;
    this.remoteTraceback = remoteTraceback;
    this.state = state;
  }
}

export class TaskCancelled extends TaskFailed {}
export class TaskExpired extends TaskFailed {}
export class TaskDead extends TaskFailed {}

export class TaskTimeout extends TasktideError {
  constructor(taskId, timeout) {
    super(`task ${taskId} did not finish within ${timeout} s`);
    this.taskId = taskId;
    this.timeout = timeout;
  }
}

export class ServiceError extends TasktideError {
  constructor(message, code = 'UNKNOWN') {
    super(message);
    this.code = code;
  }
}

export class Unavailable extends ServiceError {}
export class InvalidArgument extends ServiceError {}
export class NotFound extends ServiceError {}
export class ResourceExhausted extends ServiceError {}
export class Unauthenticated extends ServiceError {}
export class PermissionDenied extends ServiceError {}

/** True for the errors that retrying with the same credentials cannot fix. */
export function isAuthError(err) {
  return err instanceof Unauthenticated || err instanceof PermissionDenied;
}

const BY_CODE = {
  [grpc.status.UNAVAILABLE]: Unavailable,
  [grpc.status.INVALID_ARGUMENT]: InvalidArgument,
  [grpc.status.NOT_FOUND]: NotFound,
  [grpc.status.RESOURCE_EXHAUSTED]: ResourceExhausted,
  [grpc.status.UNAUTHENTICATED]: Unauthenticated,
  [grpc.status.PERMISSION_DENIED]: PermissionDenied,
};

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

/** A ServiceError for a failed gRPC call (other errors are returned unchanged). */
export function translate(err, address = '') {
  if (!err || typeof err.code !== 'number' || !(err.code in CODE_NAMES)) return err;
  const Cls = BY_CODE[err.code] ?? ServiceError;
  let details = err.details || CODE_NAMES[err.code];
  if (Cls === Unavailable) {
    // A status a tasktide service answered itself carries this trailing metadata: the service is
    // up, its Redis or a peer is out of reach (services/common/rpc.py).
    const answered = err.metadata && err.metadata.get('tasktide-answered').length > 0;
    details = answered
      ? `tasktide at ${address || '?'} is unavailable: ${details}`
      : `cannot reach tasktide at ${address || '?'}: ${details}`;
  }
  return new Cls(details, CODE_NAMES[err.code]);
}

const FAILURES = { FAILED: TaskFailed, CANCELLED: TaskCancelled, EXPIRED: TaskExpired, DEAD: TaskDead };

/** The value of a final result, or the TaskFailed (subclass) it stands for. */
export function unwrap(result) {
  if (result.state === 'SUCCEEDED') return result.result;
  const Cls = FAILURES[result.state];
  if (!Cls) throw new TasktideError(`task ${result.taskId} is not final (${result.state})`);
  const e = result.error ?? {};
  throw new Cls(result.taskId, e.type || result.state, e.message ?? '', e.traceback ?? '', result.state);
}
