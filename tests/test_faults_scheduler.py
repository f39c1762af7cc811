"""Faults at the scheduler: time (records outliving their expiry), poison times and payloads, and a
write refused by Redis after an idempotency key or a workflow step was claimed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
import redis
from redis.asyncio import Redis

import tasktide
from tasktide import TaskState, chain, group
from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.peers import Peers
from tasktide_services.common.redis_server import LocalRedis, free_port, start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler import keys as skeys
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.store import ENQUEUE_MS, SchedulerStore
from tasktide_services.scheduler.writing import Writer, writer_for
from tasktide_services.testing import (
    TEST_LEASE_SECONDS,
    PlatformThread,
    eventually,
    run_worker_thread,
    spawn,
    unreachable_address,
)
from tasktide_services.worker import keys as wkeys
from tasktide_services.worker.reaper import RETRY_HANDOVER_MS
from tests import tasks_app

ROOT = Path(__file__).resolve().parent.parent
INVALID = grpc.StatusCode.INVALID_ARGUMENT

app = tasktide.App("ft")


@app.task(max_retries=3)
def retry_once(marker_dir: str, countdown: float) -> int:
    """Asks for a retry with `countdown` on its first attempt; leaves a file per attempt."""
    ctx = tasktide.current_task()
    Path(marker_dir, f"attempt-{ctx.attempt}").touch()
    if ctx.attempt < 1:
        ctx.retry(countdown=countdown)
    return ctx.attempt


@pytest.fixture()
def rdb(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_server.url)
    yield r
    r.close()


@pytest.fixture(scope="module")
def short_expiry(server_settings: ServerSettings) -> Iterator[PlatformThread]:
    """A platform whose results (and, before, task records) expire after 2 s."""
    with PlatformThread(replace(server_settings, result_expires=2.0)) as p:
        yield p


@dataclass
class LoneScheduler:
    """A scheduler's admission, store and calls to its peers, without a server: as in a process of
    its own (writing.PeerWriter), with the registry and results service at the addresses given."""

    store: SchedulerStore
    writer: Writer
    admission: Admission
    peers: Peers


@contextlib.asynccontextmanager
async def lone_scheduler(redis_client: Redis, registry: str, results: str) -> AsyncIterator[LoneScheduler]:
    settings = replace(ServerSettings(), address="127.0.0.1:1", registry_address=registry, results_address=results)
    store = SchedulerStore(redis_client, 60.0)
    peers = Peers(settings)
    writer = writer_for(store, peers)
    try:
        yield LoneScheduler(store, writer, Admission(store, writer, settings.limits, ServiceHooks()), peers)
    finally:
        await peers.close()


@contextlib.asynccontextmanager
async def _lone_on(platform: PlatformThread, redis_client: Redis) -> AsyncIterator[LoneScheduler]:
    """A lone scheduler on `redis_client` (closed after) with the platform's registry and results
    service."""
    try:
        async with lone_scheduler(redis_client, platform.registry_address, platform.results_address) as lone:
            yield lone
    finally:
        await redis_client.aclose()


Submitted = scheduler_pb2.SubmitResponse | BaseException


async def _answer(lone: LoneScheduler, spec: task_pb2.TaskSpec) -> Submitted:
    """The lone scheduler's answer to one submission, or the error it raised (for the assertions)."""
    try:
        (resp,) = await lone.admission.submit([spec])
    except Exception as exc:  # noqa: BLE001 - the caller's assertions report it
        return exc
    return resp


def _client(address: str) -> tasktide.Client:
    return tasktide.Client(settings=tasktide.ClientSettings.from_env({}, address=address))


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# Defect: delayed tasks vanished when their record expired before they were due.


def test_delayed_tasks_outlive_the_result_expiry(short_expiry, queue_name, tmp_path):
    out = tmp_path / "ran"
    with _client(short_expiry.address) as c:
        for i in range(10):
            c.submit("t.record", [str(out), str(i)], queue=queue_name, countdown=4)
        with run_worker_thread(tasks_app.app, short_expiry.address, queues=(queue_name,), concurrency=4):
            eventually(lambda: len(_lines(out)) == 10, timeout=40, what="all 10 delayed tasks to run")
    assert sorted(_lines(out), key=int) == [str(i) for i in range(10)]


def test_retry_backoff_longer_than_the_result_expiry(short_expiry, queue_name, tmp_path):
    with _client(short_expiry.address) as c:
        c.submit("ft.retry_once", [str(tmp_path), 4.0], queue=queue_name)
        with run_worker_thread(app, short_expiry.address, queues=(queue_name,)):
            eventually(lambda: (tmp_path / "attempt-1").exists(), timeout=40, what="the retried attempt to run")


def test_a_waiting_record_expires_only_once_it_leaves_the_delayed_set(platform, client, queue_name, rdb):
    h = client.submit("t.add", [1, 1], queue=queue_name, countdown=3600)
    assert rdb.pttl(skeys.task(h.id)) == -1, "no expiry while it waits"
    assert h.cancel() is TaskState.CANCELLED
    assert rdb.pttl(skeys.task(h.id)) > 0


def test_workflow_outlives_the_result_expiry(short_expiry, queue_name):
    q = {"queue": queue_name}
    with _client(short_expiry.address) as c:
        wf = chain(tasks_app.add.s(1, 2).set(countdown=4, **q), tasks_app.add.s(10).set(**q)).apply_async(c)
        with run_worker_thread(tasks_app.app, short_expiry.address, queues=(queue_name,)):
            assert wf.get(timeout=40) == 13


def test_pump_logs_a_due_task_whose_record_is_missing(platform, rdb, caplog):
    ghost = uuid.uuid4().hex
    caplog.set_level(logging.WARNING, logger="tasktide.scheduler.pump")
    rdb.zadd(skeys.DELAYED, {ghost: 1})

    def dropped() -> bool:
        if isinstance(platform, PlatformThread):  # the pump logs in this process
            return any(ghost in r.getMessage() for r in caplog.records)
        # a scheduler process of its own logs to its stderr: wait for the drop itself
        return rdb.zscore(skeys.DELAYED, ghost) is None and rdb.zscore(skeys.MOVING, ghost) is None

    eventually(dropped, what="the pump to drop (and log) the lost task")
    assert rdb.zscore(skeys.DELAYED, ghost) is None and rdb.zscore(skeys.MOVING, ghost) is None


def test_a_poison_id_stuck_in_moving_does_not_hold_up_the_tasks_beside_it(platform, client, queue_name, rdb):
    """The pump asks the results service about the tasks stuck in :moving; a malformed id among
    them makes it refuse the whole question (INVALID_ARGUMENT). The pump then hands them over
    unchecked, as before the check: the good task runs, the poison id is dropped."""
    task = task_pb2.Task(
        id=uuid.uuid4().hex,
        spec=task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name),
        state=task_pb2.TASK_STATE_QUEUED,
    )
    poison = "not a task id " + uuid.uuid4().hex
    rdb.set(skeys.task(task.id), task.SerializeToString())
    rdb.zadd(skeys.MOVING, {task.id: 1, poison: 1})  # stuck: their deadlines long past
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert client.result(task.id, timeout=15) == 9
    eventually(lambda: rdb.zscore(skeys.MOVING, poison) is None, what="the poison id dropped")


