"""Running the services as separate processes (`tasktide scheduler|registry|results`), for tests."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tasktide_services.common.redis_server import start_redis
from tasktide_services.testing import TEST_LEASE_SECONDS, PlatformThread, register_services, spawn

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("scheduler", "registry", "results")


def process_gone(pid: int) -> bool:
    """The process has ended: reaped, or a zombie. It may be reaped while /proc is read: its
    folder is then gone (FileNotFoundError) or the read of its stat fails (ProcessLookupError)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1].startswith("Z")  # a zombie runs nothing
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_serving(address: str, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    with grpc.insecure_channel(address) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"{proc.args!r} did not start serving on {address} (exit code {proc.poll()})") from None


def stop(procs: list[subprocess.Popen[str]], timeout: float = 20.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def separate_services(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The three services, each its own process; yields the environment a client or worker needs
    to reach them. The scheduler and the registry call each other, so each must know the other's
    address when it starts: they listen on unix sockets in a folder of their own (a TCP port
    chosen for a child beforehand could be taken by another process meanwhile)."""
    folder = tempfile.mkdtemp(prefix="tt-")  # short: a socket path has a length limit
    addresses = {name: f"unix:{folder}/{name}.sock" for name in SERVICES}
    common = {
        **env,
        "TASKTIDE_SCHEDULER_ADDRESS": addresses["scheduler"],
        "TASKTIDE_REGISTRY_ADDRESS": addresses["registry"],
        "TASKTIDE_RESULTS_ADDRESS": addresses["results"],
        "TASKTIDE_ADDRESS": addresses["scheduler"],
    }
    procs = [spawn(name, env={**common, "TASKTIDE_LISTEN": addresses[name]}, cwd=ROOT) for name in SERVICES]
    try:
        for name, proc in zip(SERVICES, procs, strict=True):
            wait_serving(addresses[name], proc)
        yield common
    finally:
        stop(procs)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def own_redis(folder: Path) -> Iterator[str]:
    """A Redis server of its own (URL), so no other platform of the test session acts as a replica
    of the services under test (a pump or reaper sharing the keys would take part in their work)."""
    server = start_redis(folder, appendonly=False)
    try:
        yield server.url
    finally:
        server.stop()


# The settings of the `server_settings` fixture, for services in processes of their own.
TEST_SERVICE_ENV = {
    "TASKTIDE_LEASE_SECONDS": str(TEST_LEASE_SECONDS),
    "TASKTIDE_TICK_SECONDS": "0.05",
    "TASKTIDE_MAX_DELIVERIES": "3",
    "TASKTIDE_CANCEL_GRACE_SECONDS": "1.0",
}


@dataclass
class SplitPlatform:
    """The three services as separate processes calling each other over gRPC. `address` is the
    scheduler's; clients and workers given it find the others (tasktide_services.testing
    register_services), so a test written for the `platform` fixture runs unchanged on it."""

    address: str
    env: dict[str, str]

    @property
    def registry_address(self) -> str:
        return self.env["TASKTIDE_REGISTRY_ADDRESS"]

    @property
    def results_address(self) -> str:
        return self.env["TASKTIDE_RESULTS_ADDRESS"]


@contextlib.contextmanager
def split_platform(folder: Path, extra_env: dict[str, str] | None = None) -> Iterator[SplitPlatform]:
    with own_redis(folder) as redis_url, session_split_platform(redis_url, extra_env) as platform:
        yield platform


@contextlib.contextmanager
def session_split_platform(redis_url: str, extra_env: dict[str, str] | None = None) -> Iterator[SplitPlatform]:
    """The split arrangement on a given Redis (for the session, its Redis, which tests also read)."""
    with separate_services({"TASKTIDE_REDIS_URL": redis_url, **TEST_SERVICE_ENV, **(extra_env or {})}) as env:
        platform = SplitPlatform(env["TASKTIDE_ADDRESS"], env)
        register_services(platform.address, env)
        try:
            yield platform
        finally:
            register_services(platform.address, {})


def platforms(*kinds: str) -> Any:
    """A `platform` fixture for a test module, parametrized over arrangements: "one" (the session's
    services in one process, the plugin's `platform`) and "split" (each service its own process,
    started once per module). Use: `platform = platforms("one", "split")` at module level."""

    @pytest.fixture(scope="module", params=kinds)
    def platform(
        request: pytest.FixtureRequest, platform: PlatformThread, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[object]:
        # `platform` here is the plugin's (the session's services in one process): a fixture that
        # overrides another may ask for it by the same name.
        if request.param == "one":
            yield platform
            return
        with split_platform(tmp_path_factory.mktemp("split-redis")) as split:
            yield split

    return platform


class Replicas:
    """`n` replicas of each service, each its own process on a unix socket in a folder of its own.
    Clients, workers and the services themselves reach a service by the comma list of its
    replicas' addresses (`env`), balanced round robin: a replica that dies is left out until it is
    back. `kill` and `start` take one replica (service name, index)."""

    def __init__(self, env: dict[str, str], logs: Path, n: int = 2, services: tuple[str, ...] = SERVICES) -> None:
        self.folder = tempfile.mkdtemp(prefix="tt-")  # short: a socket path has a length limit
        self.logs, self.services, self.n = logs, services, n
        self.addresses = {s: [f"unix:{self.folder}/{s}{i}.sock" for i in range(n)] for s in services}
        lists = {s: ",".join(a) for s, a in self.addresses.items()}
        self.env = {**env, **{f"TASKTIDE_{s.upper()}_ADDRESS": lists[s] for s in services}}
        self.env["TASKTIDE_ADDRESS"] = lists.get("scheduler", env.get("TASKTIDE_ADDRESS", ""))
        self.procs: dict[tuple[str, int], subprocess.Popen[str]] = {}
        self.frozen: list[subprocess.Popen[str]] = []

    def start(self, service: str, i: int) -> None:
        log = (self.logs / f"{service}{i}.log").open("a")
        address = self.addresses[service][i]
        proc = spawn(service, env={**self.env, "TASKTIDE_LISTEN": address}, cwd=ROOT, stdout=log, stderr=log)
        self.procs[(service, i)] = proc
        wait_serving(address, proc)

    def start_all(self) -> None:
        for service in self.services:
            for i in range(self.n):
                self.start(service, i)

    def kill(self, service: str, i: int) -> None:
        """SIGKILL of one replica: no drain, no goodbye, as a crash or an OOM kill would."""
        proc = self.procs.pop((service, i))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        Path(self.addresses[service][i].removeprefix("unix:")).unlink(missing_ok=True)

    def freeze(self, service: str, i: int) -> None:
        """SIGSTOP of one replica (a frozen process or host: its connections stay open, nothing
        answers), until `thaw`."""
        proc = self.procs[(service, i)]
        proc.send_signal(signal.SIGSTOP)
        self.frozen.append(proc)

    def lose(self, service: str, i: int, fault: str) -> None:
        """One replica lost as `fault` says: "kill" (`kill`) or "freeze" (`freeze`)."""
        if fault == "kill":
            self.kill(service, i)
        else:
            self.freeze(service, i)

    def thaw(self) -> None:
        """SIGCONT of every frozen replica."""
        for proc in self.frozen:
            proc.send_signal(signal.SIGCONT)
        self.frozen.clear()

    def alive(self) -> list[tuple[str, int]]:
        return [k for k, p in self.procs.items() if p.poll() is None]

    def close(self) -> None:
        self.thaw()
        stop(list(self.procs.values()))
        self.procs.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def replicas(env: dict[str, str], logs: Path, n: int = 2, services: tuple[str, ...] = SERVICES) -> Iterator[Replicas]:
    """`n` replicas of each of `services`, started and serving (see Replicas)."""
    r = Replicas(env, logs, n, services)
    try:
        r.start_all()
        yield r
    finally:
        r.close()


@contextlib.contextmanager
def lone_results(folder: Path) -> Iterator[Replicas]:
    """A results service alone in a process of its own, on a Redis of its own (`own_redis`), run as
    `replicas` runs one: its address is `.addresses["results"][0]`; `.kill("results", 0)` then
    `.start("results", 0)` restarts it on the same address."""
    with own_redis(folder / "redis") as url, replicas({"TASKTIDE_REDIS_URL": url}, folder, 1, ("results",)) as r:
        yield r


def redis_command(redis_url: str, *args: str) -> object:
    """One Redis command on a connection of its own, through the services' `connect`, so a plain or
    a Cluster URL works as the services read it."""
    import asyncio

    from tasktide_services.common.redis_conn import connect

    async def call() -> object:
        r = await connect(redis_url)
        try:
            return await r.execute_command(*args)
        finally:
            await r.aclose()

    return asyncio.run(call())


async def commands_served(redis: Any) -> int:
    """Commands Redis has run (INFO commandstats; those of a script count too), but INFO and SCRIPT
    LOAD: read before and after a step, what the step cost."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_script|load"))
