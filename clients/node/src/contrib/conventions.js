// Names from the OpenTelemetry messaging semantic conventions, as tasktide uses them in every language
// (the Python client's tasktide/contrib/opentelemetry/conventions.py is the reference).
//
// Span names are "{operation} {queue}". Every tasktide span carries messaging.system = "tasktide",
// messaging.operation.name and .type, messaging.destination.name (the queue) and, for one task,
// messaging.message.id (the task id); tasktide's own attributes are under "tasktide.".
//
//   send     PRODUCER  Submit of one task (CLIENT for a batch, with a "create" PRODUCER per task)
//   process  CONSUMER  one attempt of a task on a worker

export const SYSTEM = 'tasktide';

export const MESSAGING_SYSTEM = 'messaging.system';
export const OPERATION_NAME = 'messaging.operation.name';
export const OPERATION_TYPE = 'messaging.operation.type';
export const DESTINATION = 'messaging.destination.name';
export const MESSAGE_ID = 'messaging.message.id';
export const BATCH_COUNT = 'messaging.batch.message_count';
export const CLIENT_ID = 'messaging.client.id';

export const TASK_NAME = 'tasktide.task.name';
export const TASK_ATTEMPT = 'tasktide.task.attempt';
export const TASK_DELIVERY = 'tasktide.task.delivery';
export const OUTCOME = 'tasktide.outcome';

export const DEFAULT_QUEUE = 'default';

export const OPERATION_TYPES = Object.freeze({
  send: 'send',
  create: 'create',
  schedule: 'send',
  dispatch: 'send',
  process: 'process',
  settle: 'settle',
  dead_letter: 'settle',
});

export const OUTCOME_NAMES = Object.freeze({
  OUTCOME_KIND_SUCCESS: 'success',
  OUTCOME_KIND_FAILURE: 'failure',
  OUTCOME_KIND_RETRY: 'retry',
  OUTCOME_KIND_CANCELLED: 'cancelled',
  OUTCOME_KIND_TIMEOUT: 'timeout',
});

export function queueOf(name) {
  return name || DEFAULT_QUEUE;
}

export function spanName(operation, queue) {
  return `${operation} ${queueOf(queue)}`;
}

export function attributes(operation, queue, taskId = '', taskName = '') {
  const attrs = {
    [MESSAGING_SYSTEM]: SYSTEM,
    [OPERATION_NAME]: operation,
    [OPERATION_TYPE]: OPERATION_TYPES[operation],
    [DESTINATION]: queueOf(queue),
  };
  if (taskId) attrs[MESSAGE_ID] = taskId;
  if (taskName) attrs[TASK_NAME] = taskName;
  return attrs;
}
