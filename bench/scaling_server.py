"""Scaling parts measured on a running platform (`tasktide dev --redis-url`, every service in one
process): the delayed-set pump with many delayed tasks, the registry with many idle worker sessions,
and one hot queue on 3 partitions against 1. CPU is read from /proc (server) and INFO (Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import redis

import tasktide
from bench.procs import Proc, cpu_seconds, python_argv, wait_until
from bench.scaling_redis import empty, redis_use
from tasktide.v1 import task_pb2, worker_pb2, worker_pb2_grpc
from tasktide_services.common.redis_server import free_port
from tasktide_services.worker import keys

WINDOW = 5.0  # seconds over which an idle CPU rate is read
BATCH = 1000
HOT_QUEUES = {1: "hot1", 3: "hot3"}


class Platform:
    """The dev server (and workers when asked) on the bench's Redis, driven by the Python client."""

    def __init__(self, redis_url: str, work: Path) -> None:
        self.redis_url = redis_url
        self.work = work
        self.address = f"127.0.0.1:{free_port()}"
        self.redis = redis.Redis.from_url(redis_url)
        self.redis.flushdb(asynchronous=True)
        argv = python_argv("-m", "tasktide.cli", "--log-level", "WARNING", "dev", "--address", self.address)
        env = {"TASKTIDE_QUEUE_PARTITIONS": f"{HOT_QUEUES[3]}:3", "TASKTIDE_INDEX": "1"}
        self.server = Proc("scaling-dev", [*argv, "--redis-url", redis_url], work, env=env)
        channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(channel).result(timeout=60)
        self.registry = worker_pb2_grpc.RegistryStub(channel)
        self.client = tasktide.Client(self.address)
        self.workers: list[Proc] = []

    def workers_connected(self) -> int:
        return len(self.registry.ListWorkers(worker_pb2.ListWorkersRequest()).workers)

    def start_workers(self, n: int, queues: str, concurrency: int) -> None:
        for i in range(n):
            argv = python_argv("-m", "tasktide.cli", "--log-level", "WARNING", "--address", self.address, "worker")
            argv += ["bench.tt_tasks:app", "--concurrency", str(concurrency), "--queues", queues]
            self.workers.append(Proc(f"scaling-worker-{i}", argv, self.work, env={"TASKTIDE_ADDRESS": self.address}))
        wait_until(lambda: self.workers_connected() >= n, 60, "workers to connect")

    def rates(self, seconds: float = WINDOW) -> dict[str, float]:
        """Server CPU, Redis CPU and Redis commands per second over `seconds` of whatever runs now."""
        cpu0, use0, t0 = cpu_seconds(self.server.pid), redis_use(self.redis), time.perf_counter()
        time.sleep(seconds)
        cpu1, use1, t1 = cpu_seconds(self.server.pid), redis_use(self.redis), time.perf_counter()
        used = use1 - use0
        return {
            "server_cpu_ms_per_s": (cpu1 - cpu0) * 1000 / (t1 - t0),
            "redis_cpu_ms_per_s": used.cpu * 1000 / (t1 - t0),
            "redis_commands_per_s": used.calls / (t1 - t0),
        }

    def submit(self, n: int, queue: str, **options: Any) -> list[str]:
        ids: list[str] = []
        for start in range(0, n, BATCH):
            spec = {"queue": queue, **options}
            specs = [_noop(**spec) for _ in range(min(BATCH, n - start))]
            ids += [h.id for h in self.client.submit_many(specs)]
        return ids

    def collect(self, ids: list[str]) -> None:
        done = 0
        for start in range(0, len(ids), 5000):
            for ev in self.client.watch(ids[start : start + 5000], final_only=True):
                done += ev.state == task_pb2.TASK_STATE_SUCCEEDED and not ev.progress_only
        if done != len(ids):
            raise RuntimeError(f"{done} of {len(ids)} tasks succeeded")

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.client.close()
        self.server.stop()
        self.redis.flushdb(asynchronous=True)


def _noop(**options: Any) -> task_pb2.TaskSpec:
    from bench import tt_tasks

    return tt_tasks.noop.spec(**options)


