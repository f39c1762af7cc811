"""The Go and Node.js clients and workers over TLS with a token, against a platform that requires
both (TLS listener and TASKTIDE_AUTH_KEY), set up only through the environment variables the Python
client reads too: TASKTIDE_TOKEN, TASKTIDE_TLS_CA (and TASKTIDE_TLS_CERT/KEY for mutual TLS).
A client that trusts another CA is refused."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tasktide import Client, ClientSettings
from tasktide_services.common.auth import mint
from tasktide_services.common.settings import ServerSettings
from tasktide_services.common.tls import TlsSettings
from tasktide_services.testing import PlatformThread
from tests.conftest import ROOT
from tests.test_go_client import _base_env, go_built  # noqa: F401 - go_built is a fixture
from tests.test_node_client import NODE_DIR, _node_env
from tests.test_node_client import node as node  # noqa: F401 - the fixture
from tests.test_tls import _dev_certs

KEY = b"p" * 40
GO_CLIENT_DIR = ROOT / "clients" / "go" / "tasktide"

pytestmark = pytest.mark.timeout(120, func_only=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two independent CAs, each with a server and a client certificate."""
    make = _dev_certs().make
    base = tmp_path_factory.mktemp("tls-polyglot")
    hosts = ["localhost", "127.0.0.1"]
    return make(base / "ours", hosts), make(base / "theirs", hosts, "other CA")


def _tls(folder: Path, client_ca: bool) -> TlsSettings:
    return TlsSettings(
        cert=str(folder / "server.pem"),
        key=str(folder / "server-key.pem"),
        ca=str(folder / "ca.pem"),
        client_ca=str(folder / "ca.pem") if client_ca else "",
    )


@pytest.fixture(scope="module", params=["tls", "mtls"])
def secure_platform(
    request: pytest.FixtureRequest, server_settings: ServerSettings, certs: tuple[Path, Path]
) -> Iterator[tuple[str, PlatformThread]]:
    """A platform with TLS and tokens; with `mtls` it also requires client certificates of our CA."""
    tls = _tls(certs[0], client_ca=request.param == "mtls")
    p = PlatformThread(replace(server_settings, tls=tls, auth_key=KEY.decode())).start()
    yield request.param, p
    p.stop()


def _tls_env(mode: str, folder: Path, token: str) -> dict[str, str]:
    env = {"TASKTIDE_TOKEN": token, "TASKTIDE_TLS_CA": str(folder / "ca.pem")}
    if mode == "mtls":
        env |= {"TASKTIDE_TLS_CERT": str(folder / "client.pem"), "TASKTIDE_TLS_KEY": str(folder / "client-key.pem")}
    return env


def _python_client(mode: str, address: str, folder: Path) -> Client:
    settings = ClientSettings(
        address=address, token=mint(KEY, namespace="default", role="producer"), tls_ca=str(folder / "ca.pem")
    )
    if mode == "mtls":
        settings = replace(settings, tls_cert=str(folder / "client.pem"), tls_key=str(folder / "client-key.pem"))
    return Client(settings=settings)


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=110)


# Go: the package's own test of a Go worker fed by the Go client (compiled by go_built), and the
# example worker running tasks submitted from Python.


def test_go_client_and_worker_over_tls_with_a_token(
    go_built: Path,  # noqa: F811
    secure_platform: tuple[str, PlatformThread],
    certs: tuple[Path, Path],
) -> None:
    mode, platform = secure_platform
    ours, theirs = certs
    tests = go_built.parent / "tasktide.test"
    token = mint(KEY, namespace="default", role="worker")  # submits, and opens sessions on any queue
    env = {**_base_env(), "TASKTIDE_ADDRESS": platform.address, **_tls_env(mode, ours, token)}
    command = [str(tests), "-test.run", "^TestGoWorker$", "-test.count=1", "-test.v"]
    done = _run(command, env, GO_CLIENT_DIR)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "--- PASS: TestGoWorker" in done.stdout

    refused = _run(command, {**env, **_tls_env(mode, theirs, token)}, GO_CLIENT_DIR)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "certificate" in refused.stdout + refused.stderr, refused.stdout[-3000:]

    no_token = _run(command, {**env, "TASKTIDE_TOKEN": ""}, GO_CLIENT_DIR)
    assert no_token.returncode != 0
    assert "no token" in no_token.stdout + no_token.stderr, no_token.stdout[-3000:]


def test_python_submits_to_the_go_example_worker_over_tls(
    go_built: Path,  # noqa: F811
    secure_platform: tuple[str, PlatformThread],
    certs: tuple[Path, Path],
    queue_name: str,
) -> None:
    mode, platform = secure_platform
    ours = certs[0]
    token = mint(KEY, namespace="default", role="worker", queues=[queue_name])
    env = {**_base_env(), "TASKTIDE_ADDRESS": platform.address, "TASKTIDE_QUEUES": queue_name}
    worker = subprocess.Popen(
        [go_built], env={**env, **_tls_env(mode, ours, token)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with _python_client(mode, platform.address, ours) as client:
            assert client.submit("go.add", [2, 3], queue=queue_name).get(timeout=60) == 5
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


# Node.js: the example worker, and a producer script using the package as an application does.

NODE_PRODUCER = """
import { Client } from './src/index.js';
const client = new Client();
try {
  const handle = await client.submit('node.add', [20, 22], { queue: process.env.TASKTIDE_QUEUES });
  console.log('result', JSON.stringify(await handle.get({ timeout: 60 })));
} catch (err) {
  console.log('error', err.name, err.message);
  process.exitCode = 1;
} finally {
  client.close();
}
"""


def test_node_client_and_worker_over_tls_with_a_token(
    node: str,  # noqa: F811
    secure_platform: tuple[str, PlatformThread],
    certs: tuple[Path, Path],
    queue_name: str,
) -> None:
    mode, platform = secure_platform
    ours, theirs = certs
    base = _node_env(platform, TASKTIDE_QUEUES=queue_name)
    worker_env = {**base, **_tls_env(mode, ours, mint(KEY, namespace="default", role="worker", queues=[queue_name]))}
    worker = subprocess.Popen(
        [node, "examples/worker.js"], cwd=NODE_DIR, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    producer = [node, "--input-type=module", "-e", NODE_PRODUCER]
    token = mint(KEY, namespace="default", role="producer")
    try:
        done = _run(producer, {**base, **_tls_env(mode, ours, token)}, NODE_DIR)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "result 42" in done.stdout

        # The same call trusting another CA (and, for mutual TLS, showing its certificate) is refused.
        refused = _run(producer, {**base, **_tls_env(mode, theirs, token)}, NODE_DIR)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "error Unavailable" in refused.stdout, refused.stdout + refused.stderr

        no_token = _run(producer, {**base, **_tls_env(mode, ours, "")}, NODE_DIR)
        assert "error Unauthenticated" in no_token.stdout, no_token.stdout + no_token.stderr
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
