"""The Go client's programs built for tests (clients/go): where the module is, the environment a Go
command runs with, and the build itself. Without `go` the test asking for a build is skipped,
except under CI=true, where that fails (tests.conftest.require_tool)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT, require_tool

GO_DIR = ROOT / "clients" / "go"
BUILD_SECONDS = 600  # modules from the proxy and a cold build cache, on a shared machine


def go_env(**extra: str) -> dict[str, str]:
    """This process's environment without its tasktide and OpenTelemetry settings, plus `extra`.
    Modules come from the Go module proxy once, then from the module cache; go.sum pins them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTIDE_", "OTEL_"))}
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return {**env, **extra}


def run_go(*args: str) -> None:
    """`go ARGS` in clients/go; a failure fails the test with the end of go's own message."""
    go = require_tool("go")
    proc = subprocess.run([go, *args], cwd=GO_DIR, env=go_env(), capture_output=True, text=True, timeout=BUILD_SECONDS)
    assert proc.returncode == 0, f"go {' '.join(args)}: {proc.stderr[-4000:]}"


def build_go(package: str, out: Path) -> Path:
    """The binary of `package` (a path in clients/go such as "./internal/testworker"), at `out`."""
    run_go("build", "-o", str(out), package)
    return out
