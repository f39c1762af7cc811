"""Zero-code tracing: `opentelemetry-instrument` runs a producer script and `tasktide worker` whose
code has no tracing in it, and one trace goes from the producer's send span to the worker's process
span (TasktideInstrumentor, found through the `opentelemetry_instrumentor` entry point)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tasktide import App, AsyncClient, Client
from tasktide._hooks import Hooks
from tasktide.contrib.opentelemetry import TasktideInstrumentor, TracingHooks
from tasktide_services.testing import service_env
from tests.otlp_receiver import OtlpReceiver, Span
from tests.processes import stop

PRODUCER, CONSUMER = 4, 5
BIN = Path(sys.executable).parent
INSTRUMENT = str(BIN / "opentelemetry-instrument")

# The application: plain tasktide, nothing about tracing.
APP = """
import tasktide

app = tasktide.App("zero-code")

@app.task(name="zero_code.add")
def add(a, b):
    return a + b
"""

PRODUCER_SCRIPT = """
import sys
from zc_app import add

handle = add.apply_async((2, 3), queue=sys.argv[1])
assert handle.get(timeout=60) == 5
print(handle.id)
"""


@pytest.fixture()
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


def otel_env(receiver: OtlpReceiver, service: str, address: str, app_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the `tasktide` command of this environment
        "PYTHONPATH": str(app_dir),
        **service_env(address),
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def test_the_instrumentor_is_registered_for_opentelemetry_instrument():
    (ep,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "tasktide"]
    assert ep.load() is TasktideInstrumentor


def test_one_trace_from_producer_to_worker_with_no_tracing_code(receiver, platform, tmp_path):
    queue = f"zc-{uuid.uuid4().hex[:10]}"
    (tmp_path / "zc_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "produce.py").write_text(textwrap.dedent(PRODUCER_SCRIPT))
    for source in ("zc_app.py", "produce.py"):
        assert "opentelemetry" not in (tmp_path / source).read_text()
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed with the worker
    worker = subprocess.Popen(
        [INSTRUMENT, "tasktide", "worker", "zc_app:app", "--queues", queue, "-c", "2"],
        env=otel_env(receiver, "zc-worker", platform.address, tmp_path),
        cwd=tmp_path,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        produced = subprocess.run(
            [INSTRUMENT, sys.executable, "produce.py", queue],
            env=otel_env(receiver, "zc-producer", platform.address, tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert produced.returncode == 0, produced.stderr
        task_id = produced.stdout.split()[-1]

        def complete(spans: list[Span]) -> bool:
            mine = [s for s in spans if s.attributes.get("messaging.message.id") == task_id]
            return {s.kind for s in mine} >= {PRODUCER, CONSUMER}

        spans = receiver.wait_for(complete, timeout=60)
    finally:
        stop([worker])
        worker_log.close()

    mine = [s for s in spans if s.attributes.get("messaging.message.id") == task_id]
    (send,) = [s for s in mine if s.kind == PRODUCER]
    (process,) = [s for s in mine if s.kind == CONSUMER]
    assert (send.service, send.name, send.parent_id) == ("zc-producer", f"send {queue}", "")
    assert (process.service, process.name) == ("zc-worker", f"process {queue}")
    # One trace: the worker's span is the child of the producer's (the services here trace nothing).
    assert process.trace_id == send.trace_id
    assert process.parent_id == send.span_id
    assert process.attributes["tasktide.outcome"] == "success"
    # Each process exported through the provider opentelemetry-instrument configured, once.
    assert len([s for s in spans if s.kind == CONSUMER and s.attributes.get("messaging.message.id") == task_id]) == 1


def test_instrument_sets_default_hooks_and_uninstrument_removes_them():
    instrumentor = TasktideInstrumentor()
    explicit = TracingHooks()
    instrumentor.instrument()
    try:
        traced = App("zc-traced")
        own = App("zc-own", hooks=explicit)
        client = Client(address="127.0.0.1:1")

        async def async_hooks() -> Hooks:
            async with AsyncClient(address="127.0.0.1:1") as aclient:
                return aclient._hooks

        assert isinstance(traced.hooks, TracingHooks)
        assert own.hooks is explicit  # an explicit plugin wins
        assert client._hooks is traced.hooks
        assert asyncio.run(async_hooks()) is traced.hooks
        client.close()
    finally:
        instrumentor.uninstrument()
    after = App("zc-after")
    assert type(after.hooks) is Hooks
    assert type(Client(address="127.0.0.1:1")._hooks) is Hooks
    assert not instrumentor.is_instrumented_by_opentelemetry
