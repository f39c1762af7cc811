"""Sampling processes with py-spy while a workload runs, and summing the samples by function.

`python -m bench --only tasktide --profile DIR` leaves DIR/<workload>-<process>.txt (py-spy's raw
collapsed stacks); `python -m bench.profiling DIR` prints the top costs of each file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_TRIM = ("site-packages/", "lib/python3.11/", "/work/main/")
# Leaves where a thread waits rather than works: the event loop's poll, gRPC's completion-queue
# poller thread (C code under Thread.run), idle pool threads.
IDLE_LEAVES = frozenset(
    {
        "selectors.py:EpollSelector.select",
        "threading.py:Thread.run",
        "concurrent/futures/thread.py:_worker",
        "threading.py:Condition.wait",
    }
)
# Where a busy sample's time goes, by the package of its innermost frame.
_AREAS = (
    ("grpc/", "grpc"),
    ("redis/", "redis-py"),
    ("google/protobuf", "protobuf"),
    ("asyncio/", "asyncio"),
    ("services/", "tasktide services"),
    ("tasktide/", "tasktide client"),
    ("json/", "json"),
)


class Profiler:
    def __init__(self, out_dir: Path, rate: int = 200) -> None:
        self.out_dir = out_dir
        self.rate = rate
        found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(found).exists():
            raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
        self.py_spy = found
        out_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def record(self, workload: str, pids: dict[str, int]) -> Iterator[None]:
        procs = []
        for label, pid in pids.items():
            out = self.out_dir / f"{workload}-{label}.txt"
            argv = [self.py_spy, "record", "--pid", str(pid), "--rate", str(self.rate), "--nonblocking"]
            argv += ["--format", "raw", "--output", str(out)]
            log = (self.out_dir / f"{workload}-{label}.py-spy.log").open("wb")
            procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(1.0)  # let py-spy attach before the workload starts
        t0 = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - t0
            for label in pids:
                meta = {"seconds": round(seconds, 3), "rate": self.rate}
                (self.out_dir / f"{workload}-{label}.json").write_text(json.dumps(meta))
            for p, _ in procs:
                p.send_signal(signal.SIGINT)
            for p, log in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                log.close()


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in _TRIM:
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{m['fn']}"


def _area(frame: str) -> str:
    for prefix, name in _AREAS:
        if frame.startswith(prefix):
            return name
    return "other"


def summarize(path: Path, top: int = 25) -> str:
    """Where the busy samples of one raw py-spy file go: self and inclusive shares by
    file:function, and by package. Samples whose innermost frame is a wait are left out."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";")]
        if frames[-1] in IDLE_LEAVES:
            idle += n
            continue
        busy += n
        own[frames[-1]] += n
        areas[_area(frames[-1])] += n
        for name in set(frames):
            inclusive[name] += n
    if not busy:
        return f"== {path.name}: no busy samples"
    head = f"== {path.name}: {busy} busy samples ({idle} waiting)"
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        possible = meta["seconds"] * meta["rate"]
        head += f" over {meta['seconds']:.1f} s: busy {100.0 * busy / possible:.0f}% of one core (all threads)"
    lines = [head, "-- by package of the innermost frame"]
    lines += [f"{100.0 * n / busy:5.1f}%  {name}" for name, n in areas.most_common()]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"-- top {top} by {title} time")
        lines += [f"{100.0 * n / busy:5.1f}%  {name}" for name, n in counter.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profiling")
    p.add_argument("dir", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    for f in sorted(args.dir.glob("*-*.txt")):
        print(summarize(f, args.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
