"""Retention tiers: a finished task's result is kept for the result expiry, its timeline (the event
log) for the shorter timeline expiry; Watch and GetTask keep working after the timeline is gone and
say so. The whole platform on a Redis of its own, with a timeline kept 1.5 s."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis as redis_sync

from tasktide import Client, ClientSettings, TaskState
from tasktide.v1 import task_pb2
from tasktide_services.common.redis_server import start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.results import keys
from tasktide_services.results.store import TIMELINE_EXPIRED
from tasktide_services.testing import PlatformThread, eventually, run_worker_thread
from tests.tasks_app import app


def _history(client: Client, task_id: str) -> list[task_pb2.TaskEvent]:
    return [e for e in client.watch([task_id]) if not e.progress_only]


def _states(history: list[task_pb2.TaskEvent]) -> list[TaskState]:
    return [TaskState.from_proto(e.state) for e in history]


@contextlib.contextmanager
def _platform(
    server_settings: ServerSettings, tmp_path: Path, timeline: float
) -> Iterator[tuple[Client, redis_sync.Redis, str]]:
    """A platform on a Redis of its own, results kept 600 s and timelines `timeline` s: a client,
    a connection to that Redis, and the platform's address."""
    server = start_redis(tmp_path / "redis", appendonly=False)
    settings = replace(server_settings, redis_url=server.url, result_expires=600.0, timeline_expires=timeline)
    platform = PlatformThread(settings).start()
    try:
        with Client(settings=ClientSettings.from_env({}, address=platform.address)) as client:
            yield client, redis_sync.Redis.from_url(server.url), platform.address
    finally:
        platform.stop()
        server.stop()


def test_the_timeline_expires_before_the_result(server_settings, queue_name, tmp_path):
    with _platform(server_settings, tmp_path, 1.5) as (client, r, address):
        with run_worker_thread(app, address, queues=(queue_name,)):
            h = client.submit("t.with_progress", [2], queue=queue_name)  # progress: not a plain timeline
            assert h.get(timeout=15) == 2
        k = keys.task_keys(h.id)
        history = _history(client, h.id)
        assert _states(history) == [TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
        assert history[0].spec.name == "t.with_progress"  # given back with the first event
        assert not any(TIMELINE_EXPIRED in e.message for e in history)
        # The spec is stored once: with the result, not in the logged event.
        assert not task_pb2.TaskEvent.FromString(r.lindex(k.events, 0)).HasField("spec")
        assert 0 < r.pttl(k.events) <= 1500 < r.pttl(k.result)

        eventually(lambda: not r.exists(k.events), timeout=15, what="the timeline to expire")
        (after,) = _history(client, h.id)  # Watch still ends: the final event stands for the rest
        assert TaskState.from_proto(after.state) is TaskState.SUCCEEDED
        assert TIMELINE_EXPIRED in after.message
        assert after.cursor == history[-1].cursor
        (res,) = client.fetch([h.id])
        assert res.found and res.spec.name == "t.with_progress" and h.get(timeout=5) == 2
        assert client.get_task(h.id).state == task_pb2.TASK_STATE_SUCCEEDED


def test_a_plain_timeline_is_folded_into_the_result_and_kept_with_it(server_settings, queue_name, tmp_path):
    """Queued, ran once, ended, all recorded at once: the result keeps the timeline (no event log),
    which reads as the log would have, for as long as the result is kept."""
    with _platform(server_settings, tmp_path, 1.0) as (client, r, address):
        with run_worker_thread(app, address, queues=(queue_name,)):
            handles = []
            for i in range(20):  # one at a time: each one's events are recorded together (unless slow)
                handles.append(client.submit("t.add", [i, 1], queue=queue_name))
                assert handles[-1].get(timeout=15) == i + 1
        folded = [h for h in handles if not r.exists(keys.task_keys(h.id).events)]
        assert folded, "no timeline of 20 was folded"
        h = folded[0]
        history = _history(client, h.id)
        assert _states(history) == [TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
        queued, running, done = history
        assert queued.spec.name == "t.add" and queued.at_ms == client.get_task(h.id).created_ms
        assert running.worker_id == done.worker_id != "" and running.attempt == done.attempt
        assert queued.at_ms <= running.at_ms <= done.at_ms
        assert [e.cursor for e in history] == ["1", "2", "3"]
        assert [e.cursor for e in client.watch([h.id], cursors={h.id: "1"})] == ["2", "3"]
        time.sleep(1.5)  # past the timeline expiry: a folded timeline stays with its result
        again = _history(client, h.id)
        assert [e.SerializeToString() for e in again] == [e.SerializeToString() for e in history]
        assert not any(TIMELINE_EXPIRED in e.message for e in again)
        assert r.pttl(keys.task_keys(h.id).result) > 500_000


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_timeline_expiry_is_refused(value):
    with pytest.raises(ValueError, match="TASKTIDE_TIMELINE_EXPIRES"):
        ServerSettings.from_env({"TASKTIDE_TIMELINE_EXPIRES": value})


def test_the_timeline_is_never_kept_longer_than_the_result(tmp_path):
    from tasktide_services.results.store import ResultsStore

    store = ResultsStore(None, 10.0, timeline_seconds=3600.0)  # type: ignore[arg-type]
    assert store.timeline_ms == store.expire_ms == 10_000
