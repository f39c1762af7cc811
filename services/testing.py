"""Pytest fixtures that start real servers: a Redis server and the tasktide services on loopback.

Use with `pytest_plugins = ["tasktide_services.testing"]`. Nothing here fakes Redis or gRPC.

Fixtures:
    redis_server   a real redis-server in a temporary folder (session)
    redis_cluster  a real Redis Cluster: three primaries with a replica each, on loopback (session)
    platform       scheduler, registry and results in one gRPC server on a free port (session); on
                   `redis_cluster` instead of `redis_server` when pytest runs with --redis-cluster
    client         a tasktide.Client for `platform`
    queue_name     a fresh queue name, so tests do not see each other's tasks
    thread_errors  fails the test when an exception escaped any thread it started (autouse)
Helpers:
    eventually(check, timeout=..., interval=...)   poll until `check()` is truthy; returns its value
    run_worker_thread(app, address, queues=...)   a Worker in a background thread (context manager);
                                                  an exception that ended the worker is re-raised
    client_settings(address, env=None)             ClientSettings for a platform's address: with the
                                                  per-service addresses when its services run apart
                                                  (and the TASKTIDE_* settings of `env`)
    service_env(address)                           those per-service addresses (TASKTIDE_*_ADDRESS), for
                                                  a process started with an environment of its own
    register_services(address, env)                 names the per-service addresses (TASKTIDE_*_ADDRESS)
                                                  of a platform whose services run as separate processes
    spawn(*args, env=...)                          `python -m tasktide.cli ARGS` as a subprocess
    spawn_listening(*args, env=...)                a server command on port 0; returns it with the
                                                  address it reported ("... listening on HOST:PORT")
    unreachable_address()                          an address where nothing listens (context manager)
    blocking_redis(url)                            a blocking redis-py client for a platform's Redis URL:
                                                  redis-py's cluster client for a redis+cluster:// URL
Hooks:
    under CI=true a skipped test is reported as a failure: nothing passes by not running.
    --redis-cluster: the platform fixtures use `redis_cluster`; tests that read or write the one
    Redis themselves (those asking for `redis_server` or a fixture in ONE_REDIS_FIXTURES) are
    deselected, as are tests marked `one_redis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Self, TypeVar

import pytest

from tasktide import App, Client, ClientSettings
from tasktide.worker import Worker, WorkerConfig
from tasktide_services.common.redis_cluster_url import is_cluster_url, parse_cluster_url
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.redis_server import LocalCluster, LocalRedis, start_cluster, start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.server import start

TEST_LEASE_SECONDS = 3.0
CLUSTER_OPTION = "--redis-cluster"
# Fixtures that hand a test the one Redis server itself.
ONE_REDIS_FIXTURES = frozenset({"redis_server"})

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Call `check()` until it returns a truthy value, and return that value.

    An AssertionError raised by `check` counts as "not yet"; after `timeout` seconds the last one
    is raised (or an AssertionError naming `what` and the last value). The timeout is a limit on
    waiting for a state, never an assertion about how fast the platform is.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or 'condition'} not reached within {timeout} s (last value {value!r})")
        time.sleep(interval)


# Platforms whose services run apart (tests/processes.py): address -> the TASKTIDE_*_ADDRESS variables
# a client or worker needs to reach each service. A platform in one process needs none.
_SERVICE_ENVS: dict[str, dict[str, str]] = {}


def register_services(address: str, env: dict[str, str]) -> None:
    """Clients and workers given `address` (run_worker_thread, spawn, the `client` fixture) also
    get these per-service addresses; an empty env forgets them."""
    if env:
        _SERVICE_ENVS[address] = {k: v for k, v in env.items() if k.endswith("_ADDRESS")}
    else:
        _SERVICE_ENVS.pop(address, None)


def service_env(address: str) -> dict[str, str]:
    """The TASKTIDE_*_ADDRESS variables that reach each service of the platform at `address`
    (TASKTIDE_ADDRESS alone when its services share one server), for a Go, Node or dashboard
    process started with an environment of its own."""
    return {"TASKTIDE_ADDRESS": address, **_SERVICE_ENVS.get(address, {})}


def client_settings(address: str, env: dict[str, str] | None = None) -> ClientSettings:
    return ClientSettings.from_env({**_SERVICE_ENVS.get(address, {}), **(env or {})}, address=address)


class LoopThread:
    """An event loop in a daemon thread that runs `serve()` until `stop()`. `serve` calls `started()`
    once it serves, then awaits `stopped()`; an exception raised before `started()` is raised by
    `start()` in the starting thread."""

    def __init__(self, name: str) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    async def serve(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def __enter__(self) -> Self:
        """`with PlatformThread(settings) as p:` starts it, and stops it when the block ends."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs `coro` on the thread's loop and returns its result (from any other thread)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    def started(self) -> None:
        self._ready.set()

    async def stopped(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.serve()


@dataclass
class PlatformThread(LoopThread):
    """The three services in one gRPC server, on an event loop in a background thread."""

    settings: ServerSettings
    address: str = ""

    def __post_init__(self) -> None:
        LoopThread.__init__(self, "tasktide-platform")

    @property
    def registry_address(self) -> str:
        return self.address  # all three services share the one server

    @property
    def results_address(self) -> str:
        return self.address

    async def serve(self) -> None:
        redis = await connect(self.settings.redis_url)
        running = await start(self.settings, redis)
        self.address = f"127.0.0.1:{running.port}"
        self.started()
        await self.stopped()
        await running.stop(grace=1.0)
        await redis.aclose()


@contextlib.contextmanager
def run_worker_thread(app: App, address: str, **config: object) -> Iterator[Worker]:
    """Run a Worker for `app` in a background thread until the block ends (then drain).

    An exception that ended the worker (at start or while running) is raised at the end of the
    block, so a failure inside the worker reaches the test."""
    settings = client_settings(address)
    worker_box: list[Worker] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    errors: list[BaseException] = []
    started = threading.Event()

    async def main() -> None:
        w = Worker(app, WorkerConfig(**config), settings)  # type: ignore[arg-type]
        worker_box.append(w)
        loop_box.append(asyncio.get_running_loop())
        started.set()
        await w.run()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)
        finally:
            started.set()

    t = threading.Thread(target=run, name="tasktide-worker", daemon=True)
    t.start()
    started.wait(10)
    if not worker_box:
        t.join(10)
        raise RuntimeError("the worker thread did not start") from (errors[0] if errors else None)
    try:
        yield worker_box[0]
    finally:
        if t.is_alive():  # not ended already (a Drain from the registry ends it)
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                loop_box[0].call_soon_threadsafe(worker_box[0].request_stop)
        t.join(20)
    if t.is_alive():
        raise RuntimeError("the worker thread did not stop within 20 s of request_stop")
    if errors:
        raise errors[0]


