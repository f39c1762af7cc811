"""What the observability hooks cost per task, outside the network: the hook calls one task meets
on its way (scheduler, registry dispatch and settle, worker attempt), in batches of 100.

    .venv/bin/python scripts/tracing_overhead.py                 # hook calls alone
    .venv/bin/python scripts/tracing_overhead.py --end-to-end    # tasks/s through the platform

Cases: no hooks; tracing on but the task sampled out (the client's traceparent says "not sampled");
tracing on and sampled (spans exported to nowhere); metrics. Compare with the cost of a task on the
platform (see bench/).
"""

from __future__ import annotations

import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tasktide._hooks import Hooks
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.observability.metrics import ServiceMetrics
from tasktide_services.observability.tracing import ServiceTracing

BATCH = 100
ROUNDS = 200


class Nowhere(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def tasks(sampled: bool) -> list[task_pb2.Task]:
    flags = "01" if sampled else "00"
    tp = f"00-{'ab' * 16}-{'cd' * 8}-{flags}"
    return [
        task_pb2.Task(id=f"{i:032x}", spec=task_pb2.TaskSpec(name="shop.add", queue="q", headers={"traceparent": tp}))
        for i in range(BATCH)
    ]


def per_task_us(service: ServiceHooks, worker: Hooks, sampled: bool) -> float:
    batch = tasks(sampled)
    assignments = [worker_pb2.Assignment(task=t, lease_token=1, delivery=1) for t in batch]
    outcomes = [task_pb2.Outcome(task_id=t.id, kind=1, started_ms=1, finished_ms=2) for t in batch]
    pairs = list(zip(outcomes, batch, strict=True))
    start = time.perf_counter()
    for _ in range(ROUNDS):
        with service.scheduling(batch, "submit"):
            pass
        service.dispatched("w1", assignments)
        for a, o in zip(assignments, outcomes, strict=True):
            with worker.process(a, "w1") as report:
                report(o)
        with service.settling(pairs):
            pass
    return (time.perf_counter() - start) / (ROUNDS * BATCH) * 1e6


def main() -> None:
    traced = TracerProvider()
    traced.add_span_processor(BatchSpanProcessor(Nowhere(), max_queue_size=1 << 16))
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("tasktide")
    cases = {
        "no hooks": (ServiceHooks(), Hooks(), False),
        "tracing, sampled out": (ServiceTracing(traced), TracingHooks(traced), False),
        "tracing, sampled": (ServiceTracing(traced), TracingHooks(traced), True),
        "metrics": (ServiceMetrics(meter), Hooks(), False),
    }
    for name, (service, worker, sampled) in cases.items():
        per_task_us(service, worker, sampled)  # warm up
        print(f"{name:24s} {per_task_us(service, worker, sampled):8.1f} us per task")
    traced.shutdown()


def end_to_end(n: int = 2000, repeat: int = 5) -> None:
    """Tasks per second through the whole platform in one process (services, worker and client
    share the interpreter, so every hook's CPU shows), with and without the hooks."""
    import asyncio
    import tempfile
    import threading
    import uuid
    from dataclasses import replace

    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from tasktide import App, Client, ClientSettings
    from tasktide._spec import build_spec
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.common.redis_server import start_redis
    from tasktide_services.common.settings import ServerSettings
    from tasktide_services.server import start
    from tasktide_services.testing import run_worker_thread

    redis_server = start_redis(tempfile.mkdtemp(), appendonly=False)
    app = App("bench")
    app.task(name="bench.add")(lambda x, y: x + y)
    sampled_out = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("tasktide")

    def run(service: ServiceHooks, client_hooks: Hooks) -> float:
        ready, stop = threading.Event(), threading.Event()
        box: dict[str, object] = {}

        async def serve() -> None:
            redis = await connect(redis_server.url)
            settings = replace(ServerSettings(), address="127.0.0.1:0", redis_url=redis_server.url)
            running = await start(settings, redis, hooks=service)
            box["address"] = f"127.0.0.1:{running.port}"
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await running.stop(1.0)
            await redis.aclose()

        thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        thread.start()
        ready.wait(30)
        address = str(box["address"])
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        specs = [build_spec("bench.add", [i, i], queue=queue) for i in range(n)]
        with Client(settings=ClientSettings.from_env({}, address=address), hooks=client_hooks) as client:
            with run_worker_thread(app, address, queues=(queue,), concurrency=8):
                t0 = time.perf_counter()
                handles = [h for i in range(0, n, 500) for h in client.submit_many(specs[i : i + 500])]
                events = client.watch([h.id for h in handles])
                done = sum(1 for ev in events if ev.state >= task_pb2.TASK_STATE_SUCCEEDED)
                elapsed = time.perf_counter() - t0
        assert done == n
        stop.set()
        thread.join(10)
        return n / elapsed

    cases = {
        "no hooks": (ServiceHooks(), Hooks()),
        "tracing, sampled out": (ServiceTracing(sampled_out), TracingHooks(sampled_out)),
        "metrics": (ServiceMetrics(meter), Hooks()),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):  # interleaved, so a busy moment of the machine hits every case alike
        for name, (service, client_hooks) in cases.items():
            rates[name].append(run(service, client_hooks))
    for name, got in rates.items():
        got.sort()
        runs = ", ".join(f"{r:.0f}" for r in got)
        print(f"{name:24s} {got[len(got) // 2]:8.0f} tasks/s (median; runs: {runs})")
    redis_server.stop()


if __name__ == "__main__" and "--end-to-end" in __import__("sys").argv:
    end_to_end()
elif __name__ == "__main__":
    main()
