"""`python -m bench`: tasktide and Celery 5 on one Redis server, same machine, same run.

Prints one JSON line per workload (tasktide's figures, Celery's and the ratio), then a table.
Progress goes to stderr; process logs to the --work-dir folder (a temporary one by default).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

import redis

from bench import canvas
from bench.profiling import Profiler
from bench.report import json_lines, lines, table
from bench.workloads import Counts, run_system
from tasktide_services.common.redis_server import start_redis

TASKTIDE_DB = 0
CELERY_DB = 1


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
    canvas.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "scaling" in argv and "--only" in argv:  # its own counts and options: bench/scaling.py
        from bench import scaling

        return scaling.main([a for a in argv if a not in ("--only", "scaling")])
    args = _parser().parse_args(argv)
    counts = (Counts.quick() if args.quick else Counts()).scaled(args.scale)
    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tasktide-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        server = start_redis(work / "redis", appendonly=False)
        stack.callback(server.stop)
        base = f"redis://127.0.0.1:{server.port}"
        _log(f"redis-server on port {server.port}; logs in {work}")
        profiler = Profiler(args.profile) if args.profile else None
        if args.only == "footprint":
            return _footprint(base, work, args, counts)
        figures: dict[str, dict[str, dict[str, float]]] = {}
        for name in ("tasktide", "celery"):
            if args.only and args.only != name:
                continue
            redis.Redis.from_url(base).flushall()
            system = _system(name, base, work, args, profiler)
            figures[name] = run_system(system, counts, _log, redis_pid=server.process.pid)
        dbs = {"tasktide": TASKTIDE_DB, "celery": CELERY_DB}
        canvas_rows = [] if args.no_canvas else canvas.run(base, dbs, server.process.pid, work, args, _log)
    rows = lines(figures.get("tasktide"), figures.get("celery"), counts)
    print(json_lines(rows + canvas_rows))
    print()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}")
    print(table(rows))
    if canvas_rows:
        print()
        print(canvas.table(canvas_rows))
    return 0


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
            figures[name] = footprint(system, f"{base}/{db}", n, sample, _log)
            if name == "tasktide":
                from bench.footprint_extra import extra_rows

                figures[name]["extra"] = extra_rows(system, f"{base}/{db}", max(1, n // 10), _log)
        finally:
            system.stop()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, n={n}")
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
