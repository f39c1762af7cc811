"""The metrics endpoint (`--metrics-address`) serves the task flow and queue gauges, and its values
follow what the tasks do."""

from __future__ import annotations

import re
import signal
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasktide import Client, ClientSettings, TaskFailed, TaskState
from tasktide_services.testing import eventually, spawn, spawn_listening
from tests.otlp_receiver import OtlpReceiver
from tests.processes import ROOT, own_redis, stop


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: dict) -> set[str]:
    return {n for n, _ in samples}


class Poll:
    def __init__(self, url: str) -> None:
        self.url = url
        self.last: dict = {}

    def until(self, check, timeout: float = 30.0) -> dict:
        """Scrape until check(samples) holds (bounded); returns the last samples."""

        def holds() -> bool:
            self.last = scrape(self.url)
            return bool(check(self.last))

        try:
            eventually(holds, timeout=timeout, interval=0.1)
        except AssertionError:
            pass  # the caller's assertions on the last samples say what is missing
        return self.last


@pytest.fixture()
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


@pytest.fixture()
def redis_url(tmp_path):
    with own_redis(tmp_path / "redis") as url:
        yield url


@pytest.fixture()
def dev_with_metrics(redis_url, receiver):
    env = {
        "TASKTIDE_REDIS_URL": redis_url,
        "TASKTIDE_METRICS_INTERVAL": "0.1",
        "TASKTIDE_LEASE_SECONDS": "1",
        "TASKTIDE_MAX_DELIVERIES": "1",
        "TASKTIDE_TICK_SECONDS": "0.05",
        "OTEL_SDK_DISABLED": "",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "otlp",  # the same instruments also go out over OTLP
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    proc, address, banner = spawn_listening("dev", "--metrics-address", "127.0.0.1:0", env=env, cwd=ROOT)
    try:
        found = re.search(r"metrics on (http://\S+/metrics)", banner)
        assert found, banner
        yield address, found.group(1), env
    finally:
        stop([proc])


def test_metrics_endpoint_follows_the_tasks(dev_with_metrics, receiver, tmp_path):
    address, url, env = dev_with_metrics
    q = f"q-{uuid.uuid4().hex[:10]}"
    poll = Poll(url)
    settings = ClientSettings.from_env({}, address=address)
    with Client(settings=settings) as client:
        adds = [client.submit("t.add", [i, i], queue=q) for i in range(3)]
        boom = client.submit("t.boom", ["no"], queue=q)
        flaky = client.submit("t.fails_once", [str(tmp_path / "m")], queue=q, max_retries=2)
        waiting = poll.until(lambda s: value(s, "tasktide_queue_depth", queue=q) == 5)
        assert value(waiting, "tasktide_queue_depth", queue=q) == 5
        assert value(waiting, "tasktide_tasks_submitted_total", queue=q, task="t.add") == 3
        assert value(waiting, "tasktide_tasks_submitted_total", queue=q) == 5
        assert ("tasktide_queue_oldest_wait_seconds", frozenset({("queue", q)})) in waiting
        assert value(waiting, "tasktide_tasks_started_total", queue=q) == 0
        assert value(waiting, "tasktide_workers_online") == 0

        worker_env = {**env, "TASKTIDE_ADDRESS": address}
        worker = spawn("worker", "tests.tasks_app:app", "-Q", q, "--concurrency", "1", env=worker_env, cwd=ROOT)
        try:
            assert [h.get(timeout=30) for h in adds] == [0, 2, 4]
            with pytest.raises(TaskFailed):
                boom.get(timeout=30)
            assert flaky.get(timeout=30) == "second attempt ok"
            ran = poll.until(
                lambda s: (
                    value(s, "tasktide_task_run_duration_seconds_count", queue=q) == 6
                    and value(s, "tasktide_queue_depth", queue=q) == 0
                    and value(s, "tasktide_workers_online") == 1
                )
            )
            assert value(ran, "tasktide_queue_depth", queue=q) == 0
            assert value(ran, "tasktide_queue_oldest_wait_seconds", queue=q) == 0
            assert value(ran, "tasktide_tasks_started_total", queue=q) == 6  # five tasks, one retried
            assert value(ran, "tasktide_tasks_finished_total", queue=q, task="t.add", outcome="success") == 3
            assert value(ran, "tasktide_tasks_finished_total", queue=q, task="t.boom", outcome="failure") == 1
            assert value(ran, "tasktide_tasks_finished_total", queue=q, task="t.fails_once", outcome="success") == 1
            assert value(ran, "tasktide_task_retries_total", queue=q, task="t.fails_once") == 1
            assert value(ran, "tasktide_task_run_duration_seconds_count", queue=q) == 6
            assert value(ran, "tasktide_task_wait_duration_seconds_count", queue=q) == 6
            assert value(ran, "tasktide_workers_online") == 1

            # A task whose worker is lost: with TASKTIDE_MAX_DELIVERIES=1 it is dead-lettered.
            slow = client.submit("t.slow", [60], queue=q)
            eventually(lambda: slow.status() is TaskState.RUNNING, timeout=30, interval=0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            dead = poll.until(lambda s: value(s, "tasktide_tasks_dead_lettered_total", queue=q) == 1)
            assert value(dead, "tasktide_tasks_dead_lettered_total", queue=q, reason="worker_lost") == 1
            dead = poll.until(lambda s: value(s, "tasktide_queue_dead_letters", queue=q) == 1)
            assert value(dead, "tasktide_queue_dead_letters", queue=q) == 1
        finally:
            stop([worker])
    for metric in (
        "tasktide_task_wait_duration_seconds_bucket",
        "tasktide_task_run_duration_seconds_bucket",
        "tasktide_queue_leased",
    ):
        assert metric in names(poll.last)
    assert not any("task_id" in dict(labels) for _, labels in poll.last)

    # Through OpenTelemetry metrics too: the instruments arrive over OTLP under their OTel names.
    wanted = {"tasktide.tasks.submitted", "tasktide.task.run.duration", "tasktide.queue.depth"}
    receiver.wait_for(lambda _: wanted <= {m for _, m in receiver.metrics}, timeout=30)
    assert {("tasktide-dev", m) for m in wanted} <= receiver.metrics
