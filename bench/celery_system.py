"""Celery 5 under test: Redis broker and Redis result backend, JSON serialization, one
`celery worker -P prefork -c 2` (a main process and two pool processes)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import redis

from bench.procs import Proc, python_argv, settle_used_memory, tree_rss_bytes
from bench.round_trips import round_trips

MIB = 1024 * 1024
TIMEOUT = 600.0


class CelerySystem:
    name = "celery"

    def __init__(self, redis_url: str, log_dir: Path, concurrency: int = 2) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.worker: Proc | None = None

    def start(self) -> None:
        os.environ["BENCH_CELERY_URL"] = self.redis_url  # read by bench.celery_tasks at import
        # Celery sets Django up when DJANGO_SETTINGS_MODULE is set; the benchmark's app is no Django project.
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        from bench import celery_tasks

        self.tasks = celery_tasks
        self.redis = redis.Redis.from_url(self.redis_url)
        self.redis.flushdb()

    def pids(self) -> list[int]:
        return [self.worker.pid] if self.worker is not None else []  # its pool children are counted with it

    def start_workers(self) -> None:
        argv = python_argv("-m", "celery", "-A", "bench.celery_tasks", "worker", "-P", "prefork")
        argv += ["-c", str(self.concurrency), "-l", "WARNING", "-n", "bench@127.0.0.1"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.worker = Proc("celery-worker", argv, self.log_dir, env={"BENCH_CELERY_URL": self.redis_url})
        deadline = time.monotonic() + 60
        while True:  # ready once a task makes the round trip
            self.worker.check_alive()
            try:
                self.tasks.noop.delay().get(timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        self._collect(self._submit_bulk(50))  # warm-up, not measured

    def _submit_bulk(self, n: int):  # type: ignore[no-untyped-def]
        """Celery's bulk path: a group sends every message over one producer connection."""
        from celery import group

        return group(self.tasks.noop.s() for _ in range(n)).apply_async()

    def _collect(self, result) -> None:  # type: ignore[no-untyped-def]
        values = result.get(timeout=TIMEOUT)
        if len(values) != len(result.results):
            raise RuntimeError(f"celery: {len(values)} of {len(result.results)} results")

    def queued_memory(self, n: int) -> dict[str, float]:
        before = settle_used_memory(self.redis)
        self._submit_bulk(n)
        after = settle_used_memory(self.redis)
        self.redis.flushdb()
        return {"bytes": (after - before) / n}

    def throughput(self, n: int) -> dict[str, float]:
        t0 = time.perf_counter()
        self._collect(self._submit_bulk(n))
        elapsed = time.perf_counter() - t0
        return {"rate": n / elapsed, "seconds": elapsed}

    def submit_rate(self, n: int) -> dict[str, float]:
        from celery.result import ResultSet

        add = self.tasks.add
        t0 = time.perf_counter()
        results = [add.delay(i, i) for i in range(n)]
        elapsed = time.perf_counter() - t0
        self._collect(ResultSet(results))  # drained, so the latency run starts idle
        return {"rate": n / elapsed, "seconds": elapsed}

    def submit_direct(self, n: int) -> dict[str, float]:
        """Celery's delay() always writes to Redis itself: the same loop again."""
        return self.submit_rate(n)

    def submit_pipelined(self, n: int) -> dict[str, float]:
        """Celery has one way: each delay() waits for Redis's reply. The same loop again."""
        return self.submit_rate(n)

    def latency(self, n: int) -> dict[str, float]:
        return round_trips(self.tasks.add, n, "celery")

    def worker_rss(self) -> dict[str, float]:
        return {"rss": (tree_rss_bytes(self.worker.pid) if self.worker else 0) / MIB}

    def twin(self, secure: bool) -> None:
        """The TLS-and-tokens rows are tasktide's own: Celery's column says n/a."""
        return None

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        with contextlib.suppress(Exception):
            self.redis.flushdb()
