"""The `tasktide` command's server processes serve with gRPC core's polling I/O manager
(tasktide_services.common.grpc_core): started without GRPC_EXPERIMENTS, a server command starts
itself again (same process id) with it set, and serves; a value the operator set is kept."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktide_services.common.grpc_core import EXPERIMENTS, VARIABLE


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(e.split("=", 1) for e in raw.decode(errors="replace").split("\0") if "=" in e)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize(("given", "serving"), [(None, EXPERIMENTS), ("", "")], ids=["unset", "set-empty"])
def test_a_server_command_serves_with_the_polling_io_manager_unless_told_otherwise(
    tmp_path: Path, given: str | None, serving: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    env["TASKTIDE_REDIS_URL"] = ""  # the embedded Redis
    if given is not None:
        env[VARIABLE] = given
    argv = [sys.executable, "-m", "tasktide.cli", "dev", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        assert proc.stdout is not None
        address = ""
        for line in proc.stdout:
            if "listening on " in line:
                address = line.rsplit(" ", 1)[1].strip()
                break
        assert address, f"no address reported; stderr: {''.join(errors)}"
        assert _environ(proc.pid).get(VARIABLE) == serving  # the same process, started again or not
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.terminate()
        code = proc.wait(30)
        reader.join(10)
    assert code == 0
    assert not [e for e in errors if "Unknown experiment" in e], "gRPC does not know the experiment's name"
