"""The Go and Node.js clients and workers given the comma lists of two replicas of each service
(tests.processes.Replicas: each replica its own process, on one Redis). A producer of the language
submits tasks one by one while replica 0 of every service is SIGKILLed mid-run (registry 0 holds
the worker's session), or SIGSTOPped and left stopped (a frozen process: its connections stay open,
and only the clients' keepalive pings find it out): every submission is confirmed (a call the dead
replica refused is made again), every result comes back right, and the worker, also of that
language, moves its session to registry 1 keeping the task it was running (run once, on its first
delivery)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasktide import Client, ClientSettings
from tasktide_services.common.settings import ServerSettings
from tests.go_build import GO_DIR, build_go
from tests.processes import SERVICES, TEST_SERVICE_ENV, Replicas, own_redis
from tests.test_node_client import NODE_DIR, _wait_started
from tests.test_node_client import node as node  # noqa: F401 - the fixture
from tests.test_replica_addresses import localhost_tls_list

COUNT = 40  # tasks the producer submits
KILL_AFTER = 10  # confirmed submissions before replica 0 of each service is killed

pytestmark = pytest.mark.timeout(300, func_only=True)


@pytest.fixture(scope="module")
def go_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """clients/go/internal/testworker and testproducer, built once."""
    out = tmp_path_factory.mktemp("go")
    return {name: build_go(f"./internal/{name}", out / name) for name in ("testworker", "testproducer")}


# Seconds of lease when replicas are frozen: longer than the keepalive takes to give up on the
# worker's registry (KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS), so the held task is kept.
FROZEN_LEASE = "30"


@contextlib.contextmanager
def two_replicas(tmp_path: Path, fault: str = "kill") -> Iterator[Replicas]:
    """Two replicas of each service, only registry 0 started: a worker started now holds its
    session there. Then `start_the_rest`."""
    logs = tmp_path / "logs"
    logs.mkdir()
    lease = {"TASKTIDE_LEASE_SECONDS": FROZEN_LEASE} if fault == "freeze" else {}
    with own_redis(tmp_path / "redis") as url:
        reps = Replicas({**TEST_SERVICE_ENV, **lease, "TASKTIDE_REDIS_URL": url}, logs, n=2)
        try:
            reps.start("registry", 0)
            yield reps
        finally:
            reps.close()


def start_the_rest(reps: Replicas) -> None:
    """Registry 1, then both replicas of the scheduler and of the results service: those reach both
    registries from their first call (a peer started after a channel was made is tried on the
    channel's reconnection backoff only)."""
    reps.start("registry", 1)
    for service in ("scheduler", "results"):
        reps.start(service, 0)
        reps.start(service, 1)


def worker_connected(reps: Replicas) -> None:
    """Waits until the one worker has its session (on registry 0, the only registry up)."""
    with Client(settings=ClientSettings.from_env(reps.env)) as client:
        until(lambda: len(client.workers()) == 1, "the worker connected (to registry 0)")


def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


class Lines:
    """What a process writes on its stdout (lines) and stderr, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout, proc.stderr
        self.readers = [
            threading.Thread(target=lambda: self.lines.extend(out), daemon=True),
            threading.Thread(target=lambda: self.errors.extend(err), daemon=True),
        ]
        for r in self.readers:
            r.start()

    def count(self, prefix: str) -> int:
        return sum(1 for line in list(self.lines) if line.startswith(prefix))

    def report(self) -> str:
        for r in self.readers:
            r.join(10)
        return "".join(self.lines) + "".join(self.errors)


def run_across_a_kill(
    reps: Replicas,
    worker: subprocess.Popen[str],
    producer_cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    fault: str = "kill",
) -> str:
    """With `worker` connected to registry 0 (and running a task): starts the producer, kills
    (`fault` "kill") or SIGSTOPs ("freeze") replica 0 of every service after KILL_AFTER confirmed
    submissions, and returns the producer's output once it ended (asserting it ended well). Frozen
    replicas are resumed once the producer is done."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    producer = subprocess.Popen(producer_cmd, cwd=cwd, env=env, text=True, **pipes)  # type: ignore[call-overload]
    try:
        out = Lines(producer)
        until(lambda: out.count("submitted ") >= KILL_AFTER or producer.poll() is not None, "submissions confirmed")
        assert producer.poll() is None, out.report()
        for service in SERVICES:
            reps.lose(service, 0, fault)
        started = time.monotonic()
        producer.wait(240)
        report = out.report()
        assert producer.returncode == 0, report
        assert f"done {COUNT}" in report, report
        assert out.count("submitted ") == COUNT, report
        assert out.count("submitted ") > KILL_AFTER
        assert worker.poll() is None, "the worker ended"
        replicas = (1,) if fault == "kill" else (0, 1)  # a frozen replica is still a process
        assert sorted(reps.alive()) == sorted((s, i) for s in SERVICES for i in replicas)
        done = next(line for line in report.splitlines() if line.startswith("done "))
        print(f"{fault}: {done}; the producer ended {time.monotonic() - started:.1f} s after the fault")
        return report
    finally:
        reps.thaw()
        if producer.poll() is None:
            producer.kill()
            producer.wait()


def producing(task: str) -> dict[str, str]:
    """The producer's settings: COUNT tasks named `task`, one every 50 ms."""
    return {"TASKTIDE_TEST_TASK": task, "TASKTIDE_TEST_COUNT": str(COUNT), "TASKTIDE_TEST_PACE_MS": "50"}


def clean_env(reps: Replicas, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTIDE_", "OTEL_"))}
    return {**env, **reps.env, **extra}


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_go_client_and_worker_carry_on_when_a_replica_of_each_service_dies(
    go_programs: dict[str, Path], tmp_path: Path, queue_name: str, fault: str
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with two_replicas(tmp_path, fault) as reps:
        env = clean_env(
            reps, TASKTIDE_QUEUES=queue_name, TASKTIDE_TEST_CONCURRENCY="2", TASKTIDE_TEST_MARKERS=str(markers)
        )
        log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed with the worker
        worker = subprocess.Popen([go_programs["testworker"]], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            worker_connected(reps)
            start_the_rest(reps)
            with Client(settings=ClientSettings.from_env(reps.env)) as client:
                held = client.submit("gotest.stubborn", [4.0], queue=queue_name)
                until(lambda: (markers / held.id).exists(), "the held task started")
                run_across_a_kill(
                    reps,
                    worker,
                    [str(go_programs["testproducer"])],
                    GO_DIR,
                    {**env, **producing("gotest.add")},
                    fault,
                )
                r = held.get(timeout=60)
                # kept across the move to registry 1: not delivered again, not run twice
                assert (r["delivery"], r["runs"]) == (1, 1), r
                assert "reconnecting" in (tmp_path / "worker.log").read_text()
        finally:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(30)
            log.close()


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_node_client_and_worker_carry_on_when_a_replica_of_each_service_dies(
    node: str, tmp_path: Path, queue_name: str, fault: str
) -> None:
    with two_replicas(tmp_path, fault) as reps:
        env = clean_env(reps, TASKTIDE_QUEUES=queue_name)
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        worker = subprocess.Popen([node, "examples/worker.js"], cwd=NODE_DIR, env=env, text=True, **pipes)  # type: ignore[call-overload]
        try:
            worker_connected(reps)
            start_the_rest(reps)
            with Client(settings=ClientSettings.from_env(reps.env)) as client:
                held = client.submit("node.sleep", [4.0], queue=queue_name)
                assert _wait_started(client, held.id, 30), "node.sleep did not start"
                run_across_a_kill(
                    reps,
                    worker,
                    [node, "test/fixtures/replica_producer.js"],
                    NODE_DIR,
                    {**env, **producing("node.add")},
                    fault,
                )
                assert held.get(timeout=60) == "slept 4 on attempt 0"
            worker.terminate()
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, out + err
            assert "reconnecting" in err, err
            # every task ran: the producer's and the held one. A task whose lease lapsed while the
            # worker moved to registry 1 (a slow reconnection on a loaded machine) may run again:
            # delivery is at least once; the held task above was kept (its first attempt's result).
            ran = re.search(r"stopped after (\d+) tasks", out)
            assert ran is not None and int(ran[1]) >= COUNT + 1, out + err
            if fault == "freeze":  # the lease outlasts the move: what the frozen registry never read is sent again
                assert int(ran[1]) == COUNT + 1, out + err
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.parametrize("language", ["go", "node"])
def test_a_list_of_names_over_tls_checks_the_certificate_against_the_first_name(
    language: str, request: pytest.FixtureRequest, server_settings: ServerSettings, tmp_path: Path, queue_name: str
) -> None:
    """The platform's certificate names `localhost` only (no IP address); a producer and a worker
    given `localhost:PORT,localhost:DOWN` (a replica down) over TLS check it against that name."""
    with localhost_tls_list(server_settings, tmp_path) as (address, ca):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTIDE_", "OTEL_"))} | {
            "TASKTIDE_ADDRESS": address,
            "TASKTIDE_TLS_CA": str(ca),
            "TASKTIDE_QUEUES": queue_name,
        }
        if language == "go":
            programs = request.getfixturevalue("go_programs")
            cwd, worker_cmd, producer_cmd = GO_DIR, [str(programs["testworker"])], [str(programs["testproducer"])]
            task = "gotest.add"
        else:
            node_path = request.getfixturevalue("node")
            cwd, worker_cmd = NODE_DIR, [node_path, "examples/worker.js"]
            producer_cmd, task = [node_path, "test/fixtures/replica_producer.js"], "node.add"
        worker = subprocess.Popen(worker_cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            produce = {**producing(task), "TASKTIDE_TEST_COUNT": "3"}
            done = subprocess.run(producer_cmd, cwd=cwd, env=env | produce, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "done 3" in done.stdout, done.stdout + done.stderr
        finally:
            worker.terminate()
            worker.wait(30)
