"""The Go client (clients/go) against real services, in both directions: Go submits tasks a Python
worker runs and runs its own worker (the Go test suite, `go test ./...`), and Python submits tasks a
Go worker runs (clients/go/examples/worker)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tasktide import Client, TaskFailed, TaskState
from tasktide_services.testing import PlatformThread, eventually, service_env
from tests.conftest import require_tool
from tests.go_build import GO_DIR, build_go, run_go

# The per-test limit covers the test bodies only: the build runs once, in go_built, under its own limit.
pytestmark = pytest.mark.timeout(120, func_only=True)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTIDE_")}
    # Modules come from the Go module proxy once, then from the module cache; go.sum pins them.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return env


def _go_env(platform: PlatformThread, **extra: str) -> dict[str, str]:
    return {**_base_env(), **service_env(platform.address), **extra}


@pytest.fixture(scope="session")
def go_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go packages and their tests compiled once (into the build cache), and the example
    worker's binary, whose path is returned."""
    out = tmp_path_factory.mktemp("go")
    run_go("test", "-c", "-o", f"{out}/", "./...")
    return build_go("./examples/worker", out / "go-worker")


def test_go_suite_against_the_platform_and_a_python_worker(
    go_built: Path, platform: PlatformThread, python_worker: str
) -> None:
    go = require_tool("go")
    env = _go_env(platform, TASKTIDE_TEST_PYTHON_QUEUE=python_worker)
    proc = subprocess.run(
        [go, "test", "./...", "-count=1", "-v"], cwd=GO_DIR, env=env, capture_output=True, text=True, timeout=110
    )
    report = proc.stdout[-8000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    assert "--- PASS: TestPythonWorkerRunsGoSubmission" in proc.stdout, report
    assert "--- PASS: TestGoWorker" in proc.stdout, report
    assert "--- SKIP" not in proc.stdout, report  # every test ran against the platform


def _wait_for_state(client: Client, task_id: str, state: TaskState, timeout: float) -> None:
    eventually(lambda: client.status(task_id) is state, timeout, 0.05, f"task {task_id} in state {state.name}")


def test_python_submits_to_a_go_worker(
    go_built: Path, platform: PlatformThread, client: Client, queue_name: str
) -> None:
    env = _go_env(platform, TASKTIDE_QUEUES=queue_name)
    worker = subprocess.Popen([go_built], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.submit("go.add", [2, 3], queue=queue_name).get(timeout=30) == 5
        assert client.submit("go.add", [2, 3], {"scale": 10}, queue=queue_name).get(timeout=30) == 50
        assert client.submit("go.upper", ["é-go"], queue=queue_name).get(timeout=30) == "É-GO"

        with pytest.raises(TaskFailed) as failed:
            client.submit("go.refuse", ["not today"], queue=queue_name).get(timeout=30)
        assert failed.value.remote_type == "go.Refused"
        assert failed.value.remote_message == "not today"

        with pytest.raises(TaskFailed) as failed:
            client.submit("go.add", ["two", 3], queue=queue_name).get(timeout=30)
        assert failed.value.remote_type == "tasktide.BadArguments"

        with pytest.raises(TaskFailed) as failed:
            client.submit("go.missing", [], queue=queue_name).get(timeout=30)
        assert failed.value.remote_type == "tasktide.UnknownTask"

        gos = [w for w in client.workers() if w.language == "go" and queue_name in w.queues]
        assert len(gos) == 1

        # SIGTERM drains: the running task finishes and its outcome is sent before the process exits.
        running = client.submit("go.sleep", [1.0], queue=queue_name)
        _wait_for_state(client, running.id, TaskState.RUNNING, 30)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, out + err
        assert running.get(timeout=10) == "slept 1"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
