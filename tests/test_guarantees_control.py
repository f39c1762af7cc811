"""A rate limit shared by worker processes and kept on the direct path, queues consumed in the order
a worker names them, and results that expire once finished (docs/guarantees.md)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from tasktide import Client, TaskState
from tasktide_services.common.redis_server import start_redis
from tasktide_services.testing import PlatformThread, client_settings, eventually, run_worker_thread, spawn
from tests.guarantee_tasks import app
from tests.processes import ROOT, stop

RATE_INTERVAL = 0.2  # g.limited: 5/s


def _consumers(client, queue: str) -> int:
    return len([w for w in client.workers() if queue in w.queues])


@pytest.mark.parametrize("path", ["scheduler", "direct"])
def test_the_rate_limit_is_shared_by_two_worker_processes(platform, redis_server, client, queue_name, tmp_path, path):
    """Two worker processes, one slot each, both run tasks; the starts of all are spaced by the
    limit from the submission on, whichever way the tasks were submitted."""
    starts = tmp_path / "starts"
    env = {"TASKTIDE_ADDRESS": platform.address}
    args = ("worker", "tests.guarantee_tasks:app", "--queues", queue_name, "-c", "1", "--prefetch", "1")
    workers = [spawn(*args, env=env, cwd=ROOT) for _ in range(2)]
    try:
        eventually(lambda: _consumers(client, queue_name) == 2, timeout=30, what="both workers to connect")
        settings = client_settings(platform.address)
        if path == "direct":  # TASKTIDE_SUBMIT_REDIS_URL: submissions written in the caller's process
            settings = replace(settings, submit_redis_url=redis_server.url)
        spec = app.tasks["g.limited"].spec([str(starts), 0.5], queue=queue_name)
        with Client(settings=settings) as producer:
            submitted = time.time()
            handles = [producer.submit_spec(spec) for _ in range(10)]
            pids = [h.get(timeout=60) for h in handles]
    finally:
        stop(workers)
    assert len(set(pids)) == 2, "both worker processes ran tasks"
    times = sorted(float(line.split()[1]) for line in starts.read_text().splitlines())
    assert len(times) == 10
    for k, t in enumerate(times):  # slot k is k intervals after the first; 10 ms for clock rounding
        assert t >= submitted + k * RATE_INTERVAL - 0.01, (k, t - submitted)


@pytest.mark.parametrize("named", [("first", "second"), ("second", "first")])
def test_queues_are_consumed_in_the_order_the_worker_names_them(platform, client, queue_name, tmp_path, named):
    path = tmp_path / "order"
    queues = tuple(f"{queue_name}-{n}" for n in named)
    for q in reversed(queues):  # the last-named queue's tasks are the oldest
        for i in range(3):
            client.submit_spec(app.tasks["g.label"].spec([str(path), f"{q}:{i}"], queue=q))
    with run_worker_thread(app, platform.address, queues=queues, concurrency=1, prefetch=1) as w:
        eventually(lambda: w.completed == 6, what="six tasks to run")
    assert path.read_text().split() == [f"{q}:{i}" for q in queues for i in range(3)]


def test_results_expire_once_the_task_has_finished(server_settings, queue_name, tmp_path):
    """Results are kept `result_expires` (here 2 s) after the task ends, and a task held on the
    server longer than that keeps its record and its whole history until it has run."""
    redis = start_redis(tmp_path / "redis", appendonly=False)
    platform = PlatformThread(replace(server_settings, redis_url=redis.url, result_expires=2.0)).start()
    try:
        with Client(settings=client_settings(platform.address)) as client:
            # On a queue of its own, no worker takes it before the other result has expired, however
            # long a loaded machine takes to get there.
            held = f"{queue_name}-held"
            delayed = client.submit_spec(app.tasks["g.add"].spec([5, 5], queue=held, countdown=3.0))
            with run_worker_thread(app, platform.address, queues=(queue_name,)):
                h = client.submit("g.add", [1, 2], queue=queue_name)
                assert h.get(timeout=15) == 3
                assert client.fetch([h.id])[0].found
                eventually(lambda: not client.fetch([h.id])[0].found, timeout=15, what="the result to expire")
                assert h.status() is TaskState.UNKNOWN
                # Waiting longer than results are kept: its record stays.
                assert delayed.status() in (TaskState.SCHEDULED, TaskState.QUEUED)
            with run_worker_thread(app, platform.address, queues=(held,)):
                assert delayed.get(timeout=15) == 10
            history = [TaskState.from_proto(e.state) for e in client.watch([delayed.id]) if not e.progress_only]
            assert history == [TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
            assert client.fetch([delayed.id])[0].spec.name == "g.add"
            eventually(lambda: not client.fetch([delayed.id])[0].found, timeout=15, what="its result to expire")
    finally:
        platform.stop()
        redis.stop()
