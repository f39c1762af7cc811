"""`python -m bench --only scaling`: what grows with the work held, and what a hot queue's partitions
give, measured on one Redis server on this machine. The figures of docs/scaling.md.

- queued tasks (1k, 100k, 1M): Redis bytes per task; Redis CPU and commands per dispatched task
  with that many waiting (bench/scaling_store.py);
- queues (10, 1k, 10k, one task each): one lease-reaper pass and one housekeeping pass;
- delayed tasks (100k an hour ahead): server and Redis CPU per second idle against an empty delayed
  set; then 10k coming due at once: how fast the pump moves them and at what CPU per task;
- idle worker sessions (0, 50, 200): server and Redis CPU per second;
- priority across partitions: the start order of 3,000 waiting tasks of mixed priorities taken by
  one session, on 3 partitions and on 1;
- one hot queue on 3 partitions against 1: bulk throughput in the same run, alternately, with
  Redis CPU and commands per task (so the tasks/s one Redis primary carries).

--scale multiplies the counts (0.1 on a loaded machine: 100k queued instead of 1M, and so on).
Prints one JSON object, then a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

from bench import scaling_server, scaling_store
from tasktide_services.common.redis_server import start_redis


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _shown(out: dict[str, Any], part: str) -> None:
    """A part's figures as soon as it ends (a later part failing loses nothing)."""
    _log(json.dumps({part: out[part]}))


def _n(x: float, scale: float, least: int = 1) -> int:
    return max(least, int(x * scale))


def run(scale: float, work: Path, parts: set[str]) -> dict[str, Any]:
    server = start_redis(work / "redis", appendonly=False)
    url = f"redis://127.0.0.1:{server.port}/0"
    _log(f"redis-server on port {server.port}; logs in {work}")
    out: dict[str, Any] = {"scale": scale}
    try:
        r = redis.Redis.from_url(url)
        if "queued" in parts:
            sizes = sorted({1000, _n(100_000, scale, 1000), _n(1_000_000, scale, 1000)})
            out["queued"] = scaling_store.queued(r, sizes, _log)
            _shown(out, "queued")
        if "queues" in parts:
            out["queues"] = scaling_store.many_queues(
                url, sorted({10, _n(1000, scale, 10), _n(10_000, scale, 10)}), _log
            )
            _shown(out, "queues")
        if parts & {"delayed", "sessions", "priority", "hot"}:
            p = scaling_server.Platform(url, work)
            try:
                if "delayed" in parts:
                    out["delayed"] = scaling_server.delayed(p, _n(100_000, scale), _n(10_000, scale), _log)
                    _shown(out, "delayed")
                if "sessions" in parts:
                    out["sessions"] = scaling_server.sessions(p, sorted({0, _n(50, scale), _n(200, scale)}), _log)
                    _shown(out, "sessions")
                if "priority" in parts:
                    n = _n(3000, scale, 300)
                    out["priority"] = [
                        scaling_server.priority_order(p, n, credit, pattern, partitions)
                        for pattern in ("random", "periodic")
                        for credit in (1, 12)
                        for partitions in (1, 3)
                    ]
                    _shown(out, "priority")
                if "hot" in parts:
                    p.start_workers(2, "hot1,hot3", concurrency=4)
                    out["hot"] = scaling_server.hot_queue(p, _n(4000, scale, 200), 2, _log)
                    _shown(out, "hot")
            finally:
                p.stop()
    finally:
        server.stop()
    return out


PARTS = ("queued", "queues", "delayed", "sessions", "priority", "hot")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench --only scaling", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--work-dir", type=Path)
    args, _ = ap.parse_known_args(argv)
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tasktide-scaling-")))
        work.mkdir(parents=True, exist_ok=True)
        figures = run(args.scale, work, parts)
    print(json.dumps(figures, indent=1))
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
