"""Two replicas of each service on one Redis, each its own process, reached by the comma list of
their addresses (round robin). Under load, one replica of each service is SIGKILLed in turn and not
restarted: producers, workers and the services themselves carry on with the other replica, nothing
confirmed is lost and no task keeps two results. A worker session and a Watch whose replica dies
move to the other one, the worker with its leases (no task runs twice), the Watch from its cursors
(no event missed or seen twice)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasktide import AsyncClient, Client, ClientSettings
from tasktide._settings import KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS
from tasktide.v1 import task_pb2
from tasktide_services.common.layout import is_final
from tasktide_services.common.redis_server import start_redis
from tests.faults.cluster import FAST, Workers
from tests.faults.conftest import record
from tests.faults.figures import Figures, count, runs
from tests.faults.load import Load
from tests.processes import SERVICES, Replicas


@dataclass
class Setup:
    replicas: Replicas
    redis_url: str
    markers: Path
    logs: Path

    def client(self) -> Client:
        return Client(settings=ClientSettings.from_env(self.replicas.env))

    def workers(self, queue: str, concurrency: int = 4) -> Workers:
        return Workers(self.replicas.env, queue, self.logs, concurrency)

    def figures(self, case: str, client: Client, ids: list[str], ended: float) -> Figures:
        fig = count(case, client, self.redis_url, ids, self.markers, ended)
        print(fig.line())
        record(fig)
        return fig


@contextlib.contextmanager
def setup(tmp_path: Path, **env: str) -> Iterator[Setup]:
    """Two replicas of each service, not started (start them with setup.replicas.start); `env`
    over the fault suite's settings."""
    logs, markers = tmp_path / "logs", tmp_path / "markers"
    logs.mkdir()
    markers.mkdir()
    server = start_redis(tmp_path / "redis", appendonly=False)
    reps = Replicas({**FAST, **env, "TASKTIDE_REDIS_URL": server.url}, logs, n=2)
    try:
        yield Setup(reps, server.url, markers, logs)
    finally:
        reps.close()
        server.stop()


