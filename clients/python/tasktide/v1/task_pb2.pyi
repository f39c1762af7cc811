from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_SCHEDULED: _ClassVar[TaskState]
    TASK_STATE_QUEUED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_RETRYING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]
    TASK_STATE_EXPIRED: _ClassVar[TaskState]
    TASK_STATE_DEAD: _ClassVar[TaskState]

class OutcomeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_KIND_UNSPECIFIED: _ClassVar[OutcomeKind]
    OUTCOME_KIND_SUCCESS: _ClassVar[OutcomeKind]
    OUTCOME_KIND_FAILURE: _ClassVar[OutcomeKind]
    OUTCOME_KIND_RETRY: _ClassVar[OutcomeKind]
    OUTCOME_KIND_CANCELLED: _ClassVar[OutcomeKind]
    OUTCOME_KIND_TIMEOUT: _ClassVar[OutcomeKind]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_SCHEDULED: TaskState
TASK_STATE_QUEUED: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_RETRYING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_STATE_EXPIRED: TaskState
TASK_STATE_DEAD: TaskState
OUTCOME_KIND_UNSPECIFIED: OutcomeKind
OUTCOME_KIND_SUCCESS: OutcomeKind
OUTCOME_KIND_FAILURE: OutcomeKind
OUTCOME_KIND_RETRY: OutcomeKind
OUTCOME_KIND_CANCELLED: OutcomeKind
OUTCOME_KIND_TIMEOUT: OutcomeKind

class Payload(_message.Message):
    __slots__ = ("json", "message")
    JSON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    json: bytes
    message: _any_pb2.Any
    def __init__(self, json: _Optional[bytes] = ..., message: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_retries", "backoff_base", "backoff_max", "jitter")
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_BASE_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MAX_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    max_retries: int
    backoff_base: float
    backoff_max: float
    jitter: bool
    def __init__(self, max_retries: _Optional[int] = ..., backoff_base: _Optional[float] = ..., backoff_max: _Optional[float] = ..., jitter: _Optional[bool] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("name", "queue", "args", "kwargs", "priority", "eta_ms", "countdown", "expires_ms", "retry", "soft_time_limit", "time_limit", "idempotency_key", "headers", "link", "rate_limit")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ETA_MS_FIELD_NUMBER: _ClassVar[int]
    COUNTDOWN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    SOFT_TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    queue: str
    args: Payload
    kwargs: Payload
    priority: int
    eta_ms: int
    countdown: float
    expires_ms: int
    retry: RetryPolicy
    soft_time_limit: float
    time_limit: float
    idempotency_key: str
    headers: _containers.ScalarMap[str, str]
    link: _containers.RepeatedScalarFieldContainer[str]
    rate_limit: str
    def __init__(self, name: _Optional[str] = ..., queue: _Optional[str] = ..., args: _Optional[_Union[Payload, _Mapping]] = ..., kwargs: _Optional[_Union[Payload, _Mapping]] = ..., priority: _Optional[int] = ..., eta_ms: _Optional[int] = ..., countdown: _Optional[float] = ..., expires_ms: _Optional[int] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., soft_time_limit: _Optional[float] = ..., time_limit: _Optional[float] = ..., idempotency_key: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., link: _Optional[_Iterable[str]] = ..., rate_limit: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "spec", "state", "attempt", "created_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: TaskSpec
    state: TaskState
    attempt: int
    created_ms: int
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., attempt: _Optional[int] = ..., created_ms: _Optional[int] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("type", "message", "traceback")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    traceback: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("task_id", "queue", "lease_token", "kind", "result", "error", "retry_countdown", "attempt", "started_ms", "finished_ms", "worker_id", "retries_exhausted")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNTDOWN_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_MS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RETRIES_EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    queue: str
    lease_token: int
    kind: OutcomeKind
    result: Payload
    error: TaskError
    retry_countdown: float
    attempt: int
    started_ms: int
    finished_ms: int
    worker_id: str
    retries_exhausted: bool
    def __init__(self, task_id: _Optional[str] = ..., queue: _Optional[str] = ..., lease_token: _Optional[int] = ..., kind: _Optional[_Union[OutcomeKind, str]] = ..., result: _Optional[_Union[Payload, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., retry_countdown: _Optional[float] = ..., attempt: _Optional[int] = ..., started_ms: _Optional[int] = ..., finished_ms: _Optional[int] = ..., worker_id: _Optional[str] = ..., retries_exhausted: _Optional[bool] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "cursor", "state", "at_ms", "attempt", "name", "queue", "worker_id", "result", "error", "progress", "message", "progress_only", "reopen", "spec", "run_ms")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_ONLY_FIELD_NUMBER: _ClassVar[int]
    REOPEN_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    RUN_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    cursor: str
    state: TaskState
    at_ms: int
    attempt: int
    name: str
    queue: str
    worker_id: str
    result: Payload
    error: TaskError
    progress: float
    message: str
    progress_only: bool
    reopen: bool
    spec: TaskSpec
    run_ms: int
    def __init__(self, task_id: _Optional[str] = ..., cursor: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., at_ms: _Optional[int] = ..., attempt: _Optional[int] = ..., name: _Optional[str] = ..., queue: _Optional[str] = ..., worker_id: _Optional[str] = ..., result: _Optional[_Union[Payload, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., progress_only: _Optional[bool] = ..., reopen: _Optional[bool] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., run_ms: _Optional[int] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task_id", "state", "name", "attempt", "result", "error", "updated_ms", "worker_id", "found", "spec", "created_ms", "ready_ms", "started_ms")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    READY_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    name: str
    attempt: int
    result: Payload
    error: TaskError
    updated_ms: int
    worker_id: str
    found: bool
    spec: TaskSpec
    created_ms: int
    ready_ms: int
    started_ms: int
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., name: _Optional[str] = ..., attempt: _Optional[int] = ..., result: _Optional[_Union[Payload, _Mapping]] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ..., updated_ms: _Optional[int] = ..., worker_id: _Optional[str] = ..., found: _Optional[bool] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., created_ms: _Optional[int] = ..., ready_ms: _Optional[int] = ..., started_ms: _Optional[int] = ...) -> None: ...