# Defect: a NaN (inf, negative, huge) countdown made Retry raise and stalled the lease reaper.


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"countdown": math.nan}, "countdown"),
        ({"countdown": math.inf}, "countdown"),
        ({"countdown": -1.0}, "countdown"),
        ({"countdown": 1e300}, "countdown"),
        ({"eta_ms": -5}, "eta"),
        ({"eta_ms": 2**62}, "eta"),
        ({"expires_ms": -5}, "expires"),
    ],
)
def test_submit_refuses_bad_times(platform, spec, fragment):
    with grpc.insecure_channel(platform.address) as ch:
        stub = scheduler_pb2_grpc.SchedulerStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Submit(scheduler_pb2.SubmitRequest(spec=task_pb2.TaskSpec(name="t.add", **spec)), timeout=10)
    assert info.value.code() == INVALID
    assert fragment in info.value.details()


@pytest.mark.parametrize("schedule", [{"every": 1.0, "start_ms": 2**62}, {"cron": "* * * * *", "end_ms": 2**62}])
def test_put_schedule_refuses_bad_times(platform, schedule):
    with grpc.insecure_channel(platform.address) as ch:
        stub = scheduler_pb2_grpc.SchedulerStub(ch)
        s = scheduler_pb2.Schedule(id=f"bad-{uuid.uuid4().hex[:6]}", task=task_pb2.TaskSpec(name="t.add"), **schedule)
        with pytest.raises(grpc.RpcError) as info:
            stub.PutSchedule(scheduler_pb2.PutScheduleRequest(schedule=s), timeout=10)
    assert info.value.code() == INVALID


@pytest.mark.parametrize("countdown", [math.nan, math.inf, -3.0, 1e300])
def test_retry_with_a_poison_countdown_runs_again_at_once(platform, client, queue_name, tmp_path, countdown):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit("ft.retry_once", [str(tmp_path), countdown], queue=queue_name)
        assert h.get(timeout=30) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt-0", "attempt-1"]


def test_lease_reaper_goes_on_after_a_poison_retry(platform, client, tmp_path):
    """A retry with a NaN countdown, parked long enough for the reaper to hand it over again, and a
    SIGKILLed worker's task in a queue that the reaper visits after it: that task is redelivered."""
    poisoned, other = f"a-{uuid.uuid4().hex[:10]}", f"z-{uuid.uuid4().hex[:10]}"
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    starts = tmp_path / "starts"
    starts.mkdir()
    env = {"TASKTIDE_ADDRESS": platform.address}
    with run_worker_thread(app, platform.address, queues=(poisoned,)):
        retried = client.submit("ft.retry_once", [str(attempts), math.nan], queue=poisoned)
        eventually(lambda: (attempts / "attempt-0").exists(), timeout=20, what="the first attempt")
        time.sleep(RETRY_HANDOVER_MS / 1000 + 1)  # a parked retry is the reaper's to hand over by now
        slow = client.submit("t.slow", [TEST_LEASE_SECONDS + 1.0, str(starts)], queue=other)
        first = spawn("worker", "tests.tasks_app:app", "--queues", other, "--concurrency", "1", env=env, cwd=ROOT)
        try:
            eventually(lambda: any(starts.iterdir()), timeout=20, what="the first worker to start the task")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = spawn("worker", "tests.tasks_app:app", "--queues", other, "--concurrency", "1", env=env, cwd=ROOT)
            try:
                assert slow.get(timeout=40) == f"slept {TEST_LEASE_SECONDS + 1.0}"
            finally:
                second.terminate()
                second.wait(20)
        finally:
            if first.poll() is None:
                first.kill()
        assert retried.get(timeout=30) == 1


# Defect: JSON nested 100,000 deep got INTERNAL, and on SubmitStream ended the whole stream.


def _nested(depth: int) -> task_pb2.Payload:
    return task_pb2.Payload(json=b"[" * depth + b"]" * depth)


def _spec(args: task_pb2.Payload, queue: str = "") -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name="t.echo", args=args, queue=queue)


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deep_json_is_refused_by_submit_and_submit_batch(platform, depth):
    with grpc.insecure_channel(platform.address) as ch:
        stub = scheduler_pb2_grpc.SchedulerStub(ch)
        for call in (
            lambda: stub.Submit(scheduler_pb2.SubmitRequest(spec=_spec(_nested(depth))), timeout=10),
            lambda: stub.SubmitBatch(scheduler_pb2.SubmitBatchRequest(specs=[_spec(_nested(depth))]), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == INVALID
            assert "nested" in info.value.details()


def test_json_at_the_depth_limit_is_accepted(platform, client, queue_name):
    value: list[object] = []
    for _ in range(62):  # value: 63 levels of brackets; args [value]: 64
        value = [value]
    with grpc.insecure_channel(platform.address) as ch:
        stub = scheduler_pb2_grpc.SchedulerStub(ch)
        payload = task_pb2.Payload(json=json.dumps([value]).encode())
        got = stub.Submit(scheduler_pb2.SubmitRequest(spec=_spec(payload, queue_name)), timeout=10)
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert client.result(got.task_id, timeout=15) == value


def test_deep_json_on_submit_stream_refuses_that_submission_only(platform, queue_name):
    good = _spec(task_pb2.Payload(json=b"[1]"), queue_name)
    requests = [
        scheduler_pb2.SubmitStreamRequest(seq=1, spec=good),
        scheduler_pb2.SubmitStreamRequest(seq=2, spec=_spec(_nested(100_000))),
        scheduler_pb2.SubmitStreamRequest(seq=3, spec=good),
    ]
    with grpc.insecure_channel(platform.address) as ch:
        stub = scheduler_pb2_grpc.SchedulerStub(ch)
        answers = {a.seq: a for a in stub.SubmitStream(iter(requests), timeout=20)}
    assert sorted(answers) == [1, 2, 3]
    assert answers[1].result.task_id and answers[3].result.task_id
    assert answers[2].error_code == INVALID.value[0]
    assert "nested" in answers[2].error_message


# Defect: an idempotency key claimed before a write that failed pointed at a task that never existed.


@pytest.fixture()
def poison(rdb: redis.Redis) -> Iterator[Callable[[str], str]]:
    """Makes Redis refuse the ready-queue write of a queue (the registry's task hash is a string).
    What is left is removed when the test ends, failed or not: a task lookup reads the task hashes
    of every queue, so a key left poisoned would fail other tests' lookups."""
    made: list[str] = []

    def make(queue: str) -> str:
        key = wkeys.queue_keys(queue).task
        rdb.set(key, "not a hash")
        made.append(key)
        return key

    yield make
    if made:
        rdb.delete(*made)


def _wrongtype_errors(rdb: redis.Redis) -> int:
    """How many commands Redis refused with WRONGTYPE (whichever process sent them)."""
    return int(rdb.info("errorstats").get("errorstat_WRONGTYPE", {}).get("count", 0))


def test_idempotent_submission_after_a_failed_write_runs(platform, client, queue_name, rdb, poison):
    key = f"k-{uuid.uuid4().hex}"
    poisoned = poison(queue_name)
    with pytest.raises(tasktide.TasktideError):
        client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key)
    rdb.delete(poisoned)
    h = client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key)
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=15) == 3
    again = client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key)
    assert again.id == h.id


