"""Pytest fixtures that start real servers: a Redis server and the tasktide services on loopback.

Use with `pytest_plugins = ["tasktide_services.testing"]`. Nothing here fakes Redis or gRPC.

Fixtures:
    redis_server   a real redis-server in a temporary folder (session)
    platform       scheduler, registry and results in one gRPC server on a free port (session)
    client         a tasktide.Client for `platform`
    queue_name     a fresh queue name, so tests do not see each other's tasks
Helpers:
    run_worker_thread(app, address, queues=...)   a Worker in a background thread (context manager)
    spawn(*args, env=...)                          `python -m tasktide.cli ARGS` as a subprocess
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from tasktide import App, Client, ClientSettings
from tasktide.worker import Worker, WorkerConfig
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.redis_server import LocalRedis, start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.server import start

TEST_LEASE_SECONDS = 3.0


@dataclass
class PlatformThread:
    """The three services in one gRPC server, on an event loop in a background thread."""

    settings: ServerSettings
    address: str = ""

    def __post_init__(self) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tasktide-platform", daemon=True)

    def start(self) -> PlatformThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        redis = await connect(self.settings.redis_url)
        running = await start(self.settings, redis)
        self.address = f"127.0.0.1:{running.port}"
        self._ready.set()
        await self._stop.wait()
        await running.stop(grace=1.0)
        await redis.aclose()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


@contextlib.contextmanager
def run_worker_thread(app: App, address: str, **config: object) -> Iterator[Worker]:
    """Run a Worker for `app` in a background thread until the block ends (then drain)."""
    settings = ClientSettings.from_env({}, address=address)
    worker_box: list[Worker] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    started = threading.Event()

    async def main() -> None:
        w = Worker(app, WorkerConfig(**config), settings)  # type: ignore[arg-type]
        worker_box.append(w)
        loop_box.append(asyncio.get_running_loop())
        started.set()
        await w.run()

    t = threading.Thread(target=lambda: asyncio.run(main()), name="tasktide-worker", daemon=True)
    t.start()
    started.wait(10)
    try:
        yield worker_box[0]
    finally:
        loop_box[0].call_soon_threadsafe(worker_box[0].request_stop)
        t.join(20)


def spawn(
    *args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None, **kw: object
) -> subprocess.Popen[str]:
    """Start `python -m tasktide.cli ARGS` with the test's environment plus `env`."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "tasktide.cli", *args], env=full_env, cwd=cwd, text=True, **kw
    )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"), appendonly=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_settings(redis_server: LocalRedis) -> ServerSettings:
    return replace(
        ServerSettings(),
        address="127.0.0.1:0",
        redis_url=redis_server.url,
        lease_seconds=TEST_LEASE_SECONDS,
        tick_seconds=0.05,
        max_deliveries=3,
        cancel_grace_seconds=1.0,
    )


@pytest.fixture(scope="session")
def platform(server_settings: ServerSettings) -> Iterator[PlatformThread]:
    p = PlatformThread(server_settings).start()
    yield p
    p.stop()


@pytest.fixture()
def client(platform: PlatformThread) -> Iterator[Client]:
    with Client(settings=ClientSettings.from_env({}, address=platform.address)) as c:
        yield c


@pytest.fixture()
def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"
