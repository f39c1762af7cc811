"""The fault suite: the platform run as in production (services/cluster.py), a fault applied
under load, and a line of figures per case (figures.py), gathered into reports/faults.md and
printed at the end of the run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from tasktide import Client, ClientSettings
from tasktide_services.common.redis_server import LocalRedis, start_redis
from tests.faults.cluster import Cluster, Workers, cluster
from tests.faults.figures import FIGURES, Figures, count, trace
from tests.faults.load import Load
from tests.faults.proxy import Proxy

RUNNING: list[pytest.Item] = []  # the test running now, whose report carries its figures


@pytest.fixture(autouse=True)
def _running(request: pytest.FixtureRequest) -> Iterator[None]:
    RUNNING[:] = [request.node]
    yield
    RUNNING.clear()


def record(fig: Figures) -> None:
    """Puts a case's figures in the running test's report; tests/conftest.py gathers them from the
    reports (in the controller, with xdist) into reports/faults.md."""
    if RUNNING:
        RUNNING[0].user_properties.append((FIGURES, asdict(fig)))


@dataclass
class Rig:
    """One case's platform: its Redis (`redis_url` as the services reach it, maybe through a
    proxy), services, workers, a client, and the folder the tasks leave their marker files in."""

    redis: LocalRedis
    cluster: Cluster
    workers: Workers
    client: Client
    markers: Path
    queue: str
    logs: Path
    proxy: Proxy | None = None

    def load(self, total: int, rate: float = 100.0, producers: int = 1) -> Load:
        return Load(self.client, self.queue, self.markers, total, rate, producers).start()

    def count(self, case: str, ids: list[str], fault_ended: float, **kw: object) -> Figures:
        fig = count(case, self.client, self.redis.url, ids, self.markers, fault_ended, **kw)  # type: ignore[arg-type]
        print(fig.line())
        record(fig)
        return fig

    def assert_held(self, fig: Figures) -> None:
        """Nothing lost, nothing recorded twice, every task run, and no task run that the producer
        was not answered with (a submission admitted twice under its idempotency key)."""
        assert fig.recorded_twice == 0
        lost = trace(self.redis.url, self.logs, fig.first_lost) if fig.first_lost else ""
        never_written = f"{fig.phantoms} of the lost are ids of tasks never written"
        assert (fig.lost, fig.run) == (0, fig.submitted), f"{never_written}; {lost}"
        assert fig.unconfirmed == 0, "tasks ran whose ids were never confirmed: a key admitted twice"

    def restart_redis(self, pause: float = 0.0) -> float:
        """Stop Redis, wait `pause` seconds, start it again on the same port and data (AOF);
        returns when it is back (time.monotonic())."""
        port, data = self.redis.port, self.redis.data_dir
        self.redis.stop()
        time.sleep(pause)
        self.redis = start_redis(data, port=port, appendonly=True)
        return time.monotonic()


@contextlib.contextmanager
def make_rig(
    tmp_path: Path,
    queue: str,
    *,
    appendonly: bool = False,
    n_workers: int = 2,
    env: dict[str, str] | None = None,
    redis_proxy: bool = False,
) -> Iterator[Rig]:
    """With `redis_proxy` the services reach Redis through a Proxy (rig.proxy) that can slow it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    server = start_redis(tmp_path / "redis", appendonly=appendonly)
    holder: list[LocalRedis] = [server]
    relay = Proxy(f"127.0.0.1:{server.port}").start() if redis_proxy else None
    redis_url = f"redis://{relay.address}/0" if relay else server.url
    try:
        with cluster({"TASKTIDE_REDIS_URL": redis_url, **(env or {})}, logs) as c:
            w = Workers(c.env, queue, logs)
            try:
                w.spawn(n_workers)
                with Client(settings=ClientSettings.from_env(c.env)) as client:
                    rig = Rig(server, c, w, client, markers, queue, logs, relay)
                    try:
                        yield rig
                    finally:
                        holder[0] = rig.redis
            finally:
                w.close()
    finally:
        if relay is not None:
            relay.stop()
        holder[0].stop()