def test_delayed_idempotent_submission_after_a_failed_write_runs(platform, client, queue_name, rdb):
    key = f"k-{uuid.uuid4().hex}"
    aside = f"{skeys.DELAYED}:aside-{uuid.uuid4().hex}"  # other tests' delayed tasks, put back below
    if rdb.exists(skeys.DELAYED):
        rdb.rename(skeys.DELAYED, aside)
    rdb.set(skeys.DELAYED, "refused")
    try:
        with pytest.raises(tasktide.TasktideError):
            client.submit("t.add", [2, 3], queue=queue_name, idempotency_key=key, countdown=0.2)
    finally:
        rdb.delete(skeys.DELAYED)
        if rdb.exists(aside):
            rdb.rename(aside, skeys.DELAYED)
    h = client.submit("t.add", [2, 3], queue=queue_name, idempotency_key=key, countdown=0.2)
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=15) == 5


def test_workflow_goes_on_after_a_stage_submission_failed(platform, client, queue_name, rdb, caplog, poison):
    """The last member of a group completes, its workflow's next stage is refused by Redis: the
    member's lease stays, it runs again, and its second completion submits the stage."""
    caplog.set_level(logging.ERROR, logger="tasktide")
    callback_queue = f"{queue_name}-cb"
    refusals_before = _wrongtype_errors(rdb)
    poisoned = poison(callback_queue)

    def refused() -> bool:
        if isinstance(platform, PlatformThread):  # the registry logs in this process
            return any("outcomes failed" in r.getMessage() for r in caplog.records)
        return _wrongtype_errors(rdb) > refusals_before  # a registry process of its own: Redis counts it

    q = {"queue": queue_name}
    wf = chain(
        group(tasks_app.add.s(1, 1).set(**q), tasks_app.add.s(2, 2).set(**q)),
        tasks_app.total.s().set(queue=callback_queue),
    ).apply_async(client)
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name, callback_queue), concurrency=2):
        eventually(refused, timeout=20, what="the refused stage submission")
        rdb.delete(poisoned)
        assert wf.get(timeout=40) == 6
        assert wf.state() == "SUCCEEDED"


def test_idempotent_submission_after_a_failed_write_with_calls_to_peers(
    platform, client, queue_name, rdb, redis_server, poison
):
    """The scheduler on its own (the results service and the registry reached by calls): a key
    whose task's Enqueue call failed is let go, and one of a delayed task is confirmed with it. A
    runnable task's place in :moving and its record are gone once the registry has it, or refused
    it."""
    from tasktide_services.scheduler.writing import PeerWriter

    runnable, delayed = f"k-{uuid.uuid4().hex}", f"k-{uuid.uuid4().hex}"

    def spec(key: str, countdown: float = 0.0) -> task_pb2.TaskSpec:
        return task_pb2.TaskSpec(
            name="t.add",
            args=task_pb2.Payload(json=b"[4,5]"),
            queue=queue_name,
            idempotency_key=key,
            countdown=countdown,
        )

    async def main() -> tuple[str, str, str]:
        async with _lone_on(platform, Redis.from_url(redis_server.url)) as lone:
            assert isinstance(lone.writer, PeerWriter)
            return await submissions(lone.admission)

    async def submissions(admission: Admission) -> tuple[str, str, str]:
        poisoned = poison(queue_name)
        with pytest.raises(Exception, match="WRONGTYPE"):
            await admission.submit([spec(runnable)])
        assert rdb.get(skeys.idem(runnable)) is None
        left = [
            m for m in rdb.zrange(skeys.MOVING, 0, -1) if runnable.encode() in (rdb.get(skeys.task(m.decode())) or b"")
        ]
        assert left == [], "a task the registry refused is left for the pump"
        rdb.delete(poisoned)
        (first,) = await admission.submit([spec(runnable)])
        assert rdb.get(skeys.idem(runnable)).decode() == first.task_id
        assert rdb.zscore(skeys.MOVING, first.task_id) is None
        assert not rdb.exists(skeys.task(first.task_id))
        (later,) = await admission.submit([spec(delayed, countdown=0.2)])
        (again,) = await admission.submit([spec(delayed, countdown=0.2)])
        assert again.existing and again.task_id == later.task_id
        return first.task_id, later.task_id, rdb.get(skeys.idem(delayed)).decode()

    first, later, held = asyncio.run(main())
    assert held == later, "the delayed task's key names it for good, not as a pending claim"
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert client.result(first, timeout=15) == 9
        assert client.result(later, timeout=15) == 9


def test_a_lost_answer_of_the_registry_keeps_the_keyed_task_and_its_key(
    platform, client, queue_name, rdb, redis_server
):
    """The scheduler on its own, the registry reached through a proxy; the registry's answer to
    Enqueue is lost (the connection reset once the registry has queued the task). The submission
    fails UNAVAILABLE, but its key names the task the registry holds: a retry is answered with it,
    no second task is queued, and the task runs once."""
    from redis.asyncio import Redis

    from tasktide_services.scheduler.writing import KeptInDoubt
    from tests.faults.proxy import proxy

    key = f"lost-{uuid.uuid4().hex}"
    ready = wkeys.queue_keys(queue_name).ready

    def spec() -> task_pb2.TaskSpec:
        return task_pb2.TaskSpec(
            name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=key
        )

    async def main() -> tuple[list[bytes], object, scheduler_pb2.SubmitResponse]:
        redis_client = Redis.from_url(redis_server.url)
        with proxy(platform.registry_address) as link:
            async with lone_scheduler(redis_client, link.address, platform.results_address) as lone:
                link.set_delay(0.3)  # each chunk waits in the proxy: the answer can be dropped there
                first = asyncio.ensure_future(lone.admission.submit([spec()]))
                deadline = time.monotonic() + 20
                while not rdb.zcard(ready) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                queued = rdb.zrange(ready, 0, -1)
                link.reset()
                failed = (await asyncio.gather(first, return_exceptions=True))[0]
                link.set_delay(0.0)
                (again,) = await lone.admission.submit([spec()])
        await redis_client.aclose()
        return queued, failed, again

    queued, failed, again = asyncio.run(main())
    assert len(queued) == 1, "the registry never queued the task"
    assert (again.existing, again.task_id) == (True, queued[0].decode()), "a second task under the key"
    assert isinstance(failed, KeptInDoubt) and "did not answer" in str(failed), failed
    # Handed over again from :moving (by the platform's pump) after RETRY_IN_DOUBT_MS: the registry,
    # which still holds it, does not queue it twice.
    eventually(lambda: rdb.zscore(skeys.MOVING, again.task_id) is None, timeout=15, what="the hand-over again")
    assert rdb.zrange(ready, 0, -1) == queued
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert client.result(again.task_id, timeout=15) == 9


