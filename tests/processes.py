"""Running the services as separate processes (`tasktide scheduler|registry|results`), for tests."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc

from tasktide_services.common.redis_server import start_redis
from tasktide_services.testing import spawn

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("scheduler", "registry", "results")


def wait_serving(address: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    with grpc.insecure_channel(address) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"{proc.args} did not start serving on {address} (exit code {proc.poll()})") from None


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
