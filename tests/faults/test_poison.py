"""Poison inputs sent among good ones: NaN and infinite countdowns (on submission and on a retry),
JSON nested deeper than any parser's stack, huge headers, a spec that fails validation inside a
batch of good ones. Each gets a clear gRPC status (never INTERNAL), ends nothing else (a shared
stream, a loop of the services), and the good tasks around it run and keep one result each."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2
from tasktide_services.common.layout import is_final
from tests.faults.conftest import Rig, make_rig
from tests.faults.figures import wait_final

CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
DEEP = 100_000


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    queue = f"q-poison-{int(time.time() * 1000) % 100000}"
    with make_rig(tmp_path_factory.mktemp("poison"), queue) as r:
        yield r


@pytest.fixture(autouse=True)
def _own_markers(rig: Rig) -> None:
    """The cases share a platform: each counts the runs of its own tasks only (figures.unconfirmed)."""
    for marker in rig.markers.iterdir():
        marker.unlink()


def _stub(rig: Rig) -> scheduler_pb2_grpc.SchedulerStub:
    return scheduler_pb2_grpc.SchedulerStub(rig.client.scheduler_channel)


def _good(rig: Rig, key: str = "") -> task_pb2.TaskSpec:
    spec = task_pb2.TaskSpec(name="t.marked", queue=rig.queue, idempotency_key=key)
    spec.args.json = f'["{rig.markers}", 0.01]'.encode()
    return spec


def _status(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _healthy_and_counted(rig: Rig, case: str, good: list[str], started: float) -> None:
    """Every service still SERVING; the good tasks of the case run, nothing lost or recorded twice."""
    for name, address in rig.cluster.addresses.items():
        with grpc.insecure_channel(address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    good = good + rig.load(50).join()
    fig = rig.count(case, good, started)
    rig.assert_held(fig)


@pytest.mark.parametrize("countdown", [math.nan, math.inf, -math.inf, 1e300], ids=["nan", "inf", "-inf", "1e300"])
def test_non_finite_countdown_on_submission(rig: Rig, countdown: float) -> None:
    started = time.monotonic()
    spec = _good(rig)
    spec.countdown = countdown
    code = _status(lambda: _stub(rig).Submit(scheduler_pb2.SubmitRequest(spec=spec), timeout=20))
    batch = scheduler_pb2.SubmitBatchRequest(specs=[_good(rig), spec])
    in_batch = _status(lambda: _stub(rig).SubmitBatch(batch, timeout=20))
    assert code in CLEAN and in_batch in CLEAN, (code, in_batch)
    _healthy_and_counted(rig, f"poison: countdown {countdown}", [], started)


def test_nan_countdown_on_a_retry(rig: Rig) -> None:
    """The poison task ends (run again or failed with a clear error: either is a final state),
    and a task whose worker is killed meanwhile is still delivered again by the lease reaper."""
    started = time.monotonic()
    poison = rig.client.submit("t.retries_after", ["nan", str(rig.markers)], queue=rig.queue).id
    held = rig.client.submit("t.marked", [str(rig.markers), 3.0], queue=rig.queue).id
    while not (runs := [p.name for p in rig.markers.iterdir() if p.name.startswith(held)]):
        time.sleep(0.05)
    pid = int(runs[0].split("-")[1])
    rig.workers.kill(next(p for p in rig.workers.procs if p.pid == pid))
    rig.workers.spawn(1)
    ended = wait_final(rig.client, [poison], timeout=20).get(poison, 0)
    expected = {poison: ended if is_final(ended) else task_pb2.TASK_STATE_SUCCEEDED}
    case = "poison: retry(countdown=nan), a worker SIGKILLed"
    fig = rig.count(case, [poison, held], started, expected=expected, timeout=10)
    assert (fig.lost, fig.recorded_twice) == (0, 0)


def test_deep_json_on_submit_and_batch(rig: Rig) -> None:
    started = time.monotonic()
    deep = _good(rig)
    deep.args.json = b"[" * DEEP + b"]" * DEEP
    code = _status(lambda: _stub(rig).Submit(scheduler_pb2.SubmitRequest(spec=deep), timeout=20))
    in_batch = _status(
        lambda: _stub(rig).SubmitBatch(scheduler_pb2.SubmitBatchRequest(specs=[_good(rig), deep]), timeout=20)
    )
    assert (code, in_batch) == (grpc.StatusCode.INVALID_ARGUMENT,) * 2
    _healthy_and_counted(rig, f"poison: JSON nested {DEEP} deep", [], started)


def test_deep_json_on_a_shared_stream(rig: Rig) -> None:
    """The other submissions on the stream are answered; the deep one is refused on its own."""
    started = time.monotonic()
    deep = _good(rig)
    deep.args.json = b"[" * DEEP + b"]" * DEEP
    specs = [_good(rig), _good(rig), deep, _good(rig), _good(rig)]
    requests = [scheduler_pb2.SubmitStreamRequest(seq=i, spec=s) for i, s in enumerate(specs)]
    answers: dict[int, scheduler_pb2.SubmitStreamResponse] = {}
    done = threading.Event()

    def send() -> Iterator[scheduler_pb2.SubmitStreamRequest]:
        yield from requests
        done.wait(20)  # the stream stays open, as a producer's shared stream does

    call = _stub(rig).SubmitStream(send(), timeout=30)
    try:
        for reply in call:
            answers[reply.seq] = reply
            if len(answers) == len(specs):
                break
    except grpc.RpcError as exc:
        raise AssertionError(f"the stream ended: {exc.code()} {exc.details()}") from None
    finally:
        done.set()
        call.cancel()
    assert answers[2].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    good = [answers[i].result.task_id for i in (0, 1, 3, 4)]
    _healthy_and_counted(rig, "poison: deep JSON on a shared SubmitStream", good, started)


def test_huge_headers(rig: Rig) -> None:
    started = time.monotonic()
    many = _good(rig)
    many.headers.update({f"h{i}": "x" * 1000 for i in range(1000)})  # 1 MB in 1000 headers
    big = _good(rig)
    big.headers["h"] = "y" * (8 * 1024 * 1024)  # one header of 8 MB
    accepted: list[str] = []
    for spec in (many, big):
        try:
            accepted.append(_stub(rig).Submit(scheduler_pb2.SubmitRequest(spec=spec), timeout=30).task_id)
        except grpc.RpcError as exc:
            assert exc.code() in CLEAN, (exc.code(), exc.details())
    _healthy_and_counted(rig, "poison: huge headers (1000 x 1 KB, 1 x 8 MB)", accepted, started)


def test_invalid_spec_inside_a_batch_of_good_ones(rig: Rig) -> None:
    started = time.monotonic()
    idle = f"{rig.queue}-idle"  # nobody consumes it: what the refused batch left there stays there
    bad = _good(rig)
    bad.name = "9 not a task name"
    specs = [_good(rig) for _ in range(20)]
    for s in specs:
        s.queue = idle
    specs.insert(10, bad)
    with pytest.raises(grpc.RpcError) as info:
        _stub(rig).SubmitBatch(scheduler_pb2.SubmitBatchRequest(specs=specs), timeout=20)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task name" in (info.value.details() or "")
    left = [q.ready + q.leased for q in rig.client.queue_stats() if q.queue == idle]
    assert sum(left) == 0, "a refused batch is refused whole"
    again = _stub(rig).SubmitBatch(scheduler_pb2.SubmitBatchRequest(specs=[_good(rig) for _ in range(20)]), timeout=20)
    good = [r.task_id for r in again.results]
    _healthy_and_counted(rig, "poison: an invalid spec in a batch of 20 good ones", good, started)