def test_a_task_that_finished_while_its_hand_over_went_unanswered_is_not_handed_over_again(
    platform, client, queue_name, rdb, redis_server, tmp_path
):
    """As above, the registry's answer to Enqueue lost, but with a worker on the queue: the task runs
    and finishes before the scheduler learns its call failed. The task stays in :moving, stuck, and
    the pump finds it there 1 s later; the registry no longer holds it, so a hand-over again would
    queue it and run its body a second time. The pump asks the results service first and lets a
    started task go: the body runs once. (Before, it ran twice.)"""
    from tasktide_services.scheduler.writing import KeptInDoubt
    from tests.faults.proxy import proxy

    key = f"ranalready-{uuid.uuid4().hex}"
    spec = task_pb2.TaskSpec(
        name="t.marked",
        args=task_pb2.Payload(json=json.dumps([str(tmp_path)]).encode()),
        queue=queue_name,
        idempotency_key=key,
    )

    async def main() -> object:
        redis_client = Redis.from_url(redis_server.url)
        with proxy(platform.registry_address) as link:
            async with lone_scheduler(redis_client, link.address, platform.results_address) as lone:
                link.set_delay(1.0)  # the registry's answer waits 1 s in the proxy: the task ends meanwhile
                first = asyncio.ensure_future(lone.admission.submit([spec]))
                deadline = time.monotonic() + 20
                while not list(tmp_path.iterdir()) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)  # its outcome recorded
                link.reset()
                failed = (await asyncio.gather(first, return_exceptions=True))[0]
        await redis_client.aclose()
        return failed

    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        failed = asyncio.run(main())
        assert isinstance(failed, KeptInDoubt), failed
        (task_id,) = failed.task_ids
        assert client.result(task_id, timeout=15) == task_id
        eventually(lambda: rdb.zscore(skeys.MOVING, task_id) is None, timeout=15, what="the stuck task let go")
        time.sleep(1.5)  # a hand-over again, had there been one, would have run the body by now
    runs = [p.name for p in tmp_path.iterdir()]
    assert len(runs) == 1, f"the body ran {len(runs)} times"


def test_a_stuck_task_waits_while_the_results_service_cannot_say_whether_it_started(
    platform, client, queue_name, rdb, redis_server
):
    """A task stuck in :moving (its scheduler died while handing it over) is checked with the
    results service before it is handed over again. With that service out of reach, the pump's step
    neither fails nor drops the task: it stays in :moving, due again in RETRY_IN_DOUBT_MS; once the
    service answers, the task is handed over and runs."""
    from tasktide_services.scheduler.pump import pump_once
    from tasktide_services.scheduler.writing import RETRY_IN_DOUBT_MS

    task = task_pb2.Task(
        id=uuid.uuid4().hex,
        spec=task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name),
        state=task_pb2.TASK_STATE_QUEUED,
    )

    async def step(results_address: str) -> tuple[float, float | None]:
        # A database of its own: the platform's pump (on database 0) does not take the stuck task.
        redis_client = Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/5")
        try:
            async with lone_scheduler(redis_client, platform.registry_address, results_address) as lone:
                await lone.store.save([task], [], moving=[task.id])
                await lone.store.due_again([task.id], -1_000)  # stuck: its deadline passed
                before = time.time() * 1000
                await pump_once(lone.store, lone.admission, lone.peers)
                return before, await redis_client.zscore(skeys.MOVING, task.id)
        finally:
            await redis_client.aclose()

    with unreachable_address() as nowhere:
        before, deadline = asyncio.run(step(nowhere))
    assert deadline is not None, "the stuck task left :moving while nothing could say it started"
    assert before < deadline <= time.time() * 1000 + RETRY_IN_DOUBT_MS, "not due again soon"
    _, deadline = asyncio.run(step(platform.results_address))
    assert deadline is None, "the stuck task was not handed over once the results service answered"
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert client.result(task.id, timeout=15) == 9


def _put_due(admin: redis.Redis, queue: str) -> task_pb2.Task:
    """A task t.add(4, 5) written as the scheduler writes a delayed one, due since 1970."""
    task = task_pb2.Task(
        id=uuid.uuid4().hex,
        spec=task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue),
        state=task_pb2.TASK_STATE_SCHEDULED,
    )
    admin.set(skeys.task(task.id), task.SerializeToString())
    admin.zadd(skeys.DELAYED, {task.id: 1})
    return task


def _assert_adds(platform: PlatformThread, client: tasktide.Client, queue: str, task_id: str) -> None:
    """The task (t.add(4, 5)) runs on a worker of the platform and keeps its result."""
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue,)):
        assert client.result(task_id, timeout=15) == 9


def _hourly(schedule_id: str, queue: str) -> scheduler_pb2.Schedule:
    """A schedule of t.add(4, 5) every hour (put with its first occurrence at 1970 + 1 s: due)."""
    task = task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue)
    return scheduler_pb2.Schedule(id=schedule_id, task=task, every=3600.0)


def _assert_fired(
    admin: redis.Redis, platform: PlatformThread, client: tasktide.Client, schedule: scheduler_pb2.Schedule
) -> None:
    """The schedule fired a task (its last task), which runs and adds."""
    task_id = (admin.hget(skeys.schedule(schedule.id), "last_task") or b"").decode()
    assert task_id, "the occurrence fired no task"
    _assert_adds(platform, client, schedule.task.queue, task_id)


def test_a_pump_step_refused_after_its_claim_brings_the_batch_forward(platform, client, queue_name, tmp_path, caplog):
    """The pump claims due tasks into :moving with a hand-over deadline of HANDOVER_MS (30 s), then
    loads them. When Redis refuses the load (here: an ACL without MGET), the step fails, and its
    batch is due again in RETRY_IN_DOUBT_MS, not stranded for HANDOVER_MS; the next step after the
    refusal ends hands the task over, and it runs."""
    from tasktide_services.scheduler.owed import Owed
    from tasktide_services.scheduler.pump import pump_once
    from tasktide_services.scheduler.writing import RETRY_IN_DOUBT_MS

    server = start_redis(tmp_path / "redis")
    admin = redis.Redis(port=server.port)
    task = _put_due(admin, queue_name)

    async def step(owed: Owed) -> float | None:
        async with _lone_on(platform, Redis(port=server.port, username="pump", password="pw")) as lone:
            await pump_once(lone.store, lone.admission, lone.peers, owed)
        return admin.zscore(skeys.MOVING, task.id)

    try:
        admin.acl_setuser(
            "pump", enabled=True, passwords=["+pw"], keys=["~*"], channels=["*"], commands=["+@all", "-mget"]
        )
        owed = Owed()
        before = time.time() * 1000
        with (
            caplog.at_level(logging.WARNING, logger="tasktide.scheduler"),
            pytest.raises(redis.exceptions.NoPermissionError),
        ):
            asyncio.run(step(owed))
        assert f"a failed step claimed 1 ({task.id}); due again" in caplog.text, "the log does not name the task"
        deadline = admin.zscore(skeys.MOVING, task.id)
        assert deadline is not None, "the claimed task left :moving"
        assert deadline <= time.time() * 1000 + RETRY_IN_DOUBT_MS, f"due again in {deadline - before:.0f} ms"
        assert not owed.members, "brought forward at once, nothing is owed"
        admin.acl_setuser(
            "pump", reset=True, enabled=True, passwords=["+pw"], keys=["~*"], channels=["*"], commands=["+@all"]
        )
        time.sleep(RETRY_IN_DOUBT_MS / 1000)
        assert asyncio.run(step(owed)) is None, "the task was not handed over once Redis took the load"
        _assert_adds(platform, client, queue_name, task.id)
    finally:
        admin.close()
        server.stop()


