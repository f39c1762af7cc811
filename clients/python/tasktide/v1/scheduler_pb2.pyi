from tasktide.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WaitReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_REASON_UNSPECIFIED: _ClassVar[WaitReason]
    WAIT_REASON_ETA: _ClassVar[WaitReason]
    WAIT_REASON_RETRY_BACKOFF: _ClassVar[WaitReason]
    WAIT_REASON_RATE_LIMIT: _ClassVar[WaitReason]
    WAIT_REASON_NO_WORKER: _ClassVar[WaitReason]
    WAIT_REASON_QUEUE_PAUSED: _ClassVar[WaitReason]
    WAIT_REASON_QUEUED_BEHIND: _ClassVar[WaitReason]
    WAIT_REASON_RUNNING: _ClassVar[WaitReason]
    WAIT_REASON_FINISHED: _ClassVar[WaitReason]
WAIT_REASON_UNSPECIFIED: WaitReason
WAIT_REASON_ETA: WaitReason
WAIT_REASON_RETRY_BACKOFF: WaitReason
WAIT_REASON_RATE_LIMIT: WaitReason
WAIT_REASON_NO_WORKER: WaitReason
WAIT_REASON_QUEUE_PAUSED: WaitReason
WAIT_REASON_QUEUED_BEHIND: WaitReason
WAIT_REASON_RUNNING: WaitReason
WAIT_REASON_FINISHED: WaitReason

class SubmitRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _task_pb2.TaskSpec
    def __init__(self, spec: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("task_id", "state", "existing")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: _task_pb2.TaskState
    existing: bool
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[_task_pb2.TaskState, str]] = ..., existing: _Optional[bool] = ...) -> None: ...

class SubmitBatchRequest(_message.Message):
    __slots__ = ("specs",)
    SPECS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[_task_pb2.TaskSpec]
    def __init__(self, specs: _Optional[_Iterable[_Union[_task_pb2.TaskSpec, _Mapping]]] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubmitResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SubmitResponse, _Mapping]]] = ...) -> None: ...

class SubmitStreamRequest(_message.Message):
    __slots__ = ("seq", "spec", "batch")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    spec: _task_pb2.TaskSpec
    batch: _containers.RepeatedCompositeFieldContainer[SubmitStreamRequest]
    def __init__(self, seq: _Optional[int] = ..., spec: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., batch: _Optional[_Iterable[_Union[SubmitStreamRequest, _Mapping]]] = ...) -> None: ...

class SubmitStreamResponse(_message.Message):
    __slots__ = ("seq", "result", "error_code", "error_message", "batch")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    result: SubmitResponse
    error_code: int
    error_message: str
    batch: _containers.RepeatedCompositeFieldContainer[SubmitStreamResponse]
    def __init__(self, seq: _Optional[int] = ..., result: _Optional[_Union[SubmitResponse, _Mapping]] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ..., batch: _Optional[_Iterable[_Union[SubmitStreamResponse, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _task_pb2.TaskState
    def __init__(self, state: _Optional[_Union[_task_pb2.TaskState, str]] = ...) -> None: ...

class RetryRequest(_message.Message):
    __slots__ = ("task", "countdown")
    TASK_FIELD_NUMBER: _ClassVar[int]
    COUNTDOWN_FIELD_NUMBER: _ClassVar[int]
    task: _task_pb2.Task
    countdown: float
    def __init__(self, task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., countdown: _Optional[float] = ...) -> None: ...

class RetryResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _task_pb2.TaskState
    def __init__(self, state: _Optional[_Union[_task_pb2.TaskState, str]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("task_id", "state", "reason", "message", "eta_ms", "ahead", "cancel_asked")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ETA_MS_FIELD_NUMBER: _ClassVar[int]
    AHEAD_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ASKED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: _task_pb2.TaskState
    reason: WaitReason
    message: str
    eta_ms: int
    ahead: int
    cancel_asked: bool
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[_task_pb2.TaskState, str]] = ..., reason: _Optional[_Union[WaitReason, str]] = ..., message: _Optional[str] = ..., eta_ms: _Optional[int] = ..., ahead: _Optional[int] = ..., cancel_asked: _Optional[bool] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("id", "task", "cron", "every", "timezone", "start_ms", "end_ms", "paused", "next_run_ms", "last_run_ms", "last_task_id", "runs", "created_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    task: _task_pb2.TaskSpec
    cron: str
    every: float
    timezone: str
    start_ms: int
    end_ms: int
    paused: bool
    next_run_ms: int
    last_run_ms: int
    last_task_id: str
    runs: int
    created_ms: int
    def __init__(self, id: _Optional[str] = ..., task: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., cron: _Optional[str] = ..., every: _Optional[float] = ..., timezone: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., paused: _Optional[bool] = ..., next_run_ms: _Optional[int] = ..., last_run_ms: _Optional[int] = ..., last_task_id: _Optional[str] = ..., runs: _Optional[int] = ..., created_ms: _Optional[int] = ...) -> None: ...

class PutScheduleRequest(_message.Message):
    __slots__ = ("schedule", "keep_paused")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    KEEP_PAUSED_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    keep_paused: bool
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ..., keep_paused: _Optional[bool] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class PauseScheduleRequest(_message.Message):
    __slots__ = ("id", "paused")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    id: str
    paused: bool
    def __init__(self, id: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...
