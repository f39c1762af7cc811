"""tasktide: a distributed task platform over gRPC. This package is the Python client and worker runtime.

app = tasktide.App("shop")

@app.task(max_retries=3)
def add(x, y):
    return x + y

add.delay(1, 2).get(timeout=10)
"""

from tasktide._app import App, Task
from tasktide._async_client import AsyncClient
from tasktide._client import Client
from tasktide._errors import error_from_status
from tasktide._exceptions import (
    ConfigurationError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    TaskCancelled,
    TaskDead,
    TaskExpired,
    TaskFailed,
    TasktideError,
    TaskTimeout,
    Unauthenticated,
    Unavailable,
)
from tasktide._explain import DeadLetter, Explanation
from tasktide._handle import AsyncTaskHandle, TaskHandle
from tasktide._hooks import Hooks
from tasktide._schedules import Schedule
from tasktide._settings import ClientSettings
from tasktide._spec import SubmitOptions
from tasktide._states import TaskState
from tasktide._transport import AsyncSubmitter, AsyncSubmitterInterceptor, Submitter, SubmitterInterceptor
from tasktide._transports import TransportPlugin
from tasktide._workflow import Signature, Workflow, WorkflowHandle, chain, chord, group
from tasktide.worker._context import CancelRequested, SoftTimeLimitExceeded, TaskContext, current_task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncClient",
    "AsyncSubmitter",
    "AsyncSubmitterInterceptor",
    "AsyncTaskHandle",
    "CancelRequested",
    "Client",
    "ClientSettings",
    "ConfigurationError",
    "DeadLetter",
    "Explanation",
    "Hooks",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Schedule",
    "ServiceError",
    "SoftTimeLimitExceeded",
    "SubmitOptions",
    "Submitter",
    "SubmitterInterceptor",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskDead",
    "TaskExpired",
    "TaskFailed",
    "TaskHandle",
    "TaskState",
    "TaskTimeout",
    "TasktideError",
    "TransportPlugin",
    "Unauthenticated",
    "Unavailable",
    "Signature",
    "Workflow",
    "WorkflowHandle",
    "chain",
    "chord",
    "current_task",
    "error_from_status",
    "group",
]

# Public names show as tasktide.X (repr, docs, tracebacks), wherever they are defined.
for _name in __all__:
    globals()[_name].__module__ = "tasktide"
del _name
