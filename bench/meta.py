"""What a benchmark run was taken on: when, which commit, which machine and versions.

Printed above the table (and written with it to reports/bench.md), so a table pasted into the
docs says where its figures come from.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass

import redis

from bench.procs import ROOT


@dataclass(frozen=True)
class RunInfo:
    started: dt.datetime
    commit: str  # short hash, " (dirty)" when the tree has changes; "unknown" outside git
    cores: int
    python: str
    redis: str
    celery: str
    system: str

    def header(self, seconds: float | None = None) -> str:
        took = f", took {duration(seconds)}" if seconds is not None else ""
        return (
            f"{self.started:%Y-%m-%d %H:%M} UTC, commit {self.commit}{took}\n"
            f"{self.cores} cores, Python {self.python}, Redis {self.redis}, Celery {self.celery}, {self.system}"
        )


def duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def commit() -> str:
    """The short hash of HEAD, with " (dirty)" when tracked files differ from it."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" (dirty)" if status.stdout.strip() else "")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect(redis_url: str) -> RunInfo:
    """The run's facts; `redis_url`: the benchmark's Redis server (its version from INFO)."""
    try:
        redis_version = str(redis.Redis.from_url(redis_url).info("server")["redis_version"])
    except redis.RedisError:
        redis_version = "unknown"
    return RunInfo(
        started=dt.datetime.now(dt.UTC),
        commit=commit(),
        cores=os.cpu_count() or 0,
        python=platform.python_version(),
        redis=redis_version,
        celery=_version("celery"),
        system=platform.platform(),
    )
