"""Address settings that list several replicas: a client, an async client and a worker given a
list in which one replica is down use the one that is up; a service given a list it cannot use, or
asked to listen on a list, refuses to start with a clear message (exit code 2)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import tasktide
from tasktide_services.common.settings import ServerSettings
from tasktide_services.common.tls import TlsSettings
from tasktide_services.testing import PlatformThread, service_env, spawn, unreachable_address
from tests.processes import ROOT, own_redis
from tests.test_tls import _dev_certs


@contextlib.contextmanager
def replica_down(platform: PlatformThread) -> Iterator[str]:
    """An address of the platform's kind where nothing listens: a loopback port, or a unix socket
    path beside the platform's own sockets when its services run apart (a list may not mix them)."""
    if platform.address.startswith("unix:"):
        yield f"unix:{Path(platform.address.removeprefix('unix:')).parent / 'down.sock'}"
        return
    with unreachable_address() as down:
        yield down


def test_a_client_and_a_worker_use_the_replica_that_is_up(platform: PlatformThread, queue_name: str) -> None:
    with replica_down(platform) as down:
        # each service's address (one for all, or each its own) listed after a replica that is down
        env = {k: f"{down},{v}" for k, v in service_env(platform.address).items()}
        settings = tasktide.ClientSettings.from_env(env)
        worker = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, env=env, cwd=ROOT)
        try:
            with tasktide.Client(settings=settings) as client:
                handles = [client.submit("t.add", [i, 1], queue=queue_name) for i in range(20)]
                assert [h.get(timeout=60) for h in handles] == [i + 1 for i in range(20)]

            async def via_async() -> int:
                async with tasktide.AsyncClient(settings=settings) as client:
                    handle = await client.submit("t.add", [20, 22], queue=queue_name)
                    return int(await handle.get(timeout=60))

            assert asyncio.run(via_async()) == 42
        finally:
            worker.terminate()
            worker.wait(20)


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKTIDE_")}
    return subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "scheduler"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_a_service_refuses_a_peer_list_it_cannot_use(tmp_path: Path) -> None:
    with own_redis(tmp_path) as url:
        res = _serve(
            {
                "TASKTIDE_REDIS_URL": url,
                "TASKTIDE_LISTEN": f"unix:{tmp_path}/s.sock",
                "TASKTIDE_REGISTRY_ADDRESS": "10.0.0.5:1,[fd00::6]:1",
            }
        )
    assert res.returncode == 2, res.stderr
    assert "IPv4 and IPv6 replicas cannot share a list" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_service_refuses_to_listen_on_a_list(tmp_path: Path) -> None:
    with own_redis(tmp_path) as url:
        res = _serve({"TASKTIDE_REDIS_URL": url, "TASKTIDE_ADDRESS": "127.0.0.1:7001,127.0.0.1:7002"})
    assert res.returncode == 2, res.stderr
    assert "set TASKTIDE_LISTEN" in res.stderr


def test_a_list_of_names_with_tls_checks_the_certificate_against_the_name(
    server_settings: ServerSettings, tmp_path: Path, queue_name: str
) -> None:
    """The names of a list are resolved to addresses; the certificate (here naming `localhost`
    only, no IP address) is still checked against the name."""
    with localhost_tls_list(server_settings, tmp_path) as (address, ca):
        settings = tasktide.ClientSettings(address=address, tls_ca=str(ca))
        with tasktide.Client(settings=settings) as client:
            handle = client.submit("t.add", [1, 2], queue=queue_name)
            assert client.get_task(handle.id).spec.name == "t.add"


@contextlib.contextmanager
def localhost_tls_list(server_settings: ServerSettings, folder: Path) -> Iterator[tuple[str, Path]]:
    """A platform serving TLS with a certificate that names `localhost` only (no IP address);
    yields the list `localhost:PORT,localhost:DOWN` (its address, then a replica down) and the CA."""
    certs = _dev_certs().make(folder / "certs", ["localhost"])
    tls = TlsSettings(cert=str(certs / "server.pem"), key=str(certs / "server-key.pem"), ca=str(certs / "ca.pem"))
    p = PlatformThread(replace(server_settings, tls=tls)).start()
    try:
        port = p.address.rsplit(":", 1)[1]
        with unreachable_address() as down:
            yield f"localhost:{port},localhost:{down.rsplit(':', 1)[1]}", certs / "ca.pem"
    finally:
        p.stop()
