"""Canvas rows: group, chord and chain, tasktide and Celery on the same Redis, alternated.

Each shape is run by both systems one after the other for every size (tasktide, then Celery,
`rounds` times below ONE_ROUND members, once from there), so both see the same load on a shared
machine; a rate is given as the median and the range of the rounds. The cost of a member does
not depend on that load: CPU time per member (every process of the system, the Redis server and
this client) and Redis commands per member (INFO commandstats; the idle other system's polling
is counted too, a few per second).

    group(add.s(i, 1) for i in range(n)).apply_async().get()
    chord(group(add.s(i, 1) for i in range(n)), total.s()).apply_async().get()
    chain(add.s(0, 1), add.s(1), ...).apply_async().get()      # n steps

Sizes: 1,000, 10,000 and 100,000 members (`--canvas-sizes`), a chain of 1,000 steps. Celery
runs a shape up to CELERY_MAX[shape] members (`--celery-canvas-max` raises it): its `get()` of a
group collects some 30-60 members/s on a 2-core machine and a chord's 18-55, so a chord of 10,000
alone would take it about 10 minutes; the rows above say "-" with the reason in the notes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.procs import tree_cpu_seconds

SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (100,)
CHAIN = 1_000
QUICK_CHAIN = 10
# Celery's largest run per shape (see above): 100k members would take it about an hour.
CELERY_MAX = {"canvas_group": 10_000, "canvas_chord": 1_000, "canvas_chain": 1_000}
CELERY_SLOWEST = {"canvas_group": 30, "canvas_chord": 18, "canvas_chain": 14}  # members/s seen on 2 cores
TIMEOUT = 1_800.0
ONE_ROUND = 10_000  # sizes from this one are run once per system (minutes each for Celery)
SHAPES = {
    "canvas_group": "group(add.s(i, 1) for i in range(n)).get()",
    "canvas_chord": "chord(group of n add.s(i, 1), total.s()).get()",
    "canvas_chain": "chain of n add steps .get()",
}
Run = Callable[[int], None]
Log = Callable[[str], None]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--canvas-sizes",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        help="comma-separated group and chord sizes (default 1000,10000,100000; --quick: 100)",
    )
    p.add_argument("--full", action="store_true", help=argparse.SUPPRESS)  # 100,000 is a default size now
    p.add_argument("--celery-canvas-max", type=int, help="run Celery's canvas rows up to this size (see CELERY_MAX)")
    p.add_argument("--canvas-rounds", type=int, default=2, help="alternated rounds per canvas size (default 2)")
    p.add_argument("--no-canvas", action="store_true", help="skip the canvas rows")


@dataclass
class Side:
    """One system under test with what the canvas rows need of it."""

    name: str
    shapes: dict[str, Run]
    pids: Callable[[], list[int]]
    stop: Callable[[], None]


def _expect(system: str, shape: str, got: Any, want: Any) -> None:
    if got != want:
        raise RuntimeError(f"{system}: {shape} returned {str(got)[:200]}, expected {str(want)[:200]}")


def tasktide_side(redis_url: str, work: Path, args: argparse.Namespace) -> Side:
    import tasktide
    from bench import tt_tasks
    from bench.tasktide_system import TasktideSystem

    system = TasktideSystem(redis_url, work, concurrency=args.concurrency, prefetch=args.prefetch)
    system.own_app = True  # an App for this platform's address (the main run's App is closed)
    system.start()
    system.start_workers()
    add, total = system.add, system.app.task(tt_tasks.total.fn)

    def group(n: int) -> None:
        got = tasktide.group(add.s(i, 1) for i in range(n)).apply_async().get(timeout=TIMEOUT)
        _expect("tasktide", "group", got, list(range(1, n + 1)))

    def chord(n: int) -> None:
        members = tasktide.group(add.s(i, 1) for i in range(n))
        got = tasktide.chord(members, total.s()).apply_async().get(timeout=TIMEOUT)
        _expect("tasktide", "chord", got, n * (n + 1) // 2)

    def chain(n: int) -> None:
        got = tasktide.chain(add.s(0, 1), *(add.s(1) for _ in range(n - 1))).apply_async().get(timeout=TIMEOUT)
        _expect("tasktide", "chain", got, n)

    shapes: dict[str, Run] = {"canvas_group": group, "canvas_chord": chord, "canvas_chain": chain}
    return Side("tasktide", shapes, system.pids, system.stop)


def celery_side(redis_url: str, work: Path) -> Side:
    from celery import chain as cchain
    from celery import chord as cchord
    from celery import group as cgroup

    from bench.celery_system import CelerySystem

    system = CelerySystem(redis_url, work)
    system.start()
    system.start_workers()
    add, total = system.tasks.add, system.tasks.total

    def group(n: int) -> None:
        got = cgroup(add.s(i, 1) for i in range(n)).apply_async().get(timeout=TIMEOUT)
        _expect("celery", "group", got, list(range(1, n + 1)))

    def chord(n: int) -> None:
        got = cchord(cgroup(add.s(i, 1) for i in range(n)), total.s()).apply_async().get(timeout=TIMEOUT)
        _expect("celery", "chord", got, n * (n + 1) // 2)

    def chain(n: int) -> None:
        got = cchain(add.s(0, 1), *(add.s(1) for _ in range(n - 1))).apply_async().get(timeout=TIMEOUT)
        _expect("celery", "chain", got, n)

    shapes: dict[str, Run] = {"canvas_group": group, "canvas_chord": chord, "canvas_chain": chain}
    return Side("celery", shapes, system.pids, system.stop)


def _commands(r: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in r.info("commandstats").values())


def measure(side: Side, shape: str, n: int, r: redis.Redis, redis_pid: int) -> dict[str, float]:
    """One run of `shape` with n members: members/s, CPU µs and Redis commands per member."""

    def cpu() -> float:
        return tree_cpu_seconds([*side.pids(), redis_pid]) + time.process_time()

    cmds, before = _commands(r), cpu()
    t0 = time.perf_counter()
    side.shapes[shape](n)
    elapsed = time.perf_counter() - t0
    return {
        "rate": n / elapsed,
        "seconds": elapsed,
        "cpu_us": (cpu() - before) / n * 1e6,
        "redis_cmds": (_commands(r) - cmds) / n,
    }


def _brief(f: dict[str, float]) -> str:
    return f"{f['rate']:,.0f} members/s, {f['cpu_us']:,.0f} µs CPU and {f['redis_cmds']:.1f} Redis commands per member"


def _summary(samples: list[dict[str, float]]) -> dict[str, float] | None:
    if not samples:
        return None
    med = statistics.median
    rates = [s["rate"] for s in samples]
    return {
        "rate": med(rates),
        "rate_min": min(rates),
        "rate_max": max(rates),
        "cpu_us": med(s["cpu_us"] for s in samples),
        "redis_cmds": med(s["redis_cmds"] for s in samples),
    }


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    sizes = args.canvas_sizes or (QUICK_SIZES if args.quick else SIZES)
    chain = QUICK_CHAIN if args.quick else CHAIN
    groups = [("canvas_group", n) for n in sizes]
    return [*groups, ("canvas_chain", chain), *(("canvas_chord", n) for n in sizes)]  # Celery's slowest last


def run(
    base_url: str, dbs: dict[str, int], redis_pid: int, work: Path, args: argparse.Namespace, log: Log
) -> list[dict[str, Any]]:
    """Start each system (fresh, with its workers) beside the other and run every canvas row."""
    names = [s for s in ("tasktide", "celery") if not args.only or args.only == s]
    sides: list[Side] = []
    try:
        for name in names:
            url = f"{base_url}/{dbs[name]}"
            sides.append(tasktide_side(url, work, args) if name == "tasktide" else celery_side(url, work))
        r = redis.Redis.from_url(f"{base_url}/0")
        rows = []
        for shape, n in plan(args):
            samples: dict[str, list[dict[str, float]]] = {s.name: [] for s in sides}
            skipped: dict[str, str] = {}
            for i in range(1 if args.quick or n >= ONE_ROUND else args.canvas_rounds):
                for side in sides:
                    limit = args.celery_canvas_max or CELERY_MAX[shape]
                    if side.name == "celery" and n > limit:
                        slowest = CELERY_SLOWEST[shape]
                        skipped["celery"] = (
                            f"not run above {limit:,} members (--celery-canvas-max raises it): it collected as few"
                            f" as {slowest} members/s on 2 cores: {n:,} could take it {n / slowest / 60:,.0f} minutes"
                        )
                        continue
                    log(f"[{side.name}] {shape}, n={n}, round {i + 1}")
                    samples[side.name].append(measure(side, shape, n, r, redis_pid))
                    log(f"[{side.name}] {shape}, n={n}: {_brief(samples[side.name][-1])}")
            rows.append(
                _row(shape, n, _summary(samples.get("tasktide", [])), _summary(samples.get("celery", [])), skipped)
            )
        return rows
    finally:
        for side in sides:
            side.stop()


def _row(
    shape: str, n: int, tt: dict[str, float] | None, cel: dict[str, float] | None, skipped: dict[str, str]
) -> dict[str, Any]:
    ratio = None
    if tt and cel:
        ratio = {"rate": tt["rate"] / cel["rate"], "cpu_us": tt["cpu_us"] / cel["cpu_us"]}
    return {
        "workload": shape,
        "n": n,
        "unit": "members/s",
        "tasktide": tt,
        "celery": cel,
        "ratio": ratio,
        "better": "higher",
        "goal": None,
        "goal_met": None,
        **({"note": "; ".join(f"{k}: {v}" for k, v in skipped.items())} if skipped else {}),
    }


def _rate(f: dict[str, float] | None) -> str:
    if not f:
        return "-"
    return f"{f['rate']:,.0f} ({f['rate_min']:,.0f}-{f['rate_max']:,.0f})"


def _num(f: dict[str, float] | None, key: str) -> str:
    return f"{f[key]:,.0f}" if f else "-"


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one line per shape and size."""
    out = [
        "| canvas | n | tasktide members/s (range) | Celery members/s (range) | rate tasktide / Celery "
        "| CPU µs/member tasktide | Celery | Redis cmds/member tasktide | Celery |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['ratio']['rate']:.2f}x" if r["ratio"] else "-"
        celery = _rate(r["celery"]) if r["celery"] or "note" not in r else f"n/a ({r['note']})"
        tt, cel = r["tasktide"], r["celery"]
        out.append(
            f"| {SHAPES[r['workload']]} | {r['n']:,} | {_rate(tt)} | {celery} | {ratio} "
            f"| {_num(tt, 'cpu_us')} | {_num(cel, 'cpu_us')} | {_num(tt, 'redis_cmds')} | {_num(cel, 'redis_cmds')} |"
        )
    return "\n".join(out)
