"""`python -m bench`: tasktide and Celery 5 on one Redis server, same machine, same run.

Prints one JSON line per workload (tasktide's figures, Celery's and the ratio), then one table
(bench/summary.py) headed by the run's date, commit and machine: the Python rows against Celery,
many producers and latency under load, canvas, the Redis footprint per task, and the Go and
Node.js clients against Asynq and BullMQ (bench/polyglot). The table is also written as Markdown
to reports/bench.md. Progress goes to stderr; process logs to the --work-dir folder (a temporary
one by default).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench import canvas, meta, summary
from bench.databases import CELERY_DB, TASKTIDE_DB
from bench.procs import ROOT, bench_redis
from bench.profiling import Profiler
from bench.report import json_lines, lines
from bench.workloads import Counts, run_system


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small counts, for development and smoke tests")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every count (after --quick)")
    p.add_argument(
        "--only",
        choices=["tasktide", "celery", "footprint", "scaling"],
        help="run one system only (no ratios); footprint: the Redis footprint per task of both"
        " (bench/footprint.py); scaling: costs as work grows (bench/scaling.py)",
    )
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the tasktide server and a worker into DIR")
    p.add_argument("--concurrency", type=int, default=2, help="tasks at once per tasktide worker process")
    p.add_argument("--prefetch", type=int, default=0, help="tasktide worker --prefetch (0: its default)")
    p.add_argument("--work-dir", type=Path, help="Redis data and process logs (default: a temporary folder)")
    p.add_argument("--report", type=Path, default=ROOT / summary.REPORT, help="the Markdown copy of the table")
    p.add_argument("--no-footprint", action="store_true", help="skip the Redis footprint rows")
    p.add_argument("--no-polyglot", action="store_true", help="skip the Go and Node.js rows")
    p.add_argument("--polyglot-rounds", type=int, default=2, help="alternated rounds of the Go and Node.js rows")
    canvas.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "scaling" in argv and "--only" in argv:  # its own counts and options: bench/scaling.py
        from bench import scaling

        return scaling.main([a for a in argv if a not in ("--only", "scaling")])
    args = _parser().parse_args(argv)
    t0 = time.monotonic()
    counts = (Counts.quick() if args.quick else Counts()).scaled(args.scale)
    groups: list[summary.Group] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        work, server, base = bench_redis(stack, args.work_dir)
        info = meta.collect(base)
        _log(f"redis-server on port {server.port}; logs in {work}")
        profiler = Profiler(args.profile) if args.profile else None
        if args.only == "footprint":
            return _footprint(base, work, args, counts)
        figures: dict[str, dict[str, dict[str, float]]] = {}
        for name in _names(args):
            redis.Redis.from_url(base).flushall()
            system = _system(name, base, work, args, profiler)
            figures[name] = run_system(system, counts, _log, redis_pid=server.process.pid)
        rows = lines(figures.get("tasktide"), figures.get("celery"), counts)
        groups += summary.python_groups(rows)
        dbs = {"tasktide": TASKTIDE_DB, "celery": CELERY_DB}
        canvas_rows = [] if args.no_canvas else canvas.run(base, dbs, server.process.pid, work, args, _log)
        groups.append(summary.canvas_group(canvas_rows, notes) if canvas_rows else _skipped("canvas", "--no-canvas"))
        groups.append(_footprint_group(base, work, args, counts))
        groups.append(_polyglot_group(work, args, notes))
    print(json_lines(rows + canvas_rows))
    print()
    text = summary.render(info, groups, notes, time.monotonic() - t0)
    print(text)
    path = summary.write(text, args.report)
    _log(f"the table is in {path}; the run took {meta.duration(time.monotonic() - t0)}")
    return 0


def _names(args: argparse.Namespace) -> list[str]:
    return [n for n in ("tasktide", "celery") if not args.only or args.only == n]


def _skipped(what: str, why: str) -> summary.Group:
    return summary.skipped_group(what, why)


def _idle_seconds(args: argparse.Namespace) -> float:
    from bench.footprint import IDLE_SECONDS, QUICK_IDLE_SECONDS

    return QUICK_IDLE_SECONDS if args.quick else IDLE_SECONDS


def _footprint_group(base: str, work: Path, args: argparse.Namespace, counts: Counts) -> summary.Group:
    """The Redis footprint per task of each system, started afresh (bench/footprint.py)."""
    title = "Redis footprint per task (bench/footprint.py)"
    if args.no_footprint:
        return _skipped(title, "--no-footprint")
    from bench.footprint import footprint

    n, sample = counts.submit, max(1, counts.latency // 10)
    figures: dict[str, dict[str, Any]] = {}
    for name in _names(args):
        db = TASKTIDE_DB if name == "tasktide" else CELERY_DB
        redis.Redis.from_url(base).flushall()
        system = _system(name, base, work, args, None)
        if name == "tasktide":
            system.own_app = True  # an App for this platform's address (the first run's is closed)
        system.start()
        try:
            system.start_workers()
            figures[name] = footprint(system, f"{base}/{db}", n, sample, _log, _idle_seconds(args))
        finally:
            system.stop()
    return summary.footprint_group(figures, n)


def _polyglot_group(work: Path, args: argparse.Namespace, notes: list[str]) -> summary.Group:
    """The Go and Node.js rows (bench/polyglot), on a Redis server and a platform of their own."""
    title = "Go against Asynq, Node.js against BullMQ (bench/polyglot)"
    if args.no_polyglot or args.only == "celery":
        return _skipped(title, "--no-polyglot" if args.no_polyglot else "--only celery")
    from bench.polyglot.__main__ import measure

    rounds = 1 if args.quick else args.polyglot_rounds
    results, skipped = measure(["go", "node"], rounds, args.quick, 8, work, _log, emit=_log)
    if rounds > 1:
        notes.append(f"Go and Node.js: figures are ranges over {rounds} alternated rounds, the ratio their median.")
    return summary.polyglot_group(results, skipped)


def _footprint(base: str, work: Path, args: argparse.Namespace, counts: Counts) -> int:
    from bench.footprint import footprint, table

    n, sample = counts.submit, max(1, counts.latency // 10)
    figures = {}
    for name, db in (("tasktide", TASKTIDE_DB), ("celery", CELERY_DB)):
        redis.Redis.from_url(base).flushall()
        system = _system(name, base, work, args, None)
        system.start()
        try:
            system.start_workers()
            figures[name] = footprint(system, f"{base}/{db}", n, sample, _log, _idle_seconds(args))
            if name == "tasktide":
                from bench.footprint_extra import extra_rows

                figures[name]["extra"] = extra_rows(system, f"{base}/{db}", max(1, n // 10), _log)
        finally:
            system.stop()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, n={n}, commit {meta.commit()}")
    print(table(figures))
    return 0


def _system(name: str, base: str, work: Path, args: argparse.Namespace, profiler: Profiler | None):  # type: ignore[no-untyped-def]
    if name == "tasktide":
        from bench.tasktide_system import TasktideSystem

        return TasktideSystem(
            f"{base}/{TASKTIDE_DB}", work, concurrency=args.concurrency, prefetch=args.prefetch, profiler=profiler
        )
    from bench.celery_system import CelerySystem

    return CelerySystem(f"{base}/{CELERY_DB}", work)


if __name__ == "__main__":
    sys.exit(main())
