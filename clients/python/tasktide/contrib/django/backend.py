"""TasktideBackend: Django's tasks framework, run on tasktide.

    TASKS = {
        "default": {
            "BACKEND": "tasktide.contrib.django.TasktideBackend",
            "QUEUES": ["default", "emails"],        # [] allows any queue name
            "OPTIONS": {"enqueue_on_commit": True},
        }
    }

OPTIONS: address (this backend's platform, else TASKTIDE["ADDRESS"]), enqueue_on_commit (send when the
transaction on `database` commits; nothing is sent on rollback), database, max_retries and
retry_backoff (seconds before the first retry, doubling), record (index results for the admin).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils.module_loading import import_string

from tasktide._exceptions import InvalidArgument, NotFound
from tasktide._settings import ClientSettings
from tasktide._spec import TaskOptions, build_spec
from tasktide.contrib.django import clients, platform, records
from tasktide.contrib.django.compat import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    task_enqueued,
)
from tasktide.contrib.django.conf import get_conf
from tasktide.contrib.django.results import from_snapshot, new_result, when
from tasktide.contrib.django.runner import allowed_packages, in_packages
from tasktide.v1 import task_pb2


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    address: str = ""
    enqueue_on_commit: bool = False
    database: str = DEFAULT_DB_ALIAS
    max_retries: int = 0
    retry_backoff: float = 1.0
    record: bool = True

    @classmethod
    def parse(cls, alias: str, raw: Mapping[str, Any]) -> BackendOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unsupported option(s) {', '.join(unknown)}; "
                f"TasktideBackend supports {', '.join(sorted(known))}"
            )
        try:
            return cls(
                address=str(raw.get("address", "")),
                enqueue_on_commit=bool(raw.get("enqueue_on_commit", False)),
                database=str(raw.get("database", DEFAULT_DB_ALIAS)),
                max_retries=int(raw.get("max_retries", 0)),
                retry_backoff=float(raw.get("retry_backoff", 1.0)),
                record=bool(raw.get("record", True)),
            )
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS'] has a value of the wrong type: {exc}") from None


class TasktideBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.opts = BackendOptions.parse(alias, self.options)

    # -- configuration -------------------------------------------------------------------------
    @property
    def client_settings(self) -> ClientSettings:
        base = get_conf().client
        return dataclasses.replace(base, address=self.opts.address) if self.opts.address else base

    @property
    def client(self):  # type: ignore[no-untyped-def]
        return clients.sync_client(self.client_settings)

    def _recording(self) -> bool:
        return self.opts.record and records.installed()

    # -- enqueue -------------------------------------------------------------------------------
    def _spec(self, task: Task, result: TaskResult) -> task_pb2.TaskSpec:
        return build_spec(
            task.module_path,
            result.args,
            result.kwargs,
            options=TaskOptions(max_retries=self.opts.max_retries, retry_backoff=self.opts.retry_backoff),
            queue=task.queue_name,
            priority=task.priority,
            eta=task.run_after,
        )

    def _prepare(self, task: Task, args: Any, kwargs: Any, result_id: str = "") -> tuple[TaskResult, Any]:
        self.validate_task(task)
        result = new_result(task, result_id, args, kwargs, self.alias)
        return result, self._spec(task, result)

    def _record(self, result: TaskResult, task_id: str) -> None:
        if self._recording():
            t = result.task
            records.save(
                result.id,
                task_id,
                name=t.module_path,
                backend=self.alias,
                queue=t.queue_name,
                priority=t.priority,
                run_after=t.run_after,
                enqueued_at=result.enqueued_at,
            )

    def _deferred(self) -> bool:
        return self.opts.enqueue_on_commit and transaction.get_connection(self.opts.database).in_atomic_block

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        if not self._deferred():
            result, spec = self._prepare(task, args, kwargs)
            handle = self.client.submit_spec(spec)
            result = dataclasses.replace(result, id=handle.id)
            self._record(result, handle.id)
            task_enqueued.send(type(self), task_result=result)
            return result
        # In a transaction: the result id is chosen here and the task is sent once the transaction
        # commits, under that id as its idempotency key (so a repeated callback sends it once).
        if not self._recording():
            raise ImproperlyConfigured(
                "enqueue_on_commit needs 'tasktide.contrib.django' in INSTALLED_APPS (and its migrations): "
                "results of tasks sent on commit are found through its index"
            )
        result, spec = self._prepare(task, args, kwargs, uuid.uuid4().hex)
        spec.idempotency_key = f"django:{result.id}"

        def send() -> None:
            handle = self.client.submit_spec(spec)
            self._record(result, handle.id)
            task_enqueued.send(type(self), task_result=result)

        transaction.on_commit(send, using=self.opts.database)
        return result

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        if self.opts.enqueue_on_commit:
            # Transactions belong to the sync side; the framework runs them on one thread.
            return await sync_to_async(self.enqueue, thread_sensitive=True)(task, args, kwargs)
        result, spec = self._prepare(task, args, kwargs)
        handle = await clients.async_client(self.client_settings).submit_spec(spec)
        result = dataclasses.replace(result, id=handle.id)
        if self._recording():
            await sync_to_async(self._record, thread_sensitive=True)(result, handle.id)
        task_enqueued.send(type(self), task_result=result)
        return result

    # -- results -------------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult:
        task_id = (records.platform_id(result_id) if self._recording() else None) or result_id
        if not platform.is_task_id(task_id):
            raise TaskResultDoesNotExist(result_id)
        try:
            snap = platform.read(self.client, task_id)
        except (NotFound, InvalidArgument):
            raise TaskResultDoesNotExist(result_id) from None
        return from_snapshot(self._task_named(snap), result_id, snap, self.alias)

    def _task_named(self, snap: platform.Snapshot) -> Task:
        task = None
        if in_packages(snap.name, allowed_packages(get_conf())):
            try:
                task = import_string(snap.name)
            except ImportError:
                pass
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"{snap.task_id} is a task of tasktide ({snap.name}), not a Django task")
        try:
            run_after = when(snap.eta_ms) if snap.eta_ms > snap.created_ms else None
            return task.using(priority=snap.priority, queue_name=snap.queue, run_after=run_after)
        except InvalidTaskError:
            return task