def test_a_pump_step_cut_off_from_redis_after_its_claim_owes_the_batch_to_the_next(
    platform, client, queue_name, tmp_path
):
    """Redis goes away between the pump's claim and its load (stopped: the step's load and its
    bringing the batch forward both fail). The ids are owed in memory: the first step once Redis is
    back brings them forward before it claims, and hands the task over then, not HANDOVER_MS (30 s)
    after the claim."""
    from tasktide_services.scheduler.owed import Owed
    from tasktide_services.scheduler.pump import pump_once
    from tasktide_services.scheduler.store import HANDOVER_MS

    data = tmp_path / "redis"
    server = start_redis(data)
    port = server.port

    class StopsRedisBeforeTheLoad(SchedulerStore):
        async def load(self, task_ids: list[str]) -> list[task_pb2.Task | None]:
            server.stop()  # the real server exits here: the load and what follows fail as they would
            return await super().load(task_ids)

    async def step(owed: Owed, cut: bool) -> None:
        async with _lone_on(platform, Redis(port=port)) as lone:
            store = StopsRedisBeforeTheLoad(lone.store.redis, 60.0) if cut else lone.store
            await pump_once(store, lone.admission, lone.peers, owed)

    admin = redis.Redis(port=port)
    task = _put_due(admin, queue_name)
    try:
        owed = Owed()
        claimed = time.time() * 1000
        with pytest.raises(redis.exceptions.ConnectionError):
            asyncio.run(step(owed, cut=True))
        assert owed.members == {task.id}
        server = start_redis(data, port=port)  # the same data (append-only file): the claim is there
        deadline = admin.zscore(skeys.MOVING, task.id)
        assert deadline is not None and deadline >= claimed + HANDOVER_MS, "the claim was not kept"
        asyncio.run(step(owed, cut=False))
        assert not owed.members
        assert admin.zscore(skeys.MOVING, task.id) is None, "the owed task waits for its hand-over deadline"
        _assert_adds(platform, client, queue_name, task.id)
    finally:
        admin.close()
        server.stop()


def test_a_pump_claim_whose_answer_is_lost_is_found_by_its_deadline_and_handed_over_next(
    platform, client, queue_name, tmp_path
):
    """The claim reaches Redis and runs, and the connection breaks before its answer comes back (a
    proxy drops it): the step knows no ids, only the deadline it asked for. The next step brings
    forward the tasks of :moving that hold that deadline and hands them over, not HANDOVER_MS (30 s)
    after the claim."""
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.scheduler.owed import Owed
    from tasktide_services.scheduler.pump import pump_once
    from tasktide_services.scheduler.store import HANDOVER_MS
    from tests.faults.proxy import Proxy, proxy

    server = start_redis(tmp_path / "redis")
    admin = redis.Redis(port=server.port)
    task = _put_due(admin, queue_name)

    async def step(relay: Proxy, owed: Owed, lose: bool) -> None:
        # The services' client: nothing sent twice.
        async with _lone_on(platform, await connect(f"redis://{relay.address}/0")) as lone:
            await lone.store.prepare()
            if lose:
                relay.lose_answer_to(lone.store.scripts["claim_due"].sha.encode())
            await pump_once(lone.store, lone.admission, lone.peers, owed)

    try:
        with proxy(f"127.0.0.1:{server.port}") as relay:
            owed = Owed()
            claimed = time.time() * 1000
            with pytest.raises(redis.exceptions.ConnectionError):
                asyncio.run(step(relay, owed, lose=True))
            assert relay.broke.is_set(), "the claim's answer was not lost"
            deadline = admin.zscore(skeys.MOVING, task.id)
            assert deadline is not None and deadline >= claimed + HANDOVER_MS, "the claim did not run"
            assert owed.deadlines == {int(deadline)}, "the lost claim's deadline is not owed"
            asyncio.run(step(relay, owed, lose=False))
            assert not owed.deadlines and not owed.members
            assert admin.zscore(skeys.MOVING, task.id) is None, "the task waits for its hand-over deadline"
        _assert_adds(platform, client, queue_name, task.id)
    finally:
        admin.close()
        server.stop()


def test_a_schedule_step_cut_off_from_redis_after_its_claim_fires_the_occurrence_once_redis_is_back(
    platform, client, queue_name, tmp_path
):
    """Redis goes away after the schedule loop claimed an occurrence (in :firing, with a hand-over
    deadline of HANDOVER_MS, 30 s) and before its task was written. The occurrence is owed in memory:
    the first step once Redis is back submits it, under its idempotency key, and the task runs; not
    HANDOVER_MS after the claim."""
    from tasktide_services.scheduler import schedules
    from tasktide_services.scheduler.owed import Owed

    data = tmp_path / "redis"
    server = start_redis(data)
    port = server.port
    schedule = _hourly(f"cut-{uuid.uuid4().hex[:8]}", queue_name)
    member = skeys.firing(schedule.id, 1_000)

    class StopsRedisAtTheKeyClaim(SchedulerStore):
        async def claim_idempotency(self, claims: list[tuple[str, str]]) -> list[str | None]:
            server.stop()  # the real server exits here: the task's write and what follows fail
            return await super().claim_idempotency(claims)

    async def step(owed: Owed, cut: bool) -> None:
        async with _lone_on(platform, Redis(port=port)) as lone:
            store = StopsRedisAtTheKeyClaim(lone.store.redis, 60.0) if cut else lone.store
            admission = Admission(store, writer_for(store, lone.peers), ServerSettings().limits, ServiceHooks())
            if cut:
                await schedules.schedule_store(store).put(schedule, 1_000, 1_000, keep_paused=False)
            await schedules.fire_once(store, admission, owed)

    admin = redis.Redis(port=port)
    try:
        owed = Owed()
        claimed = time.time() * 1000
        with pytest.raises(redis.exceptions.ConnectionError):
            asyncio.run(step(owed, cut=True))
        assert owed.members == {member}
        server = start_redis(data, port=port)  # the same data (append-only file): the claim is there
        deadline = admin.zscore(skeys.SCHEDULES_FIRING, member)
        assert deadline is not None and deadline >= claimed + schedules.HANDOVER_MS, "the claim was not kept"
        asyncio.run(step(owed, cut=False))
        assert not owed.members
        assert admin.zscore(skeys.SCHEDULES_FIRING, member) is None, "the owed occurrence waits for its deadline"
        _assert_fired(admin, platform, client, schedule)
    finally:
        admin.close()
        server.stop()


