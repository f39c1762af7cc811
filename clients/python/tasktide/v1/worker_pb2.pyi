from tasktide.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RevokeResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOKE_RESULT_UNSPECIFIED: _ClassVar[RevokeResult]
    REVOKE_RESULT_REMOVED: _ClassVar[RevokeResult]
    REVOKE_RESULT_SIGNALLED: _ClassVar[RevokeResult]
    REVOKE_RESULT_NOT_HELD: _ClassVar[RevokeResult]
REVOKE_RESULT_UNSPECIFIED: RevokeResult
REVOKE_RESULT_REMOVED: RevokeResult
REVOKE_RESULT_SIGNALLED: RevokeResult
REVOKE_RESULT_NOT_HELD: RevokeResult

class EnqueueRequest(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ...) -> None: ...

class EnqueueResponse(_message.Message):
    __slots__ = ("enqueued",)
    ENQUEUED_FIELD_NUMBER: _ClassVar[int]
    enqueued: int
    def __init__(self, enqueued: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("worker_id", "hostname", "pid", "queues", "task_names", "concurrency", "language", "resizable")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    TASK_NAMES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    RESIZABLE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    hostname: str
    pid: int
    queues: _containers.RepeatedScalarFieldContainer[str]
    task_names: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    language: str
    resizable: bool
    def __init__(self, worker_id: _Optional[str] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., queues: _Optional[_Iterable[str]] = ..., task_names: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., language: _Optional[str] = ..., resizable: _Optional[bool] = ...) -> None: ...

class LeaseRef(_message.Message):
    __slots__ = ("task_id", "queue", "lease_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    queue: str
    lease_token: int
    def __init__(self, task_id: _Optional[str] = ..., queue: _Optional[str] = ..., lease_token: _Optional[int] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "credit", "heartbeat", "outcomes", "release", "progress", "concurrency")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    credit: int
    heartbeat: Heartbeat
    outcomes: OutcomeBatch
    release: Release
    progress: ProgressReport
    concurrency: int
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., credit: _Optional[int] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., outcomes: _Optional[_Union[OutcomeBatch, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., progress: _Optional[_Union[ProgressReport, _Mapping]] = ..., concurrency: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[LeaseRef]
    def __init__(self, leases: _Optional[_Iterable[_Union[LeaseRef, _Mapping]]] = ...) -> None: ...

class OutcomeBatch(_message.Message):
    __slots__ = ("outcomes", "credit")
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[_task_pb2.Outcome]
    credit: int
    def __init__(self, outcomes: _Optional[_Iterable[_Union[_task_pb2.Outcome, _Mapping]]] = ..., credit: _Optional[int] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[LeaseRef]
    def __init__(self, leases: _Optional[_Iterable[_Union[LeaseRef, _Mapping]]] = ...) -> None: ...

class ProgressReport(_message.Message):
    __slots__ = ("lease", "value", "message")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    value: float
    message: str
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., value: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("task", "lease_token", "deadline_ms", "delivery")
    TASK_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    lease_token: int
    deadline_ms: int
    delivery: int
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., lease_token: _Optional[int] = ..., deadline_ms: _Optional[int] = ..., delivery: _Optional[int] = ...) -> None: ...

class RegistryMessage(_message.Message):
    __slots__ = ("welcome", "assignments", "cancel", "drain", "rejected", "resize")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assignments: AssignmentBatch
    cancel: CancelSignal
    drain: Drain
    rejected: LeaseRejected
    resize: Resize
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assignments: _Optional[_Union[AssignmentBatch, _Mapping]] = ..., cancel: _Optional[_Union[CancelSignal, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., rejected: _Optional[_Union[LeaseRejected, _Mapping]] = ..., resize: _Optional[_Union[Resize, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "lease_seconds")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    lease_seconds: float
    def __init__(self, session_id: _Optional[str] = ..., lease_seconds: _Optional[float] = ...) -> None: ...

class AssignmentBatch(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ...) -> None: ...

class CancelSignal(_message.Message):
    __slots__ = ("task_id", "grace_seconds")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    grace_seconds: float
    def __init__(self, task_id: _Optional[str] = ..., grace_seconds: _Optional[float] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Resize(_message.Message):
    __slots__ = ("concurrency",)
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    concurrency: int
    def __init__(self, concurrency: _Optional[int] = ...) -> None: ...

class LeaseRejected(_message.Message):
    __slots__ = ("lease", "reason")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lease: LeaseRef
    reason: str
    def __init__(self, lease: _Optional[_Union[LeaseRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "session_id", "hostname", "pid", "queues", "concurrency", "connected_ms", "last_seen_ms", "language", "resizable")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    RESIZABLE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    session_id: str
    hostname: str
    pid: int
    queues: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    connected_ms: int
    last_seen_ms: int
    language: str
    resizable: bool
    def __init__(self, worker_id: _Optional[str] = ..., session_id: _Optional[str] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., queues: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., connected_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., language: _Optional[str] = ..., resizable: _Optional[bool] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class QueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueStat(_message.Message):
    __slots__ = ("queue", "ready", "leased", "dead", "paused", "consumers")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    ready: int
    leased: int
    dead: int
    paused: bool
    consumers: int
    def __init__(self, queue: _Optional[str] = ..., ready: _Optional[int] = ..., leased: _Optional[int] = ..., dead: _Optional[int] = ..., paused: _Optional[bool] = ..., consumers: _Optional[int] = ...) -> None: ...

class QueueStatsResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStat]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStat, _Mapping]]] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("tasks", "grace_seconds")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_task_pb2.Task]
    grace_seconds: float
    def __init__(self, tasks: _Optional[_Iterable[_Union[_task_pb2.Task, _Mapping]]] = ..., grace_seconds: _Optional[float] = ...) -> None: ...

class RevokeResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedScalarFieldContainer[RevokeResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RevokeResult, str]]] = ...) -> None: ...

class PauseQueueRequest(_message.Message):
    __slots__ = ("queue", "paused")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    queue: str
    paused: bool
    def __init__(self, queue: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class PauseQueueResponse(_message.Message):
    __slots__ = ("paused",)
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    def __init__(self, paused: _Optional[bool] = ...) -> None: ...

class ListDeadRequest(_message.Message):
    __slots__ = ("queue", "limit")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    limit: int
    def __init__(self, queue: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DeadTask(_message.Message):
    __slots__ = ("task", "dead_ms")
    TASK_FIELD_NUMBER: _ClassVar[int]
    DEAD_MS_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    dead_ms: int
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., dead_ms: _Optional[int] = ...) -> None: ...

class ListDeadResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[DeadTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[DeadTask, _Mapping]]] = ...) -> None: ...

class RequeueDeadRequest(_message.Message):
    __slots__ = ("queue", "task_ids")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queue: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RequeueDeadResponse(_message.Message):
    __slots__ = ("requeued",)
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    requeued: int
    def __init__(self, requeued: _Optional[int] = ...) -> None: ...

class LocateRequest(_message.Message):
    __slots__ = ("task_id", "queue")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    queue: str
    def __init__(self, task_id: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class LocateResponse(_message.Message):
    __slots__ = ("ready", "leased", "dead", "ahead", "paused", "consumers", "cancel_asked")
    READY_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    AHEAD_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ASKED_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    leased: bool
    dead: bool
    ahead: int
    paused: bool
    consumers: int
    cancel_asked: bool
    def __init__(self, ready: _Optional[bool] = ..., leased: _Optional[bool] = ..., dead: _Optional[bool] = ..., ahead: _Optional[int] = ..., paused: _Optional[bool] = ..., consumers: _Optional[int] = ..., cancel_asked: _Optional[bool] = ...) -> None: ...

class FindRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class FindResponse(_message.Message):
    __slots__ = ("found", "task", "ready")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    found: bool
    task: _task_pb2.Task
    ready: bool
    def __init__(self, found: _Optional[bool] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., ready: _Optional[bool] = ...) -> None: ...

class DrainWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class DrainWorkerResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: int
    def __init__(self, sessions: _Optional[int] = ...) -> None: ...

class ResizeWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "concurrency")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    concurrency: int
    def __init__(self, worker_id: _Optional[str] = ..., concurrency: _Optional[int] = ...) -> None: ...

class ResizeWorkerResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: int
    def __init__(self, sessions: _Optional[int] = ...) -> None: ...
