"""grpcurl against a platform with TLS and tokens: with the CA and a token it lists the services by
reflection and calls a method; without a token it is refused with Unauthenticated.

grpcurl comes from the project's own pin, built from the Go module proxy by
scripts/install-grpcurl.sh (unless one is on PATH already); under CI=true a missing Go toolchain
fails the suite."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tasktide_services.common.auth import mint
from tasktide_services.common.settings import ServerSettings
from tasktide_services.common.tls import TlsSettings
from tasktide_services.testing import PlatformThread
from tests.conftest import ROOT, require_tool
from tests.test_tls import _dev_certs

INSTALL = ROOT / "scripts" / "install-grpcurl.sh"  # the pinned version is there
BUILD_SECONDS = 900  # modules from the proxy and a cold build cache, on a shared machine
KEY = b"g" * 40

pytestmark = pytest.mark.timeout(60, func_only=True)


@pytest.fixture(scope="session")
def grpcurl() -> str:
    """The grpcurl executable: on PATH, else the project's pin built by scripts/install-grpcurl.sh
    (at once when built already; .ci/run starts that build before the tests)."""
    found = shutil.which("grpcurl")
    if found:
        return found
    require_tool("go")
    started = time.monotonic()
    proc = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=BUILD_SECONDS)
    assert proc.returncode == 0, f"{INSTALL}: {proc.stderr[-4000:]}"
    print(f"grpcurl ready in {time.monotonic() - started:.0f} s")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def ca_and_platform(
    tmp_path_factory: pytest.TempPathFactory, server_settings: ServerSettings
) -> Iterator[tuple[Path, str]]:
    """The CA file and the address (by host name, as the certificate says) of a TLS + token platform."""
    folder = _dev_certs().make(tmp_path_factory.mktemp("grpcurl-tls"), ["localhost", "127.0.0.1"])
    tls = TlsSettings(cert=str(folder / "server.pem"), key=str(folder / "server-key.pem"), ca=str(folder / "ca.pem"))
    p = PlatformThread(replace(server_settings, tls=tls, auth_key=KEY.decode())).start()
    yield folder / "ca.pem", p.address.replace("127.0.0.1", "localhost")
    p.stop()


def _grpcurl(tool: str, ca: Path, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    headers = ["-H", f"authorization: Bearer {token}"] if token else []
    return subprocess.run([tool, "-cacert", str(ca), *headers, *args], capture_output=True, text=True, timeout=30)


def test_grpcurl_lists_and_calls_with_the_ca_and_a_token(grpcurl: str, ca_and_platform: tuple[Path, str]) -> None:
    ca, address = ca_and_platform
    token = mint(KEY, namespace="default", role="producer")
    listed = _grpcurl(grpcurl, ca, token, address, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"tasktide.v1.Scheduler", "tasktide.v1.Registry", "tasktide.v1.Results"} <= services, listed.stdout

    described = _grpcurl(grpcurl, ca, token, address, "describe", "tasktide.v1.Scheduler")
    assert described.returncode == 0, described.stderr
    assert "rpc Submit ( .tasktide.v1.SubmitRequest )" in described.stdout, described.stdout

    request = json.dumps({"spec": {"name": "grpcurl.noop", "queue": "grpcurl"}})
    submitted = _grpcurl(grpcurl, ca, token, "-d", request, address, "tasktide.v1.Scheduler/Submit")
    assert submitted.returncode == 0, submitted.stderr
    task_id = json.loads(submitted.stdout)["task_id"]  # grpcurl prints the proto field names
    assert len(task_id) == 32

    got = _grpcurl(grpcurl, ca, token, "-d", json.dumps({"task_id": task_id}), address, "tasktide.v1.Scheduler/GetTask")
    assert got.returncode == 0, got.stderr
    assert "grpcurl.noop" in got.stdout


def test_grpcurl_without_a_token_is_unauthenticated(grpcurl: str, ca_and_platform: tuple[Path, str]) -> None:
    ca, address = ca_and_platform
    listed = _grpcurl(grpcurl, ca, "", address, "list")
    assert listed.returncode != 0
    assert "Unauthenticated" in listed.stderr, listed.stderr

    # The schema from reflection with a token (-reflect-header), the call itself without one.
    token = mint(KEY, namespace="default", role="producer")
    request = json.dumps({"spec": {"name": "grpcurl.noop", "queue": "grpcurl"}})
    refused = _grpcurl(
        grpcurl,
        ca,
        "",
        "-reflect-header",
        f"authorization: Bearer {token}",
        "-d",
        request,
        address,
        "tasktide.v1.Scheduler/Submit",
    )
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr, refused.stderr