def spawn(
    *args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None, **kw: object
) -> subprocess.Popen[str]:
    """Start `python -m tasktide.cli ARGS` with the test's environment plus `env` (plus the
    per-service addresses of the platform `env` names in TASKTIDE_ADDRESS, if it has them)."""
    services = _SERVICE_ENVS.get((env or {}).get("TASKTIDE_ADDRESS", ""), {})
    full_env = {**os.environ, **services, **(env or {})}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "tasktide.cli", *args], env=full_env, cwd=cwd, text=True, **kw
    )


# "tasktide dev listening on HOST:PORT", "tasktide dashboard on http://HOST:PORT/ ..." (and not the
# "tasktide metrics on http://..." line that may come first).
_LISTENING = re.compile(r"(?:listening on |dashboard on http://)([^\s/]+:\d+)")


class Listening(NamedTuple):
    process: subprocess.Popen[str]
    address: str  # HOST:PORT the server reported
    banner: str  # what it printed up to and including that line (the metrics endpoint, for one)


def spawn_listening(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    listen: str = "--address",
    timeout: float = 60.0,
) -> Listening:
    """Start a server command (`dev`, `scheduler`, `registry`, `results`; `dashboard` with
    listen="--listen") on port 0 and return the process with the address it reports ("tasktide
    NAME listening on HOST:PORT", "tasktide dashboard on http://HOST:PORT/"). Its later stdout goes
    to this process's stdout. The `listen` option may be given in `args` to choose the host; the
    default is 127.0.0.1:0."""
    if listen not in args:
        args = (*args, listen, "127.0.0.1:0")
    proc = spawn(*args, env=env, cwd=cwd, stdout=subprocess.PIPE)
    out = proc.stdout
    assert out is not None
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in out:
            if not found.is_set():
                lines.append(line)
                if _LISTENING.search(line):
                    found.set()
            elif sys.__stdout__ is not None:  # the process's own stdout: pytest's capture may be gone
                with contextlib.suppress(ValueError, OSError):
                    sys.__stdout__.write(line)

    threading.Thread(target=read, name=f"stdout-{args[0]}", daemon=True).start()
    eventually(lambda: found.is_set() or proc.poll() is not None, timeout=timeout, what=f"{args[0]} to listen")
    if not found.is_set():
        proc.wait(5)
        raise RuntimeError(f"tasktide {args[0]} exited ({proc.returncode}) before listening: {''.join(lines)}")
    match = _LISTENING.search(lines[-1])
    assert match is not None
    return Listening(proc, match.group(1), "".join(lines))


