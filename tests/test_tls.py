"""TLS and mutual TLS on the services' listeners, and the refusal to expose a server without them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import tasktide
from tasktide import Client, ClientSettings
from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2
from tasktide_services.common.auth import mint
from tasktide_services.common.settings import ServerSettings
from tasktide_services.common.tls import TlsSettings
from tasktide_services.testing import PlatformThread, spawn
from tests.conftest import ROOT
from tests.processes import stop

KEY = b"t" * 40


def _dev_certs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_certs", ROOT / "scripts" / "dev_certs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two independent CAs, each with a server and a client certificate."""
    make = _dev_certs().make
    base = tmp_path_factory.mktemp("tls")
    return make(base / "ours", ["localhost", "127.0.0.1"]), make(
        base / "theirs", ["localhost", "127.0.0.1"], "other CA"
    )


def _tls(folder: Path, client_ca: bool) -> TlsSettings:
    return TlsSettings(
        cert=str(folder / "server.pem"),
        key=str(folder / "server-key.pem"),
        ca=str(folder / "ca.pem"),
        client_ca=str(folder / "ca.pem") if client_ca else "",
    )


@pytest.fixture(scope="module")
def tls_platform(server_settings: ServerSettings, certs: tuple[Path, Path]) -> Iterator[PlatformThread]:
    settings = replace(server_settings, tls=_tls(certs[0], client_ca=False), auth_key=KEY.decode())
    with PlatformThread(settings) as p:
        yield p


@pytest.fixture(scope="module")
def mtls_platform(server_settings: ServerSettings, certs: tuple[Path, Path]) -> Iterator[PlatformThread]:
    settings = replace(server_settings, tls=_tls(certs[0], client_ca=True))
    with PlatformThread(settings) as p:
        yield p


def _credentials(ca: Path, client: Path | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials((ca / "ca.pem").read_bytes())
    return grpc.ssl_channel_credentials(
        (ca / "ca.pem").read_bytes(), (client / "client-key.pem").read_bytes(), (client / "client.pem").read_bytes()
    )


def _submit(address: str, creds: grpc.ChannelCredentials, token: str | None) -> str:
    md = [("authorization", f"Bearer {token}")] if token else None
    target = address.replace("127.0.0.1", "localhost")
    with grpc.secure_channel(target, creds) as ch:
        spec = task_pb2.TaskSpec(name="tls.noop", queue="tls-none")
        resp = scheduler_pb2_grpc.SchedulerStub(ch).Submit(
            scheduler_pb2.SubmitRequest(spec=spec), metadata=md, timeout=5
        )
    return str(resp.task_id)


def test_tls_with_a_token_works(tls_platform: PlatformThread, certs: tuple[Path, Path]) -> None:
    token = mint(KEY, namespace="default", role="producer")
    assert len(_submit(tls_platform.address, _credentials(certs[0]), token)) == 32


def test_a_server_of_another_ca_is_refused(tls_platform: PlatformThread, certs: tuple[Path, Path]) -> None:
    token = mint(KEY, namespace="default", role="producer")
    with pytest.raises(grpc.RpcError) as info:
        _submit(tls_platform.address, _credentials(certs[1]), token)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused_by_a_tls_listener(tls_platform: PlatformThread) -> None:
    with grpc.insecure_channel(tls_platform.address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_of_the_ca(
    mtls_platform: PlatformThread, certs: tuple[Path, Path]
) -> None:
    ours, theirs = certs
    assert len(_submit(mtls_platform.address, _credentials(ours, client=ours), None)) == 32
    for creds in (_credentials(ours), _credentials(ours, client=theirs)):
        with pytest.raises(grpc.RpcError) as info:
            _submit(mtls_platform.address, creds, None)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("extra", [[], ["--tls-cert", "x.pem", "--tls-key", "x-key.pem"]])
def test_a_server_beyond_loopback_needs_tls_and_tokens(server_settings: ServerSettings, extra: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "registry", "--address", "0.0.0.0:0", *extra],
        env={"TASKTIDE_REDIS_URL": server_settings.redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to listen on 0.0.0.0:0 without" in done.stderr
    assert "tokens" in done.stderr


def test_python_client_and_worker_run_a_task_over_tls_with_tokens(
    tls_platform: PlatformThread, certs: tuple[Path, Path], queue_name: str
) -> None:
    ours, theirs = certs
    address = tls_platform.address
    worker_token = mint(KEY, namespace="default", role="worker", queues=[queue_name])
    env = {"TASKTIDE_ADDRESS": address, "TASKTIDE_TOKEN": worker_token, "TASKTIDE_TLS_CA": str(ours / "ca.pem")}
    worker = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, env=env, cwd=ROOT)
    try:
        producer = ClientSettings(
            address=address, token=mint(KEY, namespace="default", role="producer"), tls_ca=str(ours / "ca.pem")
        )
        with Client(settings=producer) as client:
            assert client.submit("t.add", [2, 3], queue=queue_name).get(timeout=60) == 5
        with Client(settings=replace(producer, token="")) as client:
            with pytest.raises(tasktide.Unauthenticated, match=f"{address}.*no token"):
                client.submit("t.add", [1, 1], queue=queue_name)
        with Client(settings=replace(producer, tls_ca=str(theirs / "ca.pem"))) as client:
            with pytest.raises(tasktide.Unavailable, match=address):
                client.submit("t.add", [1, 1], queue=queue_name)
    finally:
        stop([worker])


def test_a_worker_whose_token_is_refused_stops_with_the_reason(
    tls_platform: PlatformThread, certs: tuple[Path, Path]
) -> None:
    producer_token = mint(KEY, namespace="default", role="producer")  # not allowed to open a Session
    env = {
        "TASKTIDE_ADDRESS": tls_platform.address,
        "TASKTIDE_TOKEN": producer_token,
        "TASKTIDE_TLS_CA": str(certs[0] / "ca.pem"),
    }
    worker = spawn("worker", "tests.tasks_app:app", env=env, cwd=ROOT, stderr=subprocess.PIPE)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 2, err
    assert "not allowed for role producer" in err
