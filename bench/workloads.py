"""The five workloads, their counts, and what each system under test must provide to run them."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bench.procs import tree_cpu_seconds
from bench.producers import ProducerCounts, producer_rows


@dataclass(frozen=True)
class Counts:
    throughput: int = 20_000
    submit: int = 5_000
    latency: int = 500
    memory: int = 20_000

    @classmethod
    def quick(cls) -> Counts:
        return cls(throughput=500, submit=200, latency=30, memory=500)

    def scaled(self, factor: float) -> Counts:
        def f(n: int) -> int:
            return max(1, round(n * factor))

        return Counts(f(self.throughput), f(self.submit), f(self.latency), f(self.memory))


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    unit: str
    metrics: tuple[str, ...]
    better: str  # "higher" or "lower": which way the ratio tasktide / Celery should go
    goal: float | None  # the ratio the project aims for (issue 6), None when there is none

    def n(self, counts: Counts) -> int:
        return {
            "throughput": counts.throughput,
            "submit": counts.submit,
            "submit_direct": counts.submit,
            "submit_pipelined": counts.submit,
            "cpu_bulk": counts.throughput,
            "cpu_one_by_one": counts.submit,
            "latency": counts.latency,
            "redis_memory": counts.memory,
            "worker_rss": 0,
            "secure_throughput": counts.throughput,
            "secure_latency": counts.latency,
            "secure_cost": 0,
            "index_memory": 0,
            "throughput_index_off": counts.throughput,
            "throughput_index_on": counts.throughput,
            "producers_threads": counts.submit,
            "producers_processes": counts.submit,
            "latency_under_load": counts.latency,
        }[self.key]


WORKLOADS = (
    Workload("throughput", "end-to-end throughput, bulk submit", "tasks/s", ("rate",), "higher", 10.0),
    Workload(
        "submit", "one-by-one add.delay(i, i), tasktide through the scheduler", "tasks/s", ("rate",), "higher", 2.0
    ),
    Workload(
        "submit_direct",
        "one-by-one add.delay(i, i), tasktide straight to Redis (TASKTIDE_SUBMIT_REDIS_URL)",
        "tasks/s",
        ("rate",),
        "higher",
        2.0,
    ),
    Workload(
        "submit_pipelined",
        "one-by-one add.delay(i, i), tasktide pipelined (confirmed at the end)",
        "tasks/s",
        ("rate",),
        "higher",
        None,
    ),
    Workload("latency", "round trip on an idle system", "ms", ("p50", "p99"), "lower", 1.0),
    # Many producers are the one-by-one path of a web server: the same goal as "submit".
    Workload("producers_threads", "8 producer threads, add.delay one by one", "tasks/s", ("rate",), "higher", 2.0),
    Workload("producers_processes", "4 producer processes, add.delay one by one", "tasks/s", ("rate",), "higher", 2.0),
    Workload(
        "latency_under_load",
        "round trip while loaded at half the bulk capacity (each system at half its own)",
        "ms",
        ("p50", "p99"),
        "lower",
        1.0,
    ),
    Workload(
        "cpu_bulk",
        "CPU time per task, bulk (every process: server, workers, Redis, client)",
        "us",
        ("cpu",),
        "lower",
        None,
    ),
    Workload("cpu_one_by_one", "CPU time per task, one-by-one add.delay (same)", "us", ("cpu",), "lower", None),
    Workload("redis_memory", "Redis memory per queued task", "bytes/task", ("bytes",), "lower", 0.4),
    Workload("worker_rss", "worker resident memory after the run", "MiB", ("rss",), "lower", None),
    Workload(
        "secure_throughput",
        "end-to-end throughput, bulk submit, TLS and tokens on",
        "tasks/s",
        ("rate",),
        "higher",
        None,
    ),
    Workload("secure_latency", "round trip on an idle system, TLS and tokens on", "ms", ("p50", "p99"), "lower", None),
    Workload(
        "secure_cost",
        "TLS and tokens, on / off, alternated rounds (medians)",
        "on / off",
        ("throughput", "latency_p50"),
        "higher",
        None,
    ),
    Workload("index_memory", "Redis memory of the task index per task listed", "bytes/task", ("bytes",), "lower", None),
    Workload(
        "throughput_index_off",
        "end-to-end throughput, bulk, task index off (restarted)",
        "tasks/s",
        ("rate",),
        "higher",
        None,
    ),
    Workload(
        "throughput_index_on",
        "end-to-end throughput, bulk, task index on (restarted)",
        "tasks/s",
        ("rate",),
        "higher",
        None,
    ),
)


class System(Protocol):
    """One system under test. start() leaves it with no worker running; start_workers() adds them."""

    name: str

    def start(self) -> None: ...

    def pids(self) -> list[int]:
        """The system's own processes (children included when listed): for CPU time."""
        ...

    def queued_memory(self, n: int) -> dict[str, float]: ...

    def start_workers(self) -> None: ...

    def throughput(self, n: int) -> dict[str, float]: ...

    def submit_rate(self, n: int) -> dict[str, float]: ...

    def submit_direct(self, n: int) -> dict[str, float]: ...

    def submit_pipelined(self, n: int) -> dict[str, float]: ...

    def latency(self, n: int) -> dict[str, float]: ...

    def worker_rss(self) -> dict[str, float]: ...

    def twin(self, secure: bool) -> System | None:
        """A fresh instance beside this one, started with its workers, with TLS and tokens on when
        `secure`; None: the system has no such mode here, and its secure rows stay empty."""
        ...

    def stop(self) -> None: ...