def delayed(p: Platform, n: int, due: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Pump cost with `n` tasks waiting an hour (idle: none due), against an empty delayed set;
    then `due` tasks coming due at once beside them: how fast and at what CPU they are moved."""
    out: dict[str, Any] = {"delayed": n, "empty": p.rates()}
    log(f"delayed: submitting {n:,} tasks an hour ahead")
    p.submit(n, "later", countdown=3600)
    out["waiting"] = p.rates()
    due_at = time.time() + 3 + due / 2000
    log(f"delayed: {due:,} tasks due at once")
    for start in range(0, due, BATCH):
        p.submit(min(BATCH, due - start), "due", countdown=max(0.1, due_at - time.time()))
    wait_until(lambda: time.time() >= due_at, 120, "the due time")
    cpu0, use0, t0 = cpu_seconds(p.server.pid), redis_use(p.redis), time.perf_counter()
    ready = keys.queue_keys("due").ready
    wait_until(lambda: int(p.redis.zcard(ready)) >= due, 600, "due tasks to reach their queue", 0.01)
    took = time.perf_counter() - t0
    used = redis_use(p.redis) - use0
    out["moving"] = {
        "due": due,
        "seconds": took,
        "tasks_per_s": due / took,
        "server_cpu_us_per_task": (cpu_seconds(p.server.pid) - cpu0) * 1e6 / due,
        "redis_cpu_us_per_task": used.cpu * 1e6 / due,
    }
    empty(p.redis)
    return out


def sessions(p: Platform, counts: list[int], log: Callable[[str], None]) -> list[dict[str, float]]:
    """Idle cost of `count` worker sessions (hello and credit, nothing to do), per count."""
    out = []
    for count in counts:
        log(f"sessions: {count} idle")
        with _idle_sessions(p, count):
            wait_until(lambda count=count: p.workers_connected() >= count, 120, f"{count} sessions")
            time.sleep(1.0)
            out.append({"sessions": count, **p.rates()})
    return out


@contextlib.contextmanager
def _idle_sessions(p: Platform, count: int) -> Iterator[None]:
    """`count` Session streams on one event loop in a thread, open until the block ends."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    opened = threading.Event()

    async def one(stub: worker_pb2_grpc.RegistryStub, i: int) -> None:
        async def messages() -> Any:
            hello = worker_pb2.Hello(worker_id=f"idle-{i}", queues=["idle"], concurrency=4)
            yield worker_pb2.WorkerMessage(hello=hello)
            yield worker_pb2.WorkerMessage(credit=12)
            await stop.wait()

        call = stub.Session(messages())
        async for _ in call:
            pass

    async def main() -> None:
        async with grpc.aio.insecure_channel(p.address) as channel:
            stub = worker_pb2_grpc.RegistryStub(channel)
            tasks = [asyncio.create_task(one(stub, i)) for i in range(count)]
            opened.set()
            await stop.wait()
            await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    opened.wait(30)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        wait_until(lambda: p.workers_connected() == 0, 60, "sessions to end")


def hot_queue(p: Platform, n: int, rounds: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """One queue of 1 partition, then one of 3 (each `n` tasks, submitted in batches, all awaited),
    alternately `rounds` times, with the same workers consuming both; then a round of `n` // 4
    submitted one by one (`Client.submit`, the SubmitStream) on each."""
    out: list[dict[str, Any]] = []
    runs = [("bulk", r) for r in range(rounds)] + [("one by one", rounds)]
    for how, r in runs:
        for parts, queue in HOT_QUEUES.items():
            log(f"hot queue: round {r + 1}, {how}, {parts} partition(s)")
            count = n if how == "bulk" else n // 4
            cpu0, use0, t0 = cpu_seconds(p.server.pid), redis_use(p.redis), time.perf_counter()
            if how == "bulk":
                ids = p.submit(count, queue)
            else:
                ids = [p.client.submit("bench.noop", queue=queue).id for _ in range(count)]
            p.collect(ids)
            took = time.perf_counter() - t0
            used = redis_use(p.redis) - use0
            out.append(
                {
                    "submitted": how,
                    "partitions": parts,
                    "tasks": count,
                    "tasks_per_s": count / took,
                    "server_cpu_us_per_task": (cpu_seconds(p.server.pid) - cpu0) * 1e6 / count,
                    "redis_cpu_us_per_task": used.cpu * 1e6 / count,
                    "redis_commands_per_task": used.calls / count,
                }
            )
    return out


def priority_order(p: Platform, n: int, credit: int, pattern: str, parts: int = 3) -> dict[str, Any]:
    """How strict priority is across the `parts` partitions (3, or 1 for reference) of one queue:
    `n` tasks of priorities -50, 0 and 50 wait (queue paused), then one session with `credit` takes
    them, acknowledging each batch at once. `pattern`: "random" (seeded) or "periodic" (high, low,
    low, ...: a period equal to the partition count, the worst case for spreading by turn).
    Returns the share of tasks that started while a task of higher priority was still waiting, and
    how many lower-priority tasks started before a task (mean and most)."""
    queue = HOT_QUEUES[parts]
    rng = random.Random(14)
    prios = (
        [rng.choice((-50, 0, 50)) for _ in range(n)]
        if pattern == "random"
        else [(50, -50, -50)[i % 3] for i in range(n)]
    )
    p.client.pause_queue(queue)
    ids: list[str] = []
    for start in range(0, n, BATCH):
        specs = [_noop(queue=queue, priority=pr) for pr in prios[start : start + BATCH]]
        ids += [h.id for h in p.client.submit_many(specs)]
    prio_of = dict(zip(ids, prios, strict=True))
    order = asyncio.run(_drain(p, queue, set(ids), credit))
    started = [prio_of[t] for t in order]
    best_later = [max(started[i:]) for i in range(len(started))]
    inverted = [i for i, pr in enumerate(started) if pr < best_later[i]]
    # For each higher-priority task: how many lower-priority ones started before it.
    overtaken = []
    for i, pr in enumerate(started):
        overtaken.append(sum(1 for q in started[:i] if q < pr))
    return {
        "partitions": parts,
        "pattern": pattern,
        "tasks": n,
        "credit": credit,
        "inverted_share": len(inverted) / n,
        "mean_overtaken": statistics.fmean(overtaken),
        "max_overtaken": max(overtaken),
    }


async def _drain(p: Platform, queue: str, ids: set[str], credit: int) -> list[str]:
    """Resume `queue`, then take the tasks `ids` on one raw session; their ids in start order.
    Anything else assigned (a lease of an earlier run that expired) is acknowledged, not counted.
    The stream ends from the worker's side once all are acknowledged, so no lease is left behind."""
    order: list[str] = []
    outbox: asyncio.Queue[worker_pb2.WorkerMessage | None] = asyncio.Queue()
    outbox.put_nowait(worker_pb2.WorkerMessage(hello=worker_pb2.Hello(worker_id="order", queues=[queue])))
    outbox.put_nowait(worker_pb2.WorkerMessage(credit=credit))

    async def messages() -> Any:
        while (m := await outbox.get()) is not None:
            yield m

    async with grpc.aio.insecure_channel(p.address) as channel:
        stub = worker_pb2_grpc.RegistryStub(channel)
        call = stub.Session(messages())
        await stub.PauseQueue(worker_pb2.PauseQueueRequest(queue=queue, paused=False))
        async for msg in call:
            if msg.WhichOneof("kind") != "assignments":
                continue
            done = []
            for a in msg.assignments.assignments:
                if a.task.id in ids:
                    order.append(a.task.id)
                done.append(
                    task_pb2.Outcome(
                        task_id=a.task.id,
                        queue=a.task.spec.queue,
                        lease_token=a.lease_token,
                        attempt=a.task.attempt,
                        kind=task_pb2.OUTCOME_KIND_SUCCESS,
                    )
                )
            batch = worker_pb2.OutcomeBatch(outcomes=done, credit=len(done))
            outbox.put_nowait(worker_pb2.WorkerMessage(outcomes=batch))
            if len(order) >= len(ids):
                outbox.put_nowait(None)  # the registry records the outcomes, then ends the stream
    return order
