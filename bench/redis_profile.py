"""Where Redis's CPU goes while tasks are submitted one by one through the scheduler and run: the
figure behind the "Redis CPU per task, one by one" row (bench/footprint.py), taken apart.

    python -m bench.redis_profile [--n 3000]

One platform (`tasktide dev` and two workers, as `make bench` runs them) on a Redis of its own.
After a warm-up, `add.delay(i, i)` n times, confirmed one by one, then every result collected:

- Redis's CPU per task (INFO cpu), and its commands per task (INFO commandstats);
- per script and per command: calls per task and microseconds per call (SLOWLOG with a threshold of
  0 over the same run: a script's time includes the commands it runs, which are also listed);
- with `perf` on PATH (and allowed to read the process), a second run sampled by `perf record` at
  2,000 Hz, its samples grouped: Lua (the interpreter and the scripting glue), the allocator,
  Redis's data structures (dicts, sorted sets, lists), the kernel (the network), and the rest
  (command dispatch, the protocol, replies).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from bench.databases import TASKTIDE_DB
from bench.footprint import per_task, script_names, snapshot
from bench.procs import bench_redis
from bench.tasktide_system import TasktideSystem

WARMUP = 500
PERF_HZ = 2000
# Symbol prefixes of each group of perf samples (user space); "[k]" samples are the kernel's.
GROUPS = (
    ("Lua", ("lua", "eval", "redisProtocolToLuaType", "sweep", "propagatemark")),
    ("allocator", ("malloc", "free", "realloc", "calloc", "_int_", "__malloc", "je_", "malloc_consolidate")),
    ("data structures", ("dict", "siphash", "zsl", "zip", "lp", "quicklist", "listpack", "newkey", "hash")),
)


def per_call(r: redis.Redis, run: Callable[[], object], n: int) -> tuple[float, float, list[tuple[str, float, float]]]:
    """`run()` with every command in SLOWLOG: Redis CPU per task, commands per task, and per script
    or command (calls per task, us per call), the costliest first."""
    names = script_names()
    r.config_set("slowlog-max-len", 1_000_000)
    r.config_set("slowlog-log-slower-than", 0)
    r.slowlog_reset()
    before = snapshot(r)
    try:
        run()
    finally:
        r.config_set("slowlog-log-slower-than", 10_000)
    cost = per_task(before, snapshot(r), n)
    took: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for entry in r.slowlog_get(1_000_000):
        args = [a.decode() if isinstance(a, bytes) else str(a) for a in entry["command"].split()[:2]]
        name = args[0].lower()
        if name in ("config", "slowlog", "info"):
            continue
        if name == "evalsha" and len(args) > 1:
            name = names.get(args[1], "script " + args[1][:8])
        took[name] += entry["duration"]
        count[name] += 1
    rows = [(k, count[k] / n, took[k] / count[k]) for k in sorted(took, key=lambda k: -took[k])]
    return cost["cpu"], cost["commands"], rows


def grouped(report: str) -> dict[str, float]:
    """Shares (%) of perf samples by group, from `perf report --sort sym -g none` lines."""
    shares: Counter[str] = Counter()
    for line in report.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%"):
            continue
        share, kind, symbol = float(parts[0][:-1]), parts[1], parts[2]
        if kind == "[k]":
            shares["kernel"] += share
            continue
        group = next((g for g, prefixes in GROUPS if symbol.startswith(prefixes)), "the rest")
        shares[group] += share
    return dict(shares)


def sampled(pid: int, run: Callable[[], object], work: Path) -> dict[str, float] | None:
    """`run()` under `perf record` of process `pid`; its samples grouped, or None without perf."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    data = work / "redis.perf"
    rec = subprocess.Popen(
        [perf, "record", "-F", str(PERF_HZ), "-o", str(data), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        run()
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(60)
    if rec.returncode not in (0, -signal.SIGINT) or not data.exists():
        return None
    out = subprocess.run(
        [perf, "report", "-i", str(data), "--no-children", "--stdio", "--sort", "sym", "-g", "none"],
        capture_output=True,
        text=True,
        check=False,
    )
    return grouped(out.stdout) or None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="tasks submitted one by one per run")
    args = ap.parse_args(argv)
    with contextlib.ExitStack() as stack:
        work, server, base = bench_redis(stack)
        system = TasktideSystem(f"{base}/{TASKTIDE_DB}", work)
        system.start()
        stack.callback(system.stop)
        system.start_workers()
        r = redis.Redis.from_url(base)
        system.submit_rate(WARMUP)

        cpu, commands, rows = per_call(r, lambda: system.submit_rate(args.n), args.n)
        print(f"one by one, n={args.n}: Redis CPU per task {cpu:.0f} us, commands per task {commands:.1f}")
        print("| script or command | calls per task | us per call | us per task |")
        print("|---|---:|---:|---:|")
        for name, calls, us in rows[:20]:
            print(f"| {name} | {calls:.2f} | {us:.1f} | {calls * us:.1f} |")

        shares = sampled(server.process.pid, lambda: system.submit_rate(args.n), work)
        if shares is None:
            print("perf is not available here: no samples")
            return
        print(f"\nRedis's CPU samples (perf record -F {PERF_HZ}), by group:")
        print("| group | share |")
        print("|---|---:|")
        for group, share in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"| {group} | {share:.1f} % |")


if __name__ == "__main__":
    main()
