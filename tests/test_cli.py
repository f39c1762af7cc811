"""`tasktide dev` and `tasktide worker` as separate processes, driven through the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tasktide
from tasktide_services.testing import eventually, spawn, spawn_listening, unreachable_address


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "tasktide.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def dev_platform(tmp_path_factory):
    """`tasktide dev` with its embedded Redis, plus a `tasktide worker`, each its own process."""
    data = tmp_path_factory.mktemp("devdata")
    dev, address, _ = spawn_listening("dev", "--data-dir", str(data), env={"TASKTIDE_REDIS_URL": ""})
    env = {"TASKTIDE_ADDRESS": address, "TASKTIDE_REDIS_URL": ""}
    worker = spawn("worker", "examples.app:app", "--concurrency", "8", env=env)
    yield address, env, data
    worker.terminate()
    assert worker.wait(30) == 0
    dev.terminate()
    assert dev.wait(30) == 0


def test_submit_wait_prints_the_result(dev_platform):
    _, env, data = dev_platform
    res = _cli("submit", "examples.add", "--args", "[2, 3]", "--wait", "--timeout", "20", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == 5
    assert (data / "appendonlydir").exists() or any(data.glob("appendonly*")), "append-only persistence is on"


def test_submit_then_status(dev_platform):
    _, env, _ = dev_platform
    res = _cli("submit", "examples.add", "--args", "[40, 2]", env=env)
    assert res.returncode == 0, res.stderr
    task_id = res.stdout.strip()

    def status() -> dict:
        st = _cli("status", task_id, env=env)
        assert st.returncode == 0, st.stderr
        return json.loads(st.stdout)

    out = eventually(lambda: (o := status())["state"] == "SUCCEEDED" and o, timeout=20, interval=0.1)
    assert out == {"id": task_id, "name": "examples.add", "state": "SUCCEEDED", "attempt": 0, "result": 42}


def test_failed_task_exits_1_with_remote_traceback(dev_platform):
    _, env, _ = dev_platform
    res = _cli("submit", "examples.fail", "--args", '["nope"]', "--wait", "--timeout", "20", env=env)
    assert res.returncode == 1
    assert "ValueError: nope" in res.stderr
    assert "Traceback" in res.stderr


def test_thousand_tasks_all_complete(dev_platform):
    address, _, _ = dev_platform
    app = tasktide.App("examples", address=address)
    add = app.task(name="examples.add")(lambda x, y: x + y)
    handles = [add.delay(i, i) for i in range(1000)]
    assert [h.get(timeout=60) for h in handles] == [2 * i for i in range(1000)]
    app.close()


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["submit", "examples.add", "--args", "not json"], 2, "--args is not valid JSON"),
        (["submit", "examples.add", "--args", "{}"], 2, "--args must be a JSON array"),
        (["submit", "bad name!", "--args", "[]"], 2, "invalid task name"),
        (["submit", "examples.add", "--priority", "500"], 2, "out of range"),
        (["status", "0" * 32], 4, "no task with id"),
        (["status", "xyz"], 2, "malformed task id"),
        (["worker", "no_such_module:app"], 2, "cannot import"),
        (["frobnicate"], 2, "invalid choice"),
        (["workers", "drain", "no-such-worker"], 4, "no worker 'no-such-worker' is connected"),
        (["workers", "drain"], 2, "workers drain needs a worker id"),
        (["workers", "show", "no-such-worker"], 4, "no worker 'no-such-worker' is connected"),
        (["workers", "show"], 2, "workers show needs a worker id"),
        (["workers", "list", "some-id"], 2, "workers list takes no worker id"),
    ],
)
def test_clear_errors_and_exit_codes(dev_platform, args, code, fragment):
    _, env, _ = dev_platform
    res = _cli(*args, env=env)
    assert res.returncode == code, (res.stdout, res.stderr)
    assert fragment in res.stderr


def test_workers_are_listed_and_one_is_drained(dev_platform):
    _, env, _ = dev_platform
    w = spawn("worker", "examples.app:app", "--queues", "cli-drain", env=env)
    try:

        def listed() -> list[dict[str, object]]:
            out = _cli("workers", env=env).stdout.splitlines()
            return [info for info in map(json.loads, out) if info["queues"] == ["cli-drain"]]

        (info,) = eventually(listed, timeout=30)
        assert info["pid"] == w.pid and info["language"] == "python"
        with tasktide.Client(address=env["TASKTIDE_ADDRESS"]) as client:  # 0.2 s each, two at a time
            ids = {client.submit("examples.resize", args=[f"img-{i}", 64], queue="cli-drain").id for i in range(20)}

        def shown() -> dict[str, object] | None:
            res = _cli("workers", "show", str(info["worker"]), env=env)
            assert res.returncode == 0, res.stderr
            out = json.loads(res.stdout)
            return out if out["running"] else None

        seen = eventually(shown, timeout=30, interval=0.05)
        assert [s["pid"] for s in seen["sessions"]] == [w.pid]
        assert {r["id"] for r in seen["running"]} <= ids
        assert {r["name"] for r in seen["running"]} == {"examples.resize"}
        res = _cli("workers", "drain", str(info["worker"]), env=env)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout) == {"worker": info["worker"], "sessions": 1}
        assert w.wait(30) == 0  # finished what it ran and ended, as on SIGTERM
    finally:
        if w.poll() is None:
            w.kill()


def test_unreachable_platform_exits_3():
    with unreachable_address() as nowhere:
        res = _cli("submit", "examples.add", "--args", "[1, 2]", env={"TASKTIDE_ADDRESS": nowhere})
    assert res.returncode == 3
    assert "cannot reach tasktide" in res.stderr


def test_server_command_without_redis_url_is_refused():
    res = _cli("scheduler", env={"TASKTIDE_REDIS_URL": ""})
    assert res.returncode == 2
    assert "TASKTIDE_REDIS_URL" in res.stderr