def test_a_schedule_claim_whose_answer_is_lost_is_found_by_its_deadline_and_fired_next(
    platform, client, queue_name, tmp_path
):
    """An occurrence's claim runs in Redis and its answer is lost (a proxy drops the connection):
    the next step finds the occurrence in :firing by the deadline the claim asked for and fires it,
    not HANDOVER_MS (30 s) after the claim."""
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.scheduler import schedules
    from tasktide_services.scheduler.owed import Owed
    from tests.faults.proxy import Proxy, proxy

    server = start_redis(tmp_path / "redis")
    admin = redis.Redis(port=server.port)
    schedule = _hourly(f"lost-{uuid.uuid4().hex[:8]}", queue_name)
    member = skeys.firing(schedule.id, 1_000)

    async def step(relay: Proxy, owed: Owed, lose: bool) -> None:
        async with _lone_on(platform, await connect(f"redis://{relay.address}/0")) as lone:
            await lone.store.prepare()
            if lose:
                await schedules.schedule_store(lone.store).put(schedule, 1_000, 1_000, keep_paused=False)
                relay.lose_answer_to(lone.store.scripts["schedule_claim"].sha.encode())
            await schedules.fire_once(lone.store, lone.admission, owed)

    try:
        with proxy(f"127.0.0.1:{server.port}") as relay:
            owed = Owed()
            with pytest.raises(redis.exceptions.ConnectionError):
                asyncio.run(step(relay, owed, lose=True))
            assert relay.broke.is_set(), "the claim's answer was not lost"
            deadline = admin.zscore(skeys.SCHEDULES_FIRING, member)
            assert deadline is not None, "the claim did not run"
            assert owed.deadlines == {int(deadline)}, "the lost claim's deadline is not owed"
            asyncio.run(step(relay, owed, lose=False))
            assert admin.zscore(skeys.SCHEDULES_FIRING, member) is None, "the occurrence waits for its deadline"
        _assert_fired(admin, platform, client, schedule)
    finally:
        admin.close()
        server.stop()


def test_a_results_service_out_of_reach_keeps_the_keyed_task_and_its_key(
    platform, client, queue_name, rdb, redis_server
):
    """The scheduler on its own, its results service out of reach (nothing listens at its address):
    the Record of a delayed task's first event fails UNAVAILABLE after the task was saved with its
    key. The submission fails UNAVAILABLE and the key keeps naming the task, which runs at its time:
    a retry is answered with it, and it runs once. (Before, the key was let go while the task stayed
    in the delayed set: the retry made a second task, and both ran.)"""
    from tasktide_services.scheduler.writing import KeptInDoubt

    key = f"norecord-{uuid.uuid4().hex}"
    spec = task_pb2.TaskSpec(
        name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=key, countdown=1.0
    )

    async def submit(results_address: str) -> scheduler_pb2.SubmitResponse:
        redis_client = Redis.from_url(redis_server.url)
        try:
            async with lone_scheduler(redis_client, platform.registry_address, results_address) as lone:
                (answer,) = await lone.admission.submit([spec])
                return answer
        finally:
            await redis_client.aclose()

    with pytest.raises(KeptInDoubt, match="the results service did not answer") as failed:
        asyncio.run(submit(f"127.0.0.1:{free_port()}"))
    (kept,) = failed.value.task_ids
    assert (rdb.get(skeys.idem(key)) or b"").decode() == kept, "the key was let go"
    again = asyncio.run(submit(platform.results_address))
    assert (again.existing, again.task_id) == (True, kept), "a second task under the key"
    ready = wkeys.queue_keys(queue_name).ready
    eventually(lambda: rdb.zcard(ready) == 1, timeout=15, what="the task due and queued")
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert client.result(kept, timeout=15) == 9
    time.sleep(1.5)  # a second task under the key, had there been one, would be due and queued by now
    assert rdb.zcard(ready) == 0, "another task under the key was queued"


@pytest.mark.parametrize("countdown", [0.0, 1.0], ids=["runnable", "delayed"])
def test_a_lost_answer_of_redis_keeps_the_key_of_the_task_it_wrote(
    platform, client, queue_name, rdb, redis_server, countdown
):
    """The scheduler on its own, its Redis reached through a proxy: Redis applies the write that
    accepts a keyed task (its record, its place in :moving or the delayed set, its key confirmed),
    and the connection is reset before the answer comes back. The submission fails UNAVAILABLE, but
    the task was written and runs (the pump hands it over): its key keeps naming it, so a retry is
    answered with it and it runs once. (Before, the failed write let the key go: the retry was
    admitted as a second task, and both ran.)"""
    from tasktide_services.common.errors import REDIS_AWAY
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.scheduler.store import PENDING
    from tests.faults.proxy import proxy

    key = f"lostsave-{uuid.uuid4().hex}"
    spec = task_pb2.TaskSpec(
        name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=key, countdown=countdown
    )

    def confirmed() -> str:
        held = (rdb.get(skeys.idem(key)) or b"").decode()
        return "" if held.startswith(PENDING) else held

    async def main() -> tuple[str, BaseException | None, scheduler_pb2.SubmitResponse]:
        with proxy(f"127.0.0.1:{redis_server.port}") as link:
            redis_client = await connect(f"redis://{link.address}/0")
            try:
                async with lone_scheduler(redis_client, platform.registry_address, platform.results_address) as lone:
                    link.set_delay(0.3)  # each chunk waits in the proxy: Redis's answer can be dropped there
                    first = asyncio.ensure_future(lone.admission.submit([spec]))
                    deadline = time.monotonic() + 20
                    while not confirmed() and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    written = confirmed()
                    link.reset()
                    failed = (await asyncio.gather(first, return_exceptions=True))[0]
                    link.set_delay(0.0)
                    (again,) = await lone.admission.submit([spec])
            finally:
                await redis_client.aclose()
        return written, failed, again

    written, failed, again = asyncio.run(main())
    assert written, "Redis never applied the write"
    assert isinstance(failed, REDIS_AWAY), failed
    assert (again.existing, again.task_id) == (True, written), "the key was let go: a second task under it"
    ready = wkeys.queue_keys(queue_name).ready
    eventually(lambda: rdb.zcard(ready) == 1, timeout=15, what="the written task handed over by the pump")
    with run_worker_thread(tasks_app.app, platform.address, queues=(queue_name,)):
        assert client.result(written, timeout=15) == 9
    time.sleep(1.5)
    assert rdb.zcard(ready) == 0, "another task under the key was queued"


