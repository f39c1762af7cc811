"""ServiceMetrics: counters and histograms of the task flow, recorded through OpenTelemetry metrics.

Instrument names follow OpenTelemetry; the Prometheus exporter turns them into Prometheus names
(dots to underscores, "_total" on counters, the unit as a suffix):

    tasktide.tasks.submitted          tasktide_tasks_submitted_total{queue,task}       scheduler
    tasktide.tasks.started            tasktide_tasks_started_total{queue,task}         registry (leased to a worker)
    tasktide.tasks.finished           tasktide_tasks_finished_total{queue,task,outcome} registry (outcome of the
                                      last attempt: success, failure, cancelled, timeout)
    tasktide.task.retries             tasktide_task_retries_total{queue,task}          registry
    tasktide.tasks.dead_lettered      tasktide_tasks_dead_lettered_total{queue,reason} registry
    tasktide.tasks.redelivered        tasktide_tasks_redelivered_total{queue}          registry (lease expired)
    tasktide.task.run.duration        tasktide_task_run_duration_seconds{queue,task}   registry (every attempt)
    tasktide.task.wait.duration       tasktide_task_wait_duration_seconds{queue}       registry (runnable -> leased)

Labels are queue names, task names and outcomes, never task ids. The queue gauges are in queue_gauges.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any

from opentelemetry.metrics import Meter
from redis.asyncio import Redis

from tasktide.contrib.opentelemetry.conventions import OUTCOME_NAMES, queue_of
from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.observability.queue_gauges import QueueGauges
from tasktide_services.worker.waiting import ready_since_ms

# Seconds; from a few milliseconds (a fast task) to an hour (a long wait or a long task).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RETRY = task_pb2.OUTCOME_KIND_RETRY


def _labels(task: task_pb2.Task) -> tuple[str, str]:
    return queue_of(task.spec.queue), task.spec.name


class ServiceMetrics(ServiceHooks):
    def __init__(self, meter: Meter, gauge_interval: float = 5.0) -> None:
        self.meter = meter
        self.gauge_interval = gauge_interval
        self.submitted = meter.create_counter("tasktide.tasks.submitted", "{task}", "Tasks accepted by the scheduler")
        self.started = meter.create_counter("tasktide.tasks.started", "{task}", "Attempts leased to a worker")
        self.finished = meter.create_counter(
            "tasktide.tasks.finished", "{task}", "Tasks whose last attempt ended, by outcome"
        )
        self.retries = meter.create_counter("tasktide.task.retries", "{retry}", "Attempts that asked for a retry")
        self.dead = meter.create_counter("tasktide.tasks.dead_lettered", "{task}", "Tasks moved to the dead-letter set")
        self.redeliveries = meter.create_counter(
            "tasktide.tasks.redelivered", "{task}", "Tasks put back in their queue after their lease expired"
        )
        self.run_time = meter.create_histogram(
            "tasktide.task.run.duration",
            "s",
            "Run time of an attempt on a worker",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.wait_time = meter.create_histogram(
            "tasktide.task.wait.duration",
            "s",
            "Time from runnable to leased to a worker",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def scheduling(self, tasks: Sequence[task_pb2.Task], reason: str) -> Any:
        if reason == "submit":
            for (queue, name), n in Counter(_labels(t) for t in tasks).items():
                self.submitted.add(n, {"queue": queue, "task": name})
        return super().scheduling(tasks, reason)

    def dispatched(self, worker_id: str, assignments: Sequence[worker_pb2.Assignment]) -> None:
        now = time.time() * 1000
        for (queue, name), n in Counter(_labels(a.task) for a in assignments).items():
            self.started.add(n, {"queue": queue, "task": name})
        for a in assignments:
            waited = max(now - ready_since_ms(a.task), 0.0) / 1000
            self.wait_time.record(waited, {"queue": queue_of(a.task.spec.queue)})

    def settling(self, pairs: Sequence[tuple[task_pb2.Outcome, task_pb2.Task]]) -> Any:
        ends: Counter[tuple[str, str, int]] = Counter()
        for outcome, task in pairs:
            queue, name = _labels(task)
            ends[(queue, name, outcome.kind)] += 1
            if outcome.finished_ms and outcome.started_ms:
                ran = max(outcome.finished_ms - outcome.started_ms, 0) / 1000
                self.run_time.record(ran, {"queue": queue, "task": name})
        for (queue, name, kind), n in ends.items():
            if kind == RETRY:
                self.retries.add(n, {"queue": queue, "task": name})
            else:
                self.finished.add(n, {"queue": queue, "task": name, "outcome": OUTCOME_NAMES.get(kind, "unknown")})
        return super().settling(pairs)

    def dead_lettered(self, tasks: Sequence[task_pb2.Task], reason: str) -> None:
        for queue, n in Counter(queue_of(t.spec.queue) for t in tasks).items():
            self.dead.add(n, {"queue": queue, "reason": reason})

    def redelivered(self, queue: str, count: int) -> None:
        if count:
            self.redeliveries.add(count, {"queue": queue_of(queue)})

    def background(self, which: Sequence[str], redis: Redis) -> list[Coroutine[Any, Any, None]]:
        if "registry" not in which:
            return []
        gauges = QueueGauges(redis, self.gauge_interval)
        gauges.register(self.meter)
        return [gauges.run()]
