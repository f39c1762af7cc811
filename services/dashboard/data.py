"""What the dashboard shows, read from the services over gRPC and turned into JSON-ready dicts.

The platform has no RPC that lists recent tasks, so the dashboard remembers the ids it has seen
(tasks looked up, dead letters, the last task of each schedule) in memory, newest first.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import grpc

import tasktide
from tasktide import Client, ClientSettings, TaskState
from tasktide._channels import blocking_channel
from tasktide._hooks import Hooks
from tasktide.v1 import results_pb2, results_pb2_grpc, task_pb2, worker_pb2
from tasktide_services.dashboard.runs import run_ms, wait_ms

RECENT_LIMIT = 200
# Reading a task's event log: the stream ends at a final state; for a task still in flight, after
# this many seconds (the events so far are shown).
TIMELINE_SECONDS = 0.5
FINAL_TIMELINE_SECONDS = 5.0


def payload_value(p: task_pb2.Payload) -> Any:
    """A payload as JSON-compatible data; a protobuf message is shown by its type only."""
    kind = p.WhichOneof("kind")
    if kind == "json":
        try:
            return json.loads(p.json)
        except ValueError:
            return p.json.decode("utf-8", "replace")
    if kind == "message":
        return {"@type": p.message.type_url}
    return None


def iso(ms: int) -> str | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds") if ms else None


def when(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def state_name(value: int) -> str:
    return TaskState.from_proto(value).name


def error_dict(e: task_pb2.TaskError) -> dict[str, str] | None:
    if not (e.type or e.message or e.traceback):
        return None
    return {"type": e.type, "message": e.message, "traceback": e.traceback}


def session_row(w: worker_pb2.WorkerInfo, now_ms: int) -> dict[str, Any]:
    """A worker's session as ListWorkers gives it (`now_ms`: the time of the reading)."""
    return {
        "worker_id": w.worker_id,
        "session_id": w.session_id,
        "hostname": w.hostname,
        "pid": w.pid,
        "queues": list(w.queues),
        "concurrency": w.concurrency,
        "language": w.language,
        "resizable": w.resizable,
        "connected": iso(w.connected_ms),
        "last_seen": iso(w.last_seen_ms),
        "last_seen_ago_s": round(max(0, now_ms - w.last_seen_ms) / 1000, 1) if w.last_seen_ms else None,
    }


TASKS_PAGE = 50  # tasks per page of the tasks page