@pytest.mark.parametrize("countdown", [0.0, 1.0], ids=["runnable", "delayed"])
def test_a_write_broken_off_before_its_key_is_confirmed_leaves_nothing_that_runs(
    platform, queue_name, rdb, redis_server, countdown
):
    """The scheduler on its own, its Redis reached through a proxy: the connection breaks while
    the write that accepts a keyed task is being sent, after its record and its place in :moving or
    the delayed set reached Redis, before its key's confirmation did. The write is one transaction,
    so Redis runs none of it: the key is let go, the retry is admitted, and one task is queued.
    (Before, Redis ran the commands it had received: the first task was written and ran, its key
    was let go as never confirmed, and the retry was admitted as a second task.)"""
    from tasktide_services.common.errors import REDIS_AWAY
    from tasktide_services.common.redis_conn import connect
    from tests.faults.proxy import proxy

    key = f"broken-{uuid.uuid4().hex}"
    spec = task_pb2.TaskSpec(
        name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=key, countdown=countdown
    )

    async def main() -> tuple[BaseException | None, scheduler_pb2.SubmitResponse]:
        with proxy(f"127.0.0.1:{redis_server.port}") as link:
            redis_client = await connect(f"redis://{link.address}/0")
            try:
                async with lone_scheduler(redis_client, platform.registry_address, platform.results_address) as lone:
                    link.reset_before(lone.store.scripts["idem_confirm"].sha.encode())
                    failed = (await asyncio.gather(lone.admission.submit([spec]), return_exceptions=True))[0]
                    assert link.broke.is_set(), "the write was not broken off"
                    (again,) = await lone.admission.submit([spec])
            finally:
                await redis_client.aclose()
        return failed, again

    failed, again = asyncio.run(main())
    assert isinstance(failed, REDIS_AWAY), failed
    assert not again.existing
    ready = wkeys.queue_keys(queue_name).ready
    eventually(lambda: rdb.zcard(ready) >= 1, timeout=15, what="the retried task queued")
    # A task written by the broken write would be handed over by the pump within this.
    time.sleep(countdown + ENQUEUE_MS / 1000 + 2.0)
    assert rdb.zcard(ready) == 1, "a second task under the key was queued"


def test_a_key_whose_release_failed_is_let_go_once_redis_is_back(platform, queue_name, rdb, redis_server):
    """The scheduler on its own, its Redis reached through a proxy: the write that accepts a keyed
    task breaks off before its key is confirmed, and Redis then refuses connections for a moment
    (it is restarting), so letting the key go fails too. The release is tried again until Redis
    takes it, and a retry of the submission once Redis is back is admitted. (Before, the key stayed
    claimed until it lapsed, CLAIM_MS: for 15 s a retry was refused as "still being written".)"""
    from tasktide_services.common.errors import REDIS_AWAY
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.scheduler.store import PENDING
    from tests.faults.proxy import proxy

    key = f"unreleased-{uuid.uuid4().hex}"
    spec = task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=key)

    async def main() -> tuple[Submitted, bytes | None, Submitted]:
        with proxy(f"127.0.0.1:{redis_server.port}") as link:
            redis_client = await connect(f"redis://{link.address}/0")
            try:
                async with lone_scheduler(redis_client, platform.registry_address, platform.results_address) as lone:
                    link.reset_before(lone.store.scripts["idem_confirm"].sha.encode(), refuse=1.0)
                    failed = await _answer(lone, spec)
                    assert link.broke.is_set(), "the write was not broken off"
                    held = rdb.get(skeys.idem(key))  # the claim, which could not be let go
                    deadline = time.monotonic() + 5.0
                    while rdb.get(skeys.idem(key)) is not None and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    again = await _answer(lone, spec)
            finally:
                await redis_client.aclose()
        return failed, held, again

    failed, held, again = asyncio.run(main())
    assert isinstance(failed, REDIS_AWAY), failed
    assert held is not None and held.decode().startswith(PENDING), f"the key was let go at once ({held!r})"
    assert isinstance(again, scheduler_pb2.SubmitResponse), f"the retry was refused: {again!r}"
    assert not again.existing
    ready = wkeys.queue_keys(queue_name).ready
    eventually(lambda: rdb.zcard(ready) == 1, timeout=15, what="the retried task queued")


def test_keys_owed_a_release_are_let_go_together_up_to_the_bound(platform, queue_name, rdb, redis_server, monkeypatch):
    """As above, for a batch of three keyed submissions, with the bound on keys owed a release
    (RELEASES_OWED) set to two: the two owed are let go together once Redis is back, and the third,
    beyond the bound, stays claimed until its claim lapses (memory stays bounded in a long outage)."""
    from tasktide_services.common.errors import REDIS_AWAY
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.scheduler import admission
    from tasktide_services.scheduler.store import PENDING
    from tests.faults.proxy import proxy

    monkeypatch.setattr(admission, "RELEASES_OWED", 2)
    run = uuid.uuid4().hex
    names = [f"owed-{i}-{run}" for i in range(3)]
    specs = [
        task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=k)
        for k in names
    ]

    async def main() -> BaseException | None:
        with proxy(f"127.0.0.1:{redis_server.port}") as link:
            redis_client = await connect(f"redis://{link.address}/0")
            try:
                async with lone_scheduler(redis_client, platform.registry_address, platform.results_address) as lone:
                    link.reset_before(lone.store.scripts["idem_confirm"].sha.encode(), refuse=1.0)
                    try:
                        await lone.admission.submit(specs)
                    except Exception as exc:  # noqa: BLE001 - asserted below
                        failed: BaseException | None = exc
                    else:
                        failed = None
                    assert link.broke.is_set(), "the write was not broken off"
                    deadline = time.monotonic() + 5.0
                    while any(rdb.get(skeys.idem(k)) for k in names[:2]) and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
            finally:
                await redis_client.aclose()
        return failed

    failed = asyncio.run(main())
    assert isinstance(failed, REDIS_AWAY), failed
    assert [rdb.get(skeys.idem(k)) for k in names[:2]] == [None, None], "the keys owed a release were not let go"
    beyond = rdb.get(skeys.idem(names[2]))
    assert beyond is not None and beyond.decode().startswith(PENDING), f"the key beyond the bound: {beyond!r}"
    assert rdb.pttl(skeys.idem(names[2])) > 0, "the claim beyond the bound does not lapse"


def test_a_key_claimed_unanswered_is_let_go(platform, queue_name, rdb, redis_server):
    """The scheduler on its own, its Redis reached through a proxy: Redis makes the claim of a
    submission's idempotency key, and the connection breaks before the answer comes back. The
    submission fails UNAVAILABLE with nothing written; the claim it may have made is let go, so a
    retry is admitted at once. (Before, the claim stayed until it lapsed, CLAIM_MS: for 15 s a retry
    was refused as "still being written".)"""
    from tasktide_services.common.errors import REDIS_AWAY
    from tasktide_services.common.redis_conn import connect
    from tests.faults.proxy import proxy

    key = f"claimlost-{uuid.uuid4().hex}"
    spec = task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=key)

    async def main() -> tuple[Submitted, Submitted]:
        with proxy(f"127.0.0.1:{redis_server.port}") as link:
            redis_client = await connect(f"redis://{link.address}/0")
            try:
                async with lone_scheduler(redis_client, platform.registry_address, platform.results_address) as lone:
                    link.lose_answer_to(key.encode())  # the first request naming the key: its claim
                    failed = await _answer(lone, spec)
                    assert link.broke.is_set(), "the claim's answer was not lost"
                    again = await _answer(lone, spec)
            finally:
                await redis_client.aclose()
        return failed, again

    failed, again = asyncio.run(main())
    assert isinstance(failed, REDIS_AWAY), failed
    assert isinstance(again, scheduler_pb2.SubmitResponse), f"the retry was refused: {again!r}"
    assert not again.existing
    ready = wkeys.queue_keys(queue_name).ready
    eventually(lambda: rdb.zcard(ready) == 1, timeout=15, what="the retried task queued")


