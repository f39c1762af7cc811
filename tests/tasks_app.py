"""Tasks used by the tests, importable by worker subprocesses as tests.tasks_app:app."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import tasktide

# A process that imports this module while the file this names exists fails to, and says so in
# the file (a process-pool child started then cannot load the app: tests/test_resize.py).
_REFUSE = os.environ.get("TASKTIDE_TEST_REFUSE_IMPORT_WHILE", "")
if _REFUSE and Path(_REFUSE).exists():
    with open(_REFUSE, "a") as refused:
        refused.write("refused\n")
    raise ImportError(f"refused while {_REFUSE} exists")

app = tasktide.App("t")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def echo(value: object) -> object:
    return value


@app.task
def exits(code: int) -> None:
    """Raises SystemExit, which is not an Exception: it fails the task, not the worker."""
    raise SystemExit(code)


@app.task
async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x + y


@app.task
def boom(message: str) -> None:
    raise ValueError(message)


@app.task
def slow(seconds: float, marker_dir: str = "") -> str:
    """Sleeps; leaves a file per start in marker_dir (start-PID-DELIVERY-NS), so tests can count
    executions and tell a redelivery after a lost lease (delivery 2) from a released task (1)."""
    if marker_dir:
        delivery = tasktide.current_task().delivery
        Path(marker_dir, f"start-{os.getpid()}-{delivery}-{time.monotonic_ns()}").touch()
    time.sleep(seconds)
    return f"slept {seconds}"


@app.task(max_retries=2, retry_backoff=0.05, retry_jitter=False)
def fails_once(marker: str) -> str:
    p = Path(marker)
    if not p.exists():
        p.touch()
        raise ConnectionError("first attempt fails")
    return "second attempt ok"


@app.task
def record(path: str, label: str) -> str:
    """Appends `label` to a file, so tests can read the order of execution."""
    with open(path, "a") as f:
        f.write(label + "\n")
    return label


@app.task
def soft_limited(seconds: float) -> str:
    try:
        for _ in range(int(seconds * 100)):
            time.sleep(0.01)
    except tasktide.SoftTimeLimitExceeded:
        return "cleaned up after the soft limit"
    return "finished"


@app.task
def spin(seconds: float, pid_file: str = "") -> str:
    """Ignores every signal it can; only a hard stop ends it early."""
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except tasktide.SoftTimeLimitExceeded:
            pass
    return "spun"


@app.task
async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@app.task
def cooperative(seconds: float, marker: str) -> str:
    """Checks for cancellation as it works."""
    Path(marker).touch()
    ctx = tasktide.current_task()
    for _ in range(int(seconds * 100)):
        ctx.raise_if_cancelled()
        time.sleep(0.01)
    return "not cancelled"


@app.task(max_retries=3, retry_backoff=0.05, autoretry_for=(ConnectionError,), dont_autoretry_for=(PermissionError,))
def picky(kind: str, marker_dir: str) -> str:
    Path(marker_dir, f"attempt-{time.monotonic_ns()}").touch()
    attempts = len(list(Path(marker_dir).iterdir()))
    if kind == "connection" and attempts < 3:
        raise ConnectionError(f"attempt {attempts} lost the connection")
    if kind == "permission":
        raise PermissionError("never retried")
    if kind == "value":
        raise ValueError("not in autoretry_for")
    return f"ok after {attempts}"


@app.task(max_retries=2)
def explicit_retry(marker_dir: str) -> int:
    ctx = tasktide.current_task()
    Path(marker_dir, f"attempt-{ctx.attempt}").touch()
    if ctx.attempt < 2:
        ctx.retry(countdown=0.3)
    return ctx.attempt


@app.task(max_retries=2)
def retries_when_told(marker_dir: str, go: str) -> int:
    """Leaves a file per attempt, waits for the file `go` (30 s at most, heeding no cancel), then
    asks for a retry 0.2 s later when it is the first attempt."""
    ctx = tasktide.current_task()
    Path(marker_dir, f"attempt-{ctx.attempt}").touch()
    deadline = time.monotonic() + 30
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not Path(marker_dir, f"attempt-{ctx.attempt - 1}").exists():
        ctx.retry(countdown=0.2)
    return ctx.attempt


@app.task(max_retries=1, retry_backoff=0.01)
def always_fails(message: str) -> None:
    raise RuntimeError(message)


@app.task
def whoami() -> int:
    return os.getpid()


@app.task
def with_progress(steps: int) -> int:
    ctx = tasktide.current_task()
    for i in range(1, steps + 1):
        time.sleep(0.02)
        ctx.progress(i / steps, f"step {i} of {steps}")
    return steps


@app.task(rate_limit="5/s")
def limited(path: str) -> float:
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
    return time.time()


@app.task(rate_limit="1/h")
def rare() -> str:
    """A rate limit slow enough that a second submission is held for as long as a test runs."""
    return "ran"


@app.task
def total(values: list[int]) -> int:
    return sum(values)


@app.task
def marked(marker_dir: str, seconds: float = 0.0) -> str:
    """Leaves a file per run of its body in marker_dir (TASKID-PID-NS), then sleeps: the fault
    suite counts the bodies run more than once from these files."""
    task_id = tasktide.current_task().id
    Path(marker_dir, f"{task_id}-{os.getpid()}-{time.monotonic_ns()}").touch()
    if seconds:
        time.sleep(seconds)
    return task_id


@app.task
def marked_count(values: list[object], marker_dir: str) -> int:
    """A chord's body that leaves its marker file (as `marked` does) and counts its members'
    results."""
    task_id = tasktide.current_task().id
    Path(marker_dir, f"{task_id}-{os.getpid()}-{time.monotonic_ns()}").touch()
    return len(values)


@app.task
def marked_boom(marker_dir: str) -> None:
    """Leaves its marker file (as `marked` does), then fails."""
    task_id = tasktide.current_task().id
    Path(marker_dir, f"{task_id}-{os.getpid()}-{time.monotonic_ns()}").touch()
    raise ValueError("a member fails")


@app.task(max_retries=3)
def retries_after(countdown: str, marker_dir: str) -> str:
    """Leaves its marker file, then asks for a retry `float(countdown)` seconds later ("nan",
    "inf": what a bug in a backoff computation produces); the second attempt succeeds."""
    ctx = tasktide.current_task()
    Path(marker_dir, f"{ctx.id}-{os.getpid()}-{time.monotonic_ns()}").touch()
    if ctx.attempt < 2:
        ctx.retry(countdown=float(countdown))
    return "retried"


@app.task
def held(marker_dir: str, release: str) -> str:
    """Leaves a marker file (TASKID-PID-NS), then waits for the file `release` (60 s at most)."""
    Path(marker_dir, f"{tasktide.current_task().id}-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


@app.task
async def held_async(marker_dir: str, release: str) -> str:
    """`held` on the event loop (the asyncio pool)."""
    Path(marker_dir, f"{tasktide.current_task().id}-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return "released"
