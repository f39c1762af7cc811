"""Both distributions as a user installs them: wheels built from the repository, installed into a new
virtual environment outside it, then `tasktide dev --demo`, a worker and `tasktide submit --wait` run
from a folder that has no tasktide source in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT, free_port, stop, wait_serving

# Dependencies come from the package index (or pip's cache); the build and install take a minute.
pytestmark = pytest.mark.timeout(600)


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


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

    address = f"127.0.0.1:{free_port()}"
    env["TASKTIDE_ADDRESS"] = address
    dev = subprocess.Popen(
        [
            installed / "tasktide",
            "dev",
            "--address",
            address,
            "--data-dir",
            str(tmp_path / "data"),
            "--demo",
            "--demo-tasks",
            "8",
        ],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_serving(address, dev, timeout=60)
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
    log = dev.stdout.read() if dev.stdout else ""
    assert "No module named" not in log, log[-2000:]
    assert "demo" in log
