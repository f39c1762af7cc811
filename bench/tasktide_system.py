"""tasktide under test: `tasktide dev --redis-url` (every service in one process) and two
`tasktide worker` processes, driven through the public Python client. twin() starts another such
platform, fresh, with or without TLS on the listener and tokens on every call (bench/secure.py),
for the rows that measure what they cost."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import redis

from bench.procs import Proc, python_argv, settle_used_memory, tree_rss_bytes, wait_until
from bench.profiling import Profiler
from bench.round_trips import round_trips
from bench.secure import Credentials, make_credentials
from tasktide_services.common.redis_server import free_port

BATCH = 1000  # tasks per SubmitBatch call
WATCH_CHUNK = 5000  # task ids per Watch call
MIB = 1024 * 1024


def _chunks(xs: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(xs), size):
        yield xs[i : i + size]


class TasktideSystem:
    name = "tasktide"

    def __init__(
        self,
        redis_url: str,
        log_dir: Path,
        workers: int = 2,
        concurrency: int = 2,
        prefetch: int = 0,
        profiler: Profiler | None = None,
    ) -> None:
        self.index = True  # the results service's visibility index (TASKTIDE_INDEX)
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.n_workers = workers
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.profiler = profiler
        self.server: Proc | None = None
        self.workers: list[Proc] = []
        self.address = ""
        self.secure: Credentials | None = None
        self.own_app = False  # twins: tt_tasks.app is the first platform's

    def start(self) -> None:
        self.address = self.address or f"127.0.0.1:{free_port()}"
        os.environ["TASKTIDE_ADDRESS"] = self.address  # read by bench.tt_tasks.app on first use
        from bench import tt_tasks
        from tasktide.v1 import worker_pb2, worker_pb2_grpc

        self.tasks = tt_tasks
        self.redis = redis.Redis.from_url(self.redis_url)
        self.redis.flushdb()
        argv = python_argv("-m", "tasktide.cli", "--log-level", "WARNING", "dev", "--address", self.address)
        argv += ["--redis-url", self.redis_url]
        name = "tasktide-dev-secure" if self.secure else "tasktide-dev"
        env = {"TASKTIDE_INDEX": "1" if self.index else "0", **(self.secure.server_env() if self.secure else {})}
        self.server = Proc(name, argv, self.log_dir, env=env)
        self._metadata: list[tuple[str, str]] = []
        if self.secure:
            channel, self._metadata = self.secure.admin_channel(self.address)
        else:
            channel = grpc.insecure_channel(self.address)
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            self.server.check_alive()
            raise
        self._registry = worker_pb2_grpc.RegistryStub(channel)
        self._list_req = worker_pb2.ListWorkersRequest()
        self.app = tt_tasks.app
        self.noop, self.add = tt_tasks.noop, tt_tasks.add
        if self.own_app:  # an App of its own for the same tasks (with the CA and a producer token)
            import tasktide

            settings = tasktide.ClientSettings.from_env(address=self.address)
            if self.secure:
                settings = self.secure.client_settings(settings)
            self.app = tasktide.App("bench", settings=settings)
            self.noop, self.add = self.app.task(tt_tasks.noop.fn), self.app.task(tt_tasks.add.fn)
        self.client = self.app.client

    def twin(self, secure: bool) -> TasktideSystem:
        """A fresh platform like this one, started with its workers, with TLS and tokens on when
        `secure`. It uses another database of the same Redis server (2 plain, 3 secure), so the
        twins can run side by side."""
        base, _, db = self.redis_url.rpartition("/")
        twin = TasktideSystem(
            f"{base}/{int(db) + (3 if secure else 2)}", self.log_dir, self.n_workers, self.concurrency, self.prefetch
        )
        twin.own_app = True
        if secure:
            twin.name = "tasktide, TLS and tokens"
            twin.secure = make_credentials(self.log_dir / "tls")
        else:
            twin.name = "tasktide, plain"
        twin.start()
        twin.start_workers()
        return twin

    def pids(self) -> list[int]:
        return [p.pid for p in (self.server, *self.workers) if p is not None]

    def _worker_count(self) -> int:
        return len(self._registry.ListWorkers(self._list_req, metadata=self._metadata).workers)

    def start_workers(self) -> None:
        for i in range(self.n_workers):
            argv = python_argv("-m", "tasktide.cli", "--log-level", "WARNING", "--address", self.address, "worker")
            argv += ["bench.tt_tasks:app", "--concurrency", str(self.concurrency)]
            if self.prefetch:
                argv += ["--prefetch", str(self.prefetch)]
            env = self.secure.worker_env() if self.secure else None
            name = f"tasktide-worker-{i}{'-secure' if self.secure else ''}"
            self.workers.append(Proc(name, argv, self.log_dir, env=env))

        def ready() -> bool:
            for w in self.workers:
                w.check_alive()
            return self._worker_count() >= self.n_workers

        wait_until(ready, 60, "tasktide workers to connect")
        self._collect(self._submit_bulk(50))  # warm-up, not measured

    def _submit_bulk(self, n: int) -> list[str]:
        noop = self.noop
        ids: list[str] = []
        for start in range(0, n, BATCH):
            specs = [noop.spec() for _ in range(min(BATCH, n - start))]
            ids += [h.id for h in self.client.submit_many(specs)]
        return ids

    def _collect(self, ids: list[str]) -> int:
        """Watch until every task is final; returns how many succeeded."""
        from tasktide.v1 import task_pb2

        ok = 0
        for chunk in _chunks(ids, WATCH_CHUNK):
            for ev in self.client.watch(chunk, final_only=True):
                if ev.state == task_pb2.TASK_STATE_SUCCEEDED and not ev.progress_only:
                    ok += 1
        if ok != len(ids):
            raise RuntimeError(f"tasktide: {ok} of {len(ids)} tasks succeeded")
        return ok

    def _profiled(self, workload: str) -> contextlib.AbstractContextManager[None]:
        if self.profiler is None or self.server is None:
            return contextlib.nullcontext()
        return self.profiler.record(workload, {"server": self.server.pid, "worker": self.workers[0].pid})

    def queued_memory(self, n: int) -> dict[str, float]:
        before = settle_used_memory(self.redis)
        self._submit_bulk(n)
        after = settle_used_memory(self.redis)
        self.redis.flushdb()
        return {"bytes": (after - before) / n}

    def throughput(self, n: int) -> dict[str, float]:
        with self._profiled("throughput"):
            t0 = time.perf_counter()
            self._collect(self._submit_bulk(n))
            elapsed = time.perf_counter() - t0
        return {"rate": n / elapsed, "seconds": elapsed}

    def submit_rate(self, n: int) -> dict[str, float]:
        return self._one_by_one(self.add, n, "submit")

    def submit_direct(self, n: int) -> dict[str, float]:
        """The same loop with submission straight to the platform's Redis: the scheduler's checks
        and the registry's enqueue script run in this process (scheduler/direct.py)."""
        return self._one_by_one_with(n, "submit_direct", submit_redis_url=self.redis_url)

    def submit_pipelined(self, n: int) -> dict[str, float]:
        """The same loop with pipelined submission: delay() returns before the platform confirms;
        the timed part ends when every task is confirmed (flush)."""
        return self._one_by_one_with(n, "submit_pipelined", pipelined_submit=True)

    def _one_by_one_with(self, n: int, workload: str, **settings: Any) -> dict[str, float]:
        """`_one_by_one` from an App of its own with these client settings."""
        import tasktide

        app = tasktide.App("bench", settings=dataclasses.replace(self.app.settings, **settings))
        try:
            return self._one_by_one(app.task(self.add.fn), n, workload, app.client.flush)
        finally:
            app.close()

    def _one_by_one(
        self, add: Any, n: int, workload: str, confirm: Callable[[], None] = lambda: None
    ) -> dict[str, float]:
        """`add.delay(i, i)` n times, timed until `confirm` returns; then every result is collected
        (untimed), so the next workload starts idle."""
        with self._profiled(workload):
            t0 = time.perf_counter()
            handles = [add.delay(i, i) for i in range(n)]
            confirm()
            elapsed = time.perf_counter() - t0
        self._collect([h.id for h in handles])
        return {"rate": n / elapsed, "seconds": elapsed}

    def latency(self, n: int) -> dict[str, float]:
        return round_trips(self.add, n, "tasktide")

    def worker_rss(self) -> dict[str, float]:
        rss = sum(tree_rss_bytes(w.pid) for w in self.workers)
        server = tree_rss_bytes(self.server.pid) if self.server else 0
        return {"rss": rss / MIB, "server_rss": server / MIB}

    def index_cost(self, n: int) -> dict[str, dict[str, float]]:
        """What the visibility index costs: Redis bytes per indexed task (the tasks of the runs so
        far), then bulk throughput with the index off and on, each on a restarted server, workers
        and an empty Redis (the same conditions for both)."""
        out = {"index_memory": self._index_bytes()}
        for key, on in (("throughput_index_off", False), ("throughput_index_on", True)):
            self._restart(index=on)
            out[key] = self.throughput(n)
        return out

    def _index_bytes(self) -> dict[str, float]:
        keys = list(self.redis.scan_iter("tt:r:ix:*", count=1000))
        used = sum(int(self.redis.memory_usage(k, samples=0) or 0) for k in keys)
        entries = sum(int(self.redis.zcard(k)) for k in keys if k.endswith(b":z"))
        return {"bytes": used / entries if entries else 0.0, "entries": float(entries)}

    def _restart(self, index: bool) -> None:
        for w in self.workers:
            w.stop()
        self.workers.clear()
        if self.server is not None:
            self.server.stop()
        self.index = index
        self.start()  # the same address: the client's channel reconnects
        self.start_workers()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers.clear()
        if self.server is not None:
            self.server.stop()
            self.server = None
        with contextlib.suppress(Exception):
            self.app.close()
            self.redis.flushdb()
