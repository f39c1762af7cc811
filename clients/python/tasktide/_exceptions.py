"""The error tree of the tasktide client.

    TasktideError
    ├── ConfigurationError       bad settings or arguments given to the client
    ├── TaskFailed               the task ran and raised; carries the remote type, message, traceback
    │   └── TaskCancelled / TaskExpired / TaskDead
    ├── TaskTimeout              waiting for a result took longer than asked
    └── ServiceError             the platform answered with an error status
        ├── Unavailable          the platform cannot be reached
        ├── InvalidArgument      the request was refused as malformed
        ├── NotFound             no such task
        ├── ResourceExhausted    a limit was reached
        ├── Unauthenticated      no token, or one the platform refuses (expired, revoked, bad signature)
        └── PermissionDenied     the token's role may not make this call

Callers never need to import grpc to handle errors: gRPC statuses are mapped at the boundary.
"""

from __future__ import annotations


class TasktideError(Exception):
    """Root of every error raised by tasktide."""


class ConfigurationError(TasktideError):
    pass


class TaskFailed(TasktideError):
    """The task ran and failed. Nothing of the remote error is imported or executed."""

    def __init__(
        self, task_id: str, remote_type: str, message: str, traceback: str = "", state: str = "FAILED"
    ) -> None:
        super().__init__(f"task {task_id} {state.lower()}: {remote_type}: {message}")
        self.task_id = task_id
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = traceback
        self.state = state


class TaskCancelled(TaskFailed):
    pass


class TaskExpired(TaskFailed):
    pass


class TaskDead(TaskFailed):
    pass


class TaskTimeout(TasktideError):
    def __init__(self, task_id: str, timeout: float | None) -> None:
        super().__init__(f"task {task_id} did not finish within {timeout} s")
        self.task_id = task_id
        self.timeout = timeout


class ServiceError(TasktideError):
    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class Unavailable(ServiceError):
    pass


class InvalidArgument(ServiceError):
    pass


class NotFound(ServiceError):
    pass


class ResourceExhausted(ServiceError):
    pass


class Unauthenticated(ServiceError):
    pass


class PermissionDenied(ServiceError):
    pass
