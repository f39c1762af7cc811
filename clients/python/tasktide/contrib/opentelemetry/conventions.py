"""Names from the OpenTelemetry messaging semantic conventions, as tasktide uses them.

Span names are "{operation} {queue}". Every tasktide span carries messaging.system = "tasktide",
messaging.operation.name and .type, messaging.destination.name (the queue) and, for one task,
messaging.message.id (the task id). tasktide's own attributes are under "tasktide.".

    operation   kind       where          what
    send        PRODUCER   client         Submit of one task (CLIENT for a batch, with a "create" per task)
    create      PRODUCER   client         one task of a SubmitBatch
    schedule    INTERNAL   scheduler      a task accepted, due, or scheduled again for a retry
    dispatch    PRODUCER   registry       a task leased to a worker (the worker's span is its child)
    process     CONSUMER   worker         one attempt of a task
    settle      INTERNAL   registry       an attempt's outcome recorded (and a retry asked for)
    dead_letter INTERNAL   registry       a task moved to the dead-letter set

A task that follows others (a workflow's callback) carries their traceparents in the
"tasktide-links" header (LINKS_HEADER); its "schedule" span links to each of them.
"""

from __future__ import annotations

SYSTEM = "tasktide"

MESSAGING_SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"

TASK_NAME = "tasktide.task.name"
TASK_ATTEMPT = "tasktide.task.attempt"
TASK_DELIVERY = "tasktide.task.delivery"
TASK_PRIORITY = "tasktide.task.priority"
OUTCOME = "tasktide.outcome"
SCHEDULE_REASON = "tasktide.schedule.reason"

DEFAULT_QUEUE = "default"

# A task that follows others (a workflow's callback) names their trace contexts here, comma-separated
# W3C traceparents; its "schedule" span links to each of them.
LINKS_HEADER = "tasktide-links"

# messaging.operation.type for each tasktide operation
OPERATION_TYPES = {
    "send": "send",
    "create": "create",
    "schedule": "send",
    "dispatch": "send",
    "process": "process",
    "settle": "settle",
    "dead_letter": "settle",
}

OUTCOME_NAMES = {1: "success", 2: "failure", 3: "retry", 4: "cancelled", 5: "timeout"}


def link_header(traceparents: list[str]) -> str:
    """The LINKS_HEADER value for the trace contexts of the tasks a task follows."""
    return ",".join(tp for tp in traceparents if tp)


def queue_of(name: str) -> str:
    return name or DEFAULT_QUEUE


def span_name(operation: str, queue: str) -> str:
    return f"{operation} {queue_of(queue)}"


def attributes(operation: str, queue: str, task_id: str = "", task_name: str = "") -> dict[str, str | int]:
    attrs: dict[str, str | int] = {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_NAME: operation,
        OPERATION_TYPE: OPERATION_TYPES[operation],
        DESTINATION: queue_of(queue),
    }
    if task_id:
        attrs[MESSAGE_ID] = task_id
    if task_name:
        attrs[TASK_NAME] = task_name
    return attrs