def test_a_keyed_write_right_after_redis_lost_its_scripts_is_one_transaction(platform, queue_name, rdb, redis_server):
    """Redis restarted: its scripts are gone, and the connection with them (here SCRIPT FLUSH and
    every connection dropped). The scheduler's new connection loads its scripts before anything
    else, so the keyed write after it runs whole, in one transaction; a break in a later write
    (the proxy cuts the second write that confirms a key) finds nothing. (Before, the write's plain
    commands ran and its script calls answered NOSCRIPT; they ran again in a second transaction,
    the one cut here: the task was written, its key let go, and the retry was admitted as a second
    task, `2 == 1`.)"""
    from tasktide_services.common.redis_conn import connect
    from tests.faults.proxy import proxy

    key = f"restart-{uuid.uuid4().hex}"
    spec = task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=b"[4,5]"), queue=queue_name, idempotency_key=key)

    async def main() -> tuple[BaseException | scheduler_pb2.SubmitResponse, scheduler_pb2.SubmitResponse, bool]:
        with proxy(f"127.0.0.1:{redis_server.port}") as link:
            redis_client = await connect(f"redis://{link.address}/0")
            try:
                async with lone_scheduler(redis_client, platform.registry_address, platform.results_address) as lone:
                    await lone.store.prepare()  # as the service at its start
                    rdb.script_flush()
                    link.reset()
                    await asyncio.sleep(0.3)  # the scheduler's link sees its connection lost
                    link.reset_before(lone.store.scripts["idem_confirm"].sha.encode(), passing=1)
                    first = (await asyncio.gather(lone.admission.submit([spec]), return_exceptions=True))[0]
                    broke = link.broke.is_set()
                    link.reset_before(b"")
                    (again,) = await lone.admission.submit([spec])
            finally:
                await redis_client.aclose()
        return first if isinstance(first, BaseException) else first[0], again, broke

    first, again, broke = asyncio.run(main())
    ready = wkeys.queue_keys(queue_name).ready
    eventually(lambda: rdb.zcard(ready) >= 1, timeout=15, what="the task queued")
    time.sleep(ENQUEUE_MS / 1000 + 2.0)  # a task written by a broken write: handed over by the pump
    assert rdb.zcard(ready) == 1, "a second task under the key was queued"
    assert not broke, "a second write confirmed the key: the first was not one transaction"
    assert isinstance(first, scheduler_pb2.SubmitResponse) and not first.existing, first
    assert (again.existing, again.task_id) == (True, first.task_id)


def test_a_write_broken_off_in_a_server_of_every_service_leaves_nothing_that_runs(
    server_settings, queue_name, rdb, redis_server
):
    """The same with every service in one process, whose write also queues the task (one
    pipeline: record, events, ready queue, key): broken off before the key's confirmation, none of
    it runs, and the retry queues the one task. (Before, the first task was queued too: `2 == 1`.)"""
    from tasktide_services.scheduler.store import SCRIPTS
    from tests.faults.proxy import proxy

    confirm = SCRIPTS.sources()["idem_confirm"]
    key = f"broken-one-{uuid.uuid4().hex}"
    with proxy(f"127.0.0.1:{redis_server.port}") as link:
        settings = replace(server_settings, redis_url=f"redis://{link.address}/0")
        with PlatformThread(settings) as p, _client(p.address) as c:
            link.reset_before(hashlib.sha1(confirm.encode()).hexdigest().encode())
            with pytest.raises(tasktide.Unavailable):
                c.submit("t.add", [4, 5], queue=queue_name, idempotency_key=key)
            assert link.broke.is_set(), "the write was not broken off"
            again = eventually(
                lambda: _submitted(c, queue_name, key), timeout=15, what="the retry admitted once Redis is back"
            )
            ready = wkeys.queue_keys(queue_name).ready
            eventually(lambda: rdb.zcard(ready) >= 1, timeout=15, what="the retried task queued")
            time.sleep(2.0)
            assert rdb.zcard(ready) == 1, "a second task under the key was queued"
            assert rdb.zrange(ready, 0, -1) == [again.encode()]


def _submitted(c: tasktide.Client, queue: str, key: str) -> str | None:
    try:
        return c.submit("t.add", [4, 5], queue=queue, idempotency_key=key).id
    except tasktide.Unavailable:
        return None


def test_a_key_claimed_by_a_writer_that_died_is_refused_not_answered_with_its_id(client, queue_name, rdb):
    """A scheduler killed between claiming a key and writing its task leaves a pending claim: a
    retry of that submission gets UNAVAILABLE (not the id of a task that was never written) until
    the claim lapses, then it is admitted and runs."""
    key = f"died-{uuid.uuid4().hex[:8]}"
    phantom = uuid.uuid4().hex
    rdb.set(skeys.idem(key), "?" + phantom, px=15_000)
    with pytest.raises(tasktide.Unavailable, match="still being written"):
        client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key)
    rdb.delete(skeys.idem(key))  # the claim lapses
    h = client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key)
    assert h.id != phantom
    assert rdb.get(skeys.idem(key)) == h.id.encode()


def test_a_key_being_written_by_another_submission_is_answered_once_written(client, queue_name, rdb):
    """Two submissions with one key at once: the second waits for the first's write and gets its id."""
    key = f"twice-{uuid.uuid4().hex[:8]}"
    first = uuid.uuid4().hex
    rdb.set(skeys.idem(key), "?" + first, px=15_000)
    confirm = threading.Timer(0.2, lambda: rdb.set(skeys.idem(key), first))
    confirm.start()
    try:
        assert client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key).id == first
    finally:
        confirm.join()


def test_a_poisoned_queue_does_not_fail_lookups_of_other_tasks(platform, client, queue_name, rdb, poison):
    """Looking a task up reads every queue's task hash: a key of the wrong type fails its own
    queue's row only, and GetTask, Cancel and Explain of a task elsewhere still answer."""
    handle = client.submit("t.add", [1, 2], queue=queue_name)  # no worker: it waits in its queue
    bad = f"{queue_name}-bad"
    rdb.sadd(wkeys.QUEUES, bad)
    poison(bad)
    try:
        assert client.status(handle.id) is TaskState.QUEUED
        assert client.explain(handle.id)
        client.cancel(handle.id)
        eventually(lambda: client.status(handle.id) is TaskState.CANCELLED, what="the cancel")
    finally:
        rdb.srem(wkeys.QUEUES, bad)
