"""Both distributions as a user installs them: wheels built from the repository, installed into a new
virtual environment outside it, then `tasktide dev --demo`, a worker and `tasktide submit --wait` run
from a folder that has no tasktide source in it, and the demo's dashboard serves its pages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tasktide_services.testing import eventually
from tests.processes import ROOT, stop

# Dependencies come from the package index (or pip's cache); the build and install take a minute.
pytestmark = pytest.mark.timeout(600)


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _page(url: str) -> str:
    """The page at `url`; not yet (AssertionError) while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - a loopback URL the demo printed
            assert resp.status == 200
            return str(resp.read().decode())
    except OSError as exc:
        raise AssertionError(f"{url}: {exc}") from exc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a new virtual environment with the two wheels installed."""
    base = tmp_path_factory.mktemp("packaging")
    wheels = base / "wheels"
    for project in (ROOT / "clients" / "python", ROOT):
        _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, project, cwd=base)
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert any(n.startswith("tasktide-") for n in built) and any(n.startswith("tasktide_server-") for n in built)
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=base)
    pip = venv / "bin" / "pip"
    _run(pip, "install", "-q", "--find-links", wheels, "tasktide-server", cwd=base)
    return venv / "bin"


def test_the_wheels_run_the_platform_from_any_folder(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTIDE_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{installed}:{env.get('PATH', '')}"
    # The installed packages, not the repository, answer the imports.
    where = _run(
        installed / "python",
        "-c",
        "import tasktide, tasktide_services; print(tasktide_services.__file__)",
        cwd=elsewhere,
        env=env,
    )
    assert str(ROOT) not in where and "site-packages" in where

    dev = subprocess.Popen(
        [installed / "tasktide", "dev", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")]
        + ["--demo", "--demo-tasks", "8"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        assert dev.stdout is not None
        found = None
        for line in dev.stdout:  # up to the line with the port it bound
            seen.append(line)
            found = re.search(r"listening on (\S+:\d+)", line)
            if found:
                break
        assert found, "".join(seen)
        env["TASKTIDE_ADDRESS"] = found.group(1)
        board = None
        for line in dev.stdout:  # the demo names its dashboard before it starts its worker
            seen.append(line)
            board = re.search(r"dashboard on (http://\S+/)", line)
            if board or "worker for" in line:
                break
        assert board, "".join(seen)
        page = eventually(lambda: _page(board.group(1)), timeout=30, what="the demo's dashboard")
        assert "<title>Overview · tasktide dashboard" in page
        out = _run(
            installed / "tasktide",
            "submit",
            "examples.add",
            "--args",
            "[2, 3]",
            "--wait",
            "--timeout",
            "60",
            cwd=elsewhere,
            env=env,
        )
        assert json.loads(out.strip().splitlines()[-1]) == 5
    finally:
        stop([dev])
    log = "".join(seen) + (dev.stdout.read() if dev.stdout else "")
    assert "No module named" not in log, log[-2000:]
    assert "demo" in log
