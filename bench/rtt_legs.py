"""Where one round trip's time goes: `stamp.delay(i).get()` one after another, each split in legs
by timestamps, and the CPU time of every process per round trip.

    python -m bench.rtt_legs [--n 300] [--rounds 3] [--load RATE] [--workers 2] [--concurrency 2]

The platform is `tasktide dev` on a Redis of its own and `--workers` worker processes running this
module's app. The task `stamp` returns the wall-clock time (ns) at which its body started, so each
round trip splits into:

- **submit**: `delay()` until it returns (the platform confirmed the task);
- **confirmed -> task start**: until the task's body starts on a worker (negative when the worker
  starts it before the producer hears the confirmation);
- **task start -> result**: until `get()` returns the value (the task's outcome sent, recorded,
  announced, read by the waiting `Wait` call and sent back).

With `--load RATE` a separate process submits no-op tasks at RATE per second (a batch every 10 ms)
while the round trips run, as `bench.producers` does at half the measured bulk capacity.
CPU time is user + system from /proc (server, workers, Redis) and os.times (this process).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import tasktide
from bench.procs import paced
from bench.round_trips import percentiles

app = tasktide.App("legs")
ROOT = Path(__file__).resolve().parent.parent


@app.task
def stamp(i: int) -> list[int]:
    return [time.time_ns(), i]


@app.task
def noop() -> None:
    return None


def _load(address: str, rate: float) -> None:
    """Submit `noop` at `rate` per second until killed."""
    os.environ["TASKTIDE_ADDRESS"] = address
    client = app.client
    paced(rate, lambda k: client.submit_many([noop.spec() for _ in range(k)]), lambda: False)


def _round(n: int) -> dict[str, float]:
    """n round trips: p50/p99 of the whole and the median of each leg, in ms."""
    total, submit, to_start, to_result = [], [], [], []
    for i in range(n):
        t0 = time.time_ns()
        handle = stamp.delay(i)
        t1 = time.time_ns()
        started, echoed = handle.get(timeout=30)
        t2 = time.time_ns()
        if echoed != i:
            raise RuntimeError(f"stamp({i}) returned {echoed!r}")
        total.append((t2 - t0) / 1e6)
        submit.append((t1 - t0) / 1e6)
        to_start.append((started - t1) / 1e6)
        to_result.append((t2 - started) / 1e6)
    med = statistics.median
    return {
        **percentiles([ms / 1000 for ms in total]),
        "submit": med(submit),
        "confirmed -> task start": med(to_start),
        "task start -> result": med(to_result),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="round trips per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--load", type=float, default=0.0, help="no-op tasks per second meanwhile")
    args = p.parse_args(argv)
    from bench.procs import Proc, bench_redis, cpu_seconds, python_argv, wait_until
    from tasktide_services.common.redis_server import free_port

    with contextlib.ExitStack() as stack:
        work, redis_server, url = bench_redis(stack, prefix="tasktide-legs-")
        address = f"127.0.0.1:{free_port()}"
        os.environ["TASKTIDE_ADDRESS"] = address
        cli = ("-m", "tasktide.cli", "--log-level", "WARNING")
        server = Proc("dev", python_argv(*cli, "dev", "--address", address, "--redis-url", f"{url}/0"), work)
        stack.callback(server.stop)
        workers = []
        for i in range(args.workers):
            argv = python_argv(*cli, "--address", address, "worker", "bench.rtt_legs:app")
            workers.append(Proc(f"worker-{i}", [*argv, "--concurrency", str(args.concurrency)], work))
            stack.callback(workers[-1].stop)
        client = app.client

        def connected() -> bool:
            for proc in (server, *workers):
                proc.check_alive()
            try:
                return len(client.workers()) >= args.workers
            except tasktide.ServiceError:
                return False

        wait_until(connected, 60, "the server and its workers")
        if args.load:
            code = f"from bench.rtt_legs import _load; _load({address!r}, {args.load})"
            load = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
            stack.callback(load.kill)
            time.sleep(1.0)
        _round(30)  # warm-up, not measured

        def cpu() -> dict[str, float]:
            own = os.times()
            return {
                "server": cpu_seconds(server.pid),
                "workers": sum(cpu_seconds(w.pid) for w in workers),
                "redis": cpu_seconds(redis_server.process.pid),
                "client": own.user + own.system,
            }

        for r in range(args.rounds):
            before = cpu()
            got = _round(args.n)
            after = cpu()
            legs = ", ".join(f"{k} {v:.2f}" for k, v in got.items())
            per = {k: (after[k] - before[k]) / args.n * 1e6 for k in before}
            spent = ", ".join(f"{k} {v:,.0f}" for k, v in per.items())
            spent += f", all {sum(per.values()):,.0f}"
            print(f"round {r + 1}: ms: {legs} | CPU us per round trip: {spent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
