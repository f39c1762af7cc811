"""The `tasktide` command's server processes serve with gRPC core's polling I/O manager
(tasktide_services.common.grpc_core): started without GRPC_EXPERIMENTS, a server command starts
itself again (same process id) with it set, and serves; a value the operator set is kept. The same
start turns gRPC's fork support off (GRPC_ENABLE_FORK_SUPPORT=false)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktide_services.common.grpc_core import EXPERIMENTS, FORK_VARIABLE, VARIABLE
from tasktide_services.testing import spawn_listening


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(e.split("=", 1) for e in raw.decode(errors="replace").split("\0") if "=" in e)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize(("given", "serving"), [(None, EXPERIMENTS), ("", "")], ids=["unset", "set-empty"])
def test_a_server_command_serves_with_the_polling_io_manager_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], given: str | None, serving: str
) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)  # the suite's own value (conftest.py) is not passed on
    monkeypatch.delenv(FORK_VARIABLE, raising=False)
    env = {"TASKTIDE_REDIS_URL": ""}  # the embedded Redis
    if given is not None:
        env[VARIABLE] = given
    proc, address, _ = spawn_listening("dev", "--data-dir", str(tmp_path), env=env)
    try:
        environ = _environ(proc.pid)
        assert environ.get(VARIABLE) == serving  # the same process, started again or not
        assert environ.get(FORK_VARIABLE) == "false"
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code == 0
    assert "Unknown experiment" not in capfd.readouterr().err, "gRPC does not know the experiment's name"
