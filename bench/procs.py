"""Processes of a benchmark run: starting and stopping them, their CPU time and resident memory,
Redis memory."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tasktide_services.common.redis_server import LocalRedis, start_redis

ROOT = Path(__file__).resolve().parent.parent
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            kids = descendants(self.pid)
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            for pid in kids:  # children of this process that outlived it (Celery's pool)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid (from /proc)."""
    parents = {int(p.name): _ppid(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    out: list[int] = []
    frontier = [pid]
    while frontier:
        cur = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == cur]
        out += kids
        frontier += kids
    return out


def rss_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * _PAGE


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of pid plus all its descendants."""
    return rss_bytes(pid) + sum(rss_bytes(c) for c in descendants(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes and their live descendants, plus this process's own."""
    every = {d for p in pids for d in (p, *descendants(p))}
    own = resource.getrusage(resource.RUSAGE_SELF)
    return sum(cpu_seconds(p) for p in every) + own.ru_utime + own.ru_stime


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def settle_used_memory(r: redis.Redis, wait: float = 0.5) -> int:
    """used_memory after client buffers have drained: the lower of a few readings."""
    time.sleep(wait)
    return min(used_memory(r) for _ in range(3))


def wait_until(check: object, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def bench_redis(
    stack: contextlib.ExitStack, work_dir: Path | None = None, prefix: str = "tasktide-bench-"
) -> tuple[Path, LocalRedis, str]:
    """The work folder (`work_dir`, else a temporary one removed with `stack`) and a redis-server in
    it, append-only off, stopped with `stack`: (folder, server, its redis:// URL without a db)."""
    work = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    work.mkdir(parents=True, exist_ok=True)
    server = start_redis(work / "redis", appendonly=False)
    stack.callback(server.stop)
    return work, server, f"redis://127.0.0.1:{server.port}"


LOAD_TICK = 0.01  # seconds between two batches of a paced load


def paced(rate: float, submit: Callable[[int], object], stop: Callable[[], bool]) -> tuple[int, float]:
    """Calls `submit(k)` with what is owed to keep `rate` tasks per second, a batch every LOAD_TICK,
    until `stop()`: (tasks submitted, seconds)."""
    sent = 0
    t0 = time.monotonic()
    next_tick = t0
    while not stop():
        k = int(rate * (time.monotonic() - t0)) - sent
        if k > 0:
            submit(k)
            sent += k
        next_tick += LOAD_TICK
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()
    return sent, time.monotonic() - t0