class TimedLoad(Load):
    """The fault suite's producer, noting when each submission was confirmed."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.confirmed_at: list[float] = []

    def submit_one(self, i: int, until: float) -> str:
        task_id = super().submit_one(i, until)
        self.confirmed_at.append(time.monotonic())
        return task_id

    def longest_stall(self) -> float:
        """The longest wait between two confirmations (the producer's pause during a fault)."""
        t = self.confirmed_at
        return max((b - a for a, b in zip(t, t[1:], strict=False)), default=0.0)


CASES = {
    "kill": "SIGKILL of one of 2 replicas of each service in turn (not restarted), under load",
    "freeze": "SIGSTOP of one of 2 replicas of each service in turn (left stopped), under load",
}


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_one_replica_of_each_service_lost_in_turn_under_load(tmp_path: Path, queue_name: str, fault: str) -> None:
    """One replica of each service in turn SIGKILLed and not restarted ("kill"), or SIGSTOPped and
    left stopped ("freeze": a frozen process or host, its connections open and nothing answering,
    found out by unanswered keepalive pings and calls past their deadline). Producers, workers and
    the services go on with the other replica: nothing confirmed is lost and no result is kept
    twice; frozen, with the default lease, no body runs twice either."""
    frozen = fault == "freeze"
    with setup(tmp_path, **({"TASKTIDE_LEASE_SECONDS": "30"} if frozen else {})) as s:
        s.replicas.start_all()
        workers = s.workers(queue_name)
        try:
            workers.spawn(2)
            with s.client() as client:
                load = TimedLoad(client, queue_name, s.markers, *((450, 30.0) if frozen else (300, 60.0))).start()
                for service in SERVICES:
                    time.sleep(1.5)
                    s.replicas.lose(service, 0, fault)
                ended = time.monotonic()
                ids = load.join()
                fig = s.figures(CASES[fault], client, ids, ended)
                stall = load.longest_stall()
                print(f"producer: {load.refused} refused submissions retried, longest stall {stall:.2f} s")
            assert [p.poll() for p in workers.procs] == [None, None], "a worker ended"
            assert s.replicas.alive() == [(service, i) for service in SERVICES for i in ((0, 1) if frozen else (1,))]
        finally:
            s.replicas.thaw()
            workers.close()
    assert fig.recorded_twice == 0
    assert (fig.lost, fig.run) == (0, fig.submitted)
    if frozen:
        assert fig.run_twice == 0, f"bodies run more than once: {fig.run_twice}"
        # A frozen peer is given up within a keepalive period and its timeout, or a call's deadline.
        assert stall < (KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS) / 1000 + 5, f"the producer waited {stall:.1f} s"


LONG = 5.0  # seconds each task runs: longer than the lease (3 s), so only heartbeats keep it


def test_a_worker_session_moves_to_another_registry_with_its_leases(tmp_path: Path, queue_name: str) -> None:
    """The worker's session is on registry 0 (the only one up when it connected); registry 0 is
    killed while the worker runs tasks longer than the lease and holds others prefetched. The
    session reopens on registry 1, whose heartbeats keep the leases: every body runs once."""
    with setup(tmp_path) as s:
        for service in ("scheduler", "results"):
            s.replicas.start(service, 0)
            s.replicas.start(service, 1)
        s.replicas.start("registry", 0)
        workers = s.workers(queue_name, concurrency=2)
        try:
            with s.client() as client:
                (worker,) = workers.spawn(1)
                _until(lambda: len(client.workers()) == 1, "the worker connected")
                s.replicas.start("registry", 1)
                ids = [client.submit("t.marked", [str(s.markers), LONG], queue=queue_name).id for _ in range(4)]
                _until(lambda: len(list(s.markers.iterdir())) == 2, "two tasks started")
                s.replicas.kill("registry", 0)
                ended = time.monotonic()
                fig = s.figures(
                    "SIGKILL of the registry replica holding a worker's session; tasks longer than the lease",
                    client,
                    ids,
                    ended,
                )
                assert worker.poll() is None
        finally:
            workers.close()
    assert (fig.lost, fig.run, fig.recorded_twice) == (0, 4, 0)
    assert fig.run_twice == 0, f"bodies run more than once: {dict(runs(s.markers))}"


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_a_watch_moves_to_another_results_replica_from_its_cursors(tmp_path: Path, queue_name: str, kind: str) -> None:
    """A Watch opened on results 0 (the only one up then) goes on, through results 1, after
    results 0 is killed mid-run: every event of every task once, in order, ending with its final one.
    Client.watch and AsyncClient.watch alike."""
    with setup(tmp_path) as s:
        for service in ("scheduler", "registry"):
            s.replicas.start(service, 0)
            s.replicas.start(service, 1)
        s.replicas.start("results", 0)
        workers = s.workers(queue_name, concurrency=2)
        try:
            with s.client() as client:
                ids = [client.submit("t.marked", [str(s.markers), 0.3], queue=queue_name).id for _ in range(40)]
                seen: list[task_pb2.TaskEvent] = []
                failure: list[BaseException] = []

                async def watch_async() -> None:
                    async with AsyncClient(settings=client.settings) as aclient:
                        async for ev in aclient.watch(ids):
                            seen.append(ev)

                def watch() -> None:
                    try:
                        if kind == "async":
                            asyncio.run(watch_async())
                        else:
                            for ev in client.watch(ids):
                                seen.append(ev)
                    except BaseException as exc:  # noqa: BLE001 - reported by the test
                        failure.append(exc)

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                workers.spawn(1)
                _until(lambda: len(seen) > 0, "the first events were seen (through results 0)")
                s.replicas.start("results", 1)
                s.replicas.kill("results", 0)
                finals_before = sum(1 for e in seen if is_final(e.state))
                watcher.join(60)
                assert not watcher.is_alive(), "the watch did not end"
                assert not failure, failure
                assert finals_before < len(ids), "every task ended before results 0 was killed"
        finally:
            workers.close()
    by_task: dict[str, list[task_pb2.TaskEvent]] = {t: [] for t in ids}
    for ev in seen:
        by_task[ev.task_id].append(ev)
    for t, evs in by_task.items():
        cursors = [int(e.cursor) for e in evs]
        assert cursors == list(range(1, len(evs) + 1)), f"{t}: events {cursors} (a gap or a repeat)"
        assert is_final(evs[-1].state) and evs[-1].state == task_pb2.TASK_STATE_SUCCEEDED


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