def run_system(
    system: System, counts: Counts, log: Callable[[str], None] = print, redis_pid: int = 0
) -> dict[str, dict[str, float]]:
    """Every workload against one system, in an order that keeps each measurement clean:
    queued memory first (no worker yet), then throughput, submit rate, latency on the now idle
    system, and the workers' memory after all of that; then, where the system has the mode, the
    cost of TLS and tokens (secure_rows). The CPU time of the system's processes,
    Redis (`redis_pid`) and this client is taken around the throughput and submit runs."""
    out: dict[str, dict[str, float]] = {}
    system.start()
    try:
        log(f"[{system.name}] redis memory per queued task, n={counts.memory}")
        out["redis_memory"] = system.queued_memory(counts.memory)
        system.start_workers()

        def cpu() -> float:
            return tree_cpu_seconds([*system.pids(), *([redis_pid] if redis_pid else [])])

        log(f"[{system.name}] throughput, n={counts.throughput}")
        before = cpu()
        out["throughput"] = system.throughput(counts.throughput)
        out["cpu_bulk"] = {"cpu": (cpu() - before) / counts.throughput * 1e6}
        log(f"[{system.name}] one-by-one submit, n={counts.submit}")
        before = cpu()
        out["submit"] = system.submit_rate(counts.submit)
        out["cpu_one_by_one"] = {"cpu": (cpu() - before) / counts.submit * 1e6}
        log(f"[{system.name}] one-by-one submit, straight to Redis, n={counts.submit}")
        out["submit_direct"] = system.submit_direct(counts.submit)
        log(f"[{system.name}] one-by-one submit, pipelined, n={counts.submit}")
        out["submit_pipelined"] = system.submit_pipelined(counts.submit)
        log(f"[{system.name}] round-trip latency, n={counts.latency}")
        out["latency"] = system.latency(counts.latency)
        out["worker_rss"] = system.worker_rss()
        out.update(
            producer_rows(
                system, ProducerCounts(counts.submit, counts.latency), out["throughput"]["rate"], log, redis_pid
            )
        )
        off = system.twin(secure=False)
        if off is not None:
            try:
                on = system.twin(secure=True)
                assert on is not None
                try:
                    out.update(secure_rows(off, on, counts, log))
                finally:
                    on.stop()
            finally:
                off.stop()
        index_cost = getattr(system, "index_cost", None)  # tasktide only: its task index
        if index_cost is not None:
            log(f"[{system.name}] task index: memory, throughput off and on, n={counts.throughput}")
            out.update(index_cost(counts.throughput))
    finally:
        system.stop()
    return out


SECURE_ROUNDS = 2  # each round is a throughput and a latency run of both instances


def secure_rows(
    off: System, on: System, counts: Counts, log: Callable[[str], None], rounds: int = SECURE_ROUNDS
) -> dict[str, dict[str, float]]:
    """Throughput and round trip of `on` (TLS and tokens) against `off`, two fresh instances running
    side by side (the system of the other rows carries the state of every workload before): they
    alternate, `rounds` times each, so a machine whose load changes during the run weighs
    on both alike; the figures are the medians of the rounds."""
    rates: dict[str, list[float]] = {"off": [], "on": []}
    p50: dict[str, list[float]] = {"off": [], "on": []}
    p99: dict[str, list[float]] = {"off": [], "on": []}
    for r in range(rounds):
        for key, system in (("off", off), ("on", on)):
            log(f"[{system.name}] throughput, round {r + 1} of {rounds}, n={counts.throughput}")
            rates[key].append(system.throughput(counts.throughput)["rate"])
    for r in range(rounds):
        for key, system in (("off", off), ("on", on)):
            log(f"[{system.name}] round-trip latency, round {r + 1} of {rounds}, n={counts.latency}")
            lat = system.latency(counts.latency)
            p50[key].append(lat["p50"])
            p99[key].append(lat["p99"])
    med = statistics.median
    return {
        "secure_throughput": {"rate": med(rates["on"]), "off_rate": med(rates["off"])},
        "secure_latency": {"p50": med(p50["on"]), "p99": med(p99["on"]), "off_p50": med(p50["off"])},
        "secure_cost": {
            "throughput": med(rates["on"]) / med(rates["off"]),
            "latency_p50": med(p50["on"]) / med(p50["off"]),
        },
    }
