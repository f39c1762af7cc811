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
from tasktide._exceptions import (
    ConfigurationError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    TaskCancelled,
    TaskDead,
    TaskExpired,
    TaskFailed,
    TasktideError,
    TaskTimeout,
    Unavailable,
)
from tasktide._explain import DeadLetter, Explanation
from tasktide._handle import AsyncTaskHandle, TaskHandle
from tasktide._schedules import Schedule
from tasktide._settings import ClientSettings
from tasktide._states import TaskState
from tasktide._workflow import Signature, Workflow, WorkflowHandle, chain, chord, group
from tasktide.worker._context import CancelRequested, SoftTimeLimitExceeded, TaskContext, current_task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncClient",
    "AsyncTaskHandle",
    "CancelRequested",
    "Client",
    "ClientSettings",
    "ConfigurationError",
    "DeadLetter",
    "Explanation",
    "InvalidArgument",
    "NotFound",
    "ResourceExhausted",
    "Schedule",
    "ServiceError",
    "SoftTimeLimitExceeded",
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
    "Unavailable",
    "Signature",
    "Workflow",
    "WorkflowHandle",
    "chain",
    "chord",
    "current_task",
    "group",
]