def blocking_redis(url: str) -> Any:
    """A blocking client for `url` (redis.Redis, or redis.cluster.RedisCluster for a cluster URL),
    for tests that read or write the platform's keys themselves."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    if not is_cluster_url(url):
        return redis.Redis.from_url(url)
    options = parse_cluster_url(url)
    nodes = [ClusterNode(h, p) for h, p in options.seeds]
    return RedisCluster(startup_nodes=nodes, password=options.password or None, username=options.username or None)


@contextlib.contextmanager
def unreachable_address() -> Iterator[str]:
    """A loopback address where nothing listens, for as long as the block runs: the port is bound
    by this process and never listened on, so a connection is refused and no other server can take
    the port meanwhile."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport | None:
    """Under CI=true a skip is a failure: a test that did not run proves nothing."""
    if os.environ.get("CI") != "true" or call.excinfo is None or not call.excinfo.errisinstance(pytest.skip.Exception):
        return None
    if item.get_closest_marker("xfail") is not None:
        return None
    report = pytest.TestReport.from_item_and_call(item, call)
    report.outcome = "failed"
    reason = call.excinfo.value.msg if hasattr(call.excinfo.value, "msg") else str(call.excinfo.value)
    report.longrepr = f"skipped under CI=true, which runs every test: {reason}"
    return report


@pytest.fixture(autouse=True)
def thread_errors() -> Iterator[list[threading.ExceptHookArgs]]:
    """Fails the test when an exception escaped a thread while it ran (an assertion in a callback
    or a stream reader thread would otherwise only be printed)."""
    seen: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        seen.append(args)
        previous(args)

    threading.excepthook = hook
    try:
        yield seen
    finally:
        threading.excepthook = previous
    if seen:
        first = seen[0]
        where = first.thread.name if first.thread is not None else "a thread"
        raise AssertionError(f"{len(seen)} exception(s) escaped a thread; first in {where}") from first.exc_value


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"), appendonly=False)
    yield server
    server.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        CLUSTER_OPTION,
        action="store_true",
        help="run the platform fixtures on a Redis Cluster (three primaries, a replica each) instead of one Redis",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "one_redis: the test needs one Redis server (deselected by --redis-cluster)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under --redis-cluster, deselect the tests that use the one Redis themselves (module doc)."""
    if not config.getoption(CLUSTER_OPTION):
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        one = ONE_REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        (dropped if one or item.get_closest_marker("one_redis") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def server_settings(request: pytest.FixtureRequest) -> ServerSettings:
    if request.config.getoption(CLUSTER_OPTION):
        url = request.getfixturevalue("redis_cluster").url
    else:
        url = request.getfixturevalue("redis_server").url
    return replace(
        ServerSettings(),
        address="127.0.0.1:0",
        redis_url=url,
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
    with Client(settings=client_settings(platform.address)) as c:
        yield c


@pytest.fixture()
def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"
