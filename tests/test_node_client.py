"""The Node.js client (clients/node) against real services, in both directions: Node submits tasks a
Python worker runs (the Node test suite, run with `node --test`), and Python submits tasks a Node
worker runs (clients/node/examples/worker.js)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading

import pytest

from tasktide import Client, TaskFailed
from tasktide_services.testing import PlatformThread, service_env
from tests.conftest import ROOT, require_tool

NODE_DIR = ROOT / "clients" / "node"
# The runtime dependencies and the development ones the tests use (OpenTelemetry SDK, TypeScript).
DEPENDENCIES = (
    "@grpc/grpc-js",
    "@grpc/proto-loader",
    "@opentelemetry/api",
    "@opentelemetry/sdk-trace-base",
    "@opentelemetry/exporter-trace-otlp-grpc",
    "@opentelemetry/context-async-hooks",
    "typescript",
)

# The per-test limit covers the test bodies only: `npm ci` runs once, in `node`, under its own limit.
pytestmark = pytest.mark.timeout(300, func_only=True)


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with the package's dependencies installed from its lockfile if missing."""
    node = require_tool("node")
    npm = require_tool("npm")
    with open(NODE_DIR / "package-lock.json") as lock:  # one installer at a time (pytest -n)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((NODE_DIR / "node_modules" / d).is_dir() for d in DEPENDENCIES):
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600)
    return node


def _node_env(platform: PlatformThread, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTIDE_")}
    return {**env, **service_env(platform.address), **extra}


def test_node_suite_against_the_platform_and_a_python_worker(
    node: str, platform: PlatformThread, python_worker: str
) -> None:
    tests = sorted(str(p.relative_to(NODE_DIR)) for p in (NODE_DIR / "test").glob("*.test.js"))
    assert tests, "the Node test files are missing"
    env = _node_env(platform, TASKTIDE_TEST_PYTHON_QUEUE=python_worker)
    proc = subprocess.run([node, "--test", *tests], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=240)
    report = proc.stdout[-8000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    assert "# fail 0" in proc.stdout, report
    assert "# skipped 0" in proc.stdout, report  # the Python-worker and lease tests ran too


def _wait_started(client: Client, task_id: str, timeout: float) -> bool:
    """True once the task reported progress (node.sleep does as it starts)."""
    seen = threading.Event()

    def watch() -> None:
        for event in client.watch([task_id]):
            if event.progress_only:
                seen.set()
                return

    threading.Thread(target=watch, name="watch-progress", daemon=True).start()
    return seen.wait(timeout)


def test_python_submits_to_a_node_worker(node: str, platform: PlatformThread, client: Client, queue_name: str) -> None:
    env = _node_env(platform, TASKTIDE_QUEUES=queue_name)
    worker = subprocess.Popen(
        [node, "examples/worker.js"], cwd=NODE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert client.submit("node.add", [2, 3], queue=queue_name).get(timeout=30) == 5
        echoed = client.submit("node.echo", [1, "é"], {"k": [True, None]}, queue=queue_name).get(timeout=30)
        assert echoed == {"args": [1, "é"], "kwargs": {"k": [True, None]}}

        with pytest.raises(TaskFailed) as failed:
            client.submit("node.fail", ["bad input"], queue=queue_name).get(timeout=30)
        assert failed.value.remote_type == "RangeError"
        assert failed.value.remote_message == "bad input"
        assert "examples/worker.js" in failed.value.remote_traceback

        nodes = [w for w in client.workers() if w.language == "node" and queue_name in w.queues]
        assert len(nodes) == 1

        # SIGTERM drains: the running task finishes and its outcome is sent before the process exits.
        running = client.submit("node.sleep", [1.0], queue=queue_name)
        assert _wait_started(client, running.id, 30), "node.sleep did not start"
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, out + err
        assert running.get(timeout=10) == "slept 1 on attempt 0"
        assert "stopped after 4 tasks" in out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
