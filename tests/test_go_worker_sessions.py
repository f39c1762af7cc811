"""The Go worker (clients/go) across a restart of the registry under it: the services run as
separate processes and the registry is killed and started again while a Go worker runs a task."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasktide import Client, ClientSettings, TaskState
from tasktide_services.testing import spawn
from tests.conftest import ROOT
from tests.go_build import build_go, go_env
from tests.processes import SERVICES, own_redis, stop, wait_serving


@pytest.fixture(scope="module")
def go_test_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/go/internal/testworker, built once."""
    return build_go("./internal/testworker", tmp_path_factory.mktemp("go") / "testworker")


class Services:
    """scheduler, registry and results, each a process; the registry can be killed and restarted."""

    def __init__(self, env: dict[str, str]) -> None:
        # Unix sockets: each address is known before its service starts (the services call each other).
        folder = tempfile.mkdtemp(prefix="tt-")  # short: a socket path has a length limit
        self.addresses = {name: f"unix:{folder}/{name}.sock" for name in SERVICES}
        self.env = {
            **env,
            "TASKTIDE_SCHEDULER_ADDRESS": self.addresses["scheduler"],
            "TASKTIDE_REGISTRY_ADDRESS": self.addresses["registry"],
            "TASKTIDE_RESULTS_ADDRESS": self.addresses["results"],
            "TASKTIDE_ADDRESS": self.addresses["scheduler"],
        }
        self.procs = {name: self._start(name) for name in SERVICES}

    def _start(self, name: str) -> subprocess.Popen[str]:
        proc = spawn(name, env={**self.env, "TASKTIDE_LISTEN": self.addresses[name]}, cwd=ROOT)
        wait_serving(self.addresses[name], proc)
        return proc

    def kill_and_restart_registry(self) -> None:
        old = self.procs["registry"]
        old.send_signal(signal.SIGKILL)  # a crash: no drain is sent to the workers
        old.wait(20)
        self.procs["registry"] = self._start("registry")

    def stop(self) -> None:
        stop(list(self.procs.values()))


@pytest.fixture()
def services(tmp_path: Path) -> Iterator[Services]:
    with own_redis(tmp_path / "redis") as redis_url:
        s = Services({"TASKTIDE_REDIS_URL": redis_url, "TASKTIDE_LEASE_SECONDS": "15", "TASKTIDE_TICK_SECONDS": "0.05"})
        try:
            yield s
        finally:
            s.stop()


def wait_until(check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


def test_a_registry_restart_neither_reruns_nor_overlaps_tasks_of_a_go_worker(
    services: Services, go_test_worker: Path, queue_name: str, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = go_env(
        **services.env, TASKTIDE_QUEUES=queue_name, TASKTIDE_TEST_CONCURRENCY="1", TASKTIDE_TEST_MARKERS=str(markers)
    )
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed with the worker
    worker = subprocess.Popen([go_test_worker], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        with Client(settings=ClientSettings.from_env(services.env)) as client:
            # One slot: the long task runs (ignoring its context), the two short ones wait in the
            # worker's prefetch when the registry dies.
            long = client.submit("gotest.stubborn", [11.0], queue=queue_name)
            wait_until(lambda: (markers / long.id).exists(), "the long task started")
            short = [client.submit("gotest.stubborn", [0.2], queue=queue_name) for _ in range(2)]
            wait_until(lambda: all(client.status(h.id) is TaskState.RUNNING for h in short), "the short tasks assigned")
            services.kill_and_restart_registry()
            results = {h.id: h.get(timeout=90) for h in [long, *short]}
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        for task_id, r in results.items():
            # Before: the lost session cancelled the long task, dropped its outcome and the
            # prefetched tasks; their leases expired and they ran again, on a new session given
            # full credit while the long task was still running.
            assert r["delivery"] == 1 and r["runs"] == 1, (task_id, results)
            assert r["most_at_once"] == 1, results
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        log.close()