class Platform:
    """Blocking reads and actions on one platform; thread-safe (handlers call it from a thread pool)."""

    def __init__(self, address: str, hooks: Hooks | None = None) -> None:
        settings = ClientSettings.from_env(address=address)
        if hooks is not None:  # the hooks carry the dashboard's token (credentials.py): not twice
            settings = replace(settings, token="")
        self.address = address
        self.client = Client(settings=settings, hooks=hooks)
        self._res_channel = blocking_channel(settings, settings.results())  # TLS as the settings say
        wrapped = hooks.wrap_channel(self._res_channel) if hooks else self._res_channel
        self._results = results_pb2_grpc.ResultsStub(wrapped)
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()
        self._res_channel.close()

    def remember(self, *task_ids: str) -> None:
        with self._lock:
            for task_id in task_ids:
                if not task_id:
                    continue
                self._recent[task_id] = None
                self._recent.move_to_end(task_id, last=False)
            while len(self._recent) > RECENT_LIMIT:
                self._recent.popitem(last=True)

    def overview(self) -> dict[str, Any]:
        now = int(time.time() * 1000)
        workers = [session_row(w, now) for w in self.client.workers()]
        queues = [
            {
                "queue": q.queue,
                "ready": q.ready,
                "running": q.leased,
                "dead": q.dead,
                "paused": q.paused,
                "consumers": q.consumers,
            }
            for q in self.client.queue_stats()
        ]
        return {"now": iso(now), "workers": workers, "queues": queues}

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = list(self._recent)
        if not ids:
            return []
        rows = []
        for r in self.client.fetch(ids):
            rows.append(
                {
                    "id": r.task_id,
                    "found": r.found,
                    "state": state_name(r.state) if r.found else "UNKNOWN",
                    "name": r.name or r.spec.name,
                    "queue": r.spec.queue,
                    "attempt": r.attempt,
                    "updated": iso(r.updated_ms),
                }
            )
        return rows

    def tasks(self, query: dict[str, str]) -> dict[str, Any]:
        """A page of ListTasks, the latest changed first, with counts by state over the retention.
        `query`: state (a state name, or several comma-separated), name, queue, worker, error, cursor."""
        states = [s for s in query.get("state", "").split(",") if s]
        page = self.client.list_tasks(
            states,
            name=query.get("name", ""),
            queue=query.get("queue", ""),
            worker_id=query.get("worker", ""),
            error_type=query.get("error", ""),
            cursor=query.get("cursor", ""),
            limit=TASKS_PAGE,
            counts=True,
        )
        rows = [
            {
                "id": r.task_id,
                "name": r.name or r.spec.name,
                "queue": r.spec.queue,
                "state": state_name(r.state),
                "attempt": r.attempt,
                "worker": r.worker_id,
                "error": error_dict(r.error) if r.error.type else None,
                "updated": iso(r.updated_ms),
                "wait_ms": wait_ms(r),
                "run_ms": run_ms(r),
            }
            for r in page.tasks
        ]
        counts = {k.removeprefix("TASK_STATE_"): v for k, v in page.counts_by_state.items()}
        return {"tasks": rows, "next_cursor": page.next_cursor, "counts": counts, "names": dict(page.counts_by_name)}

    def task(self, task_id: str) -> dict[str, Any] | None:
        """Everything known about one task; None when the platform does not know it."""
        res = self.client.fetch([task_id])[0]
        spec: task_pb2.TaskSpec | None = res.spec if res.found and res.HasField("spec") else None
        state, attempt, created = res.state, res.attempt, res.created_ms
        if not res.found:
            try:
                task = self.client.get_task(task_id)
            except tasktide.NotFound:
                return None
            spec, state, attempt, created = task.spec, task.state, task.attempt, task.created_ms
        self.remember(task_id)
        explanation = self.client.explain(task_id)
        return {
            "id": task_id,
            "state": state_name(state),
            "final": TaskState.from_proto(state).is_final,
            "name": res.name or (spec.name if spec else ""),
            "queue": (spec.queue if spec else "") or "default",
            "priority": spec.priority if spec else 0,
            "args": payload_value(spec.args) if spec else None,
            "kwargs": payload_value(spec.kwargs) if spec else None,
            "attempt": attempt,
            "attempts": attempt + 1,
            "worker_id": res.worker_id,
            "created": iso(created),
            "updated": iso(res.updated_ms),
            "result": payload_value(res.result) if res.HasField("result") else None,
            "error": error_dict(res.error),
            "explain": {
                "state": explanation.state.name,
                "reason": explanation.reason,
                "message": explanation.message,
                "cancel_asked": explanation.cancel_asked,
            },
            "events": self.timeline(task_id, TaskState.from_proto(state).is_final),
        }

    def timeline(self, task_id: str, final: bool) -> list[dict[str, Any]]:
        req = results_pb2.WatchRequest(task_ids=[task_id], until_final=True)
        events: list[dict[str, Any]] = []
        try:
            for e in self._results.Watch(req, timeout=FINAL_TIMELINE_SECONDS if final else TIMELINE_SECONDS):
                events.append(
                    {
                        "at": iso(e.at_ms),
                        "state": state_name(e.state),
                        "attempt": e.attempt,
                        "worker_id": e.worker_id,
                        "progress": e.progress if e.progress_only else None,
                        "message": e.message,
                        "error": error_dict(e.error),
                    }
                )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        return events

    def cancel(self, task_id: str) -> str:
        self.remember(task_id)
        return self.client.cancel(task_id).name

    def dead(self, queue: str) -> list[dict[str, Any]]:
        letters = self.client.dead_letters(queue, limit=500)
        self.remember(*(d.task_id for d in letters))
        return [
            {"id": d.task_id, "name": d.name, "queue": d.queue, "attempt": d.attempt, "dead_at": when(d.dead_at)}
            for d in letters
        ]

    def requeue(self, queue: str, task_ids: list[str]) -> int:
        return self.client.requeue_dead(queue, task_ids)

    def set_paused(self, queue: str, paused: bool) -> None:
        self.client.pause_queue(queue, paused)

    def drain_worker(self, worker_id: str) -> int:
        return self.client.drain_worker(worker_id)

    def resize_worker(self, worker_id: str, concurrency: int) -> int:
        return self.client.resize_worker(worker_id, concurrency)

    def schedules(self) -> list[dict[str, Any]]:
        rows = []
        for s in self.client.list_schedules():
            self.remember(s.last_task_id)
            rows.append(
                {
                    "name": s.name,
                    "task": s.task_name,
                    "cron": s.cron,
                    "every": s.every,
                    "timezone": s.timezone,
                    "queue": s.queue or "default",
                    "args": s.args,
                    "kwargs": s.kwargs,
                    "paused": s.paused,
                    "next_run": when(s.next_run),
                    "last_run": when(s.last_run),
                    "last_task_id": s.last_task_id,
                    "runs": s.runs,
                }
            )
        return rows
