"""A queue declared with partitions (TASKTIDE_QUEUE_PARTITIONS, common/partitions.py): tasks spread
over the partitions, each runs once, priority holds within a partition, and pause, statistics,
dead letters, cancel and Explain work on the queue as a whole."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
import redis

import tasktide
from tasktide import Client, TaskState
from tasktide.v1 import task_pb2, worker_pb2, worker_pb2_grpc
from tasktide_services.common.partitions import Partitions, parse
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler.direct import DirectSubmitter
from tasktide_services.testing import PlatformThread, client_settings, eventually, run_worker_thread
from tasktide_services.worker import keys
from tests.tasks_app import app

RUN = uuid.uuid4().hex[:6]
HOT, PRIO, PAUSED, DEAD, CANCEL = (f"pq-{RUN}-{n}" for n in ("hot", "prio", "paused", "dead", "cancel"))
N = 3


@pytest.fixture(scope="module")
def parted(server_settings: ServerSettings) -> Iterator[PlatformThread]:
    """A platform on the suite's Redis with the queues above declared with N partitions."""
    declared = tuple((q, N) for q in (HOT, PRIO, PAUSED, DEAD, CANCEL))
    with PlatformThread(replace(server_settings, queue_partitions=declared)) as p:
        yield p


@pytest.fixture()
def pclient(parted: PlatformThread) -> Iterator[Client]:
    with Client(settings=client_settings(parted.address)) as c:
        yield c


@pytest.fixture()
def r(redis_server) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


def spec(name: str, *args, **opts) -> task_pb2.TaskSpec:
    return app.tasks[name].spec(list(args), **opts)


def ready_per_partition(r: redis.Redis, queue: str) -> list[int]:
    return [int(r.zcard(keys.queue_keys(q).ready)) for q in Partitions({queue: N}).of(queue)]


def test_tasks_spread_over_the_partitions_and_each_runs_once(parted, pclient, r, tmp_path):
    path = tmp_path / "ran"
    handles = pclient.submit_many([spec("t.record", str(path), str(i), queue=HOT) for i in range(30)])
    assert ready_per_partition(r, HOT) == [10, 10, 10]
    assert {pclient.get_task(h.id).spec.queue for h in handles} == {HOT, f"{HOT}#1", f"{HOT}#2"}
    stats = [s for s in pclient.queue_stats() if s.queue.startswith(HOT)]
    assert [(s.queue, s.ready) for s in stats] == [(HOT, 30)]  # one queue to its users
    with run_worker_thread(app, parted.address, queues=(HOT,), concurrency=4) as w:
        eventually(lambda: w.completed == 30)
        assert [h.get(timeout=10) for h in handles] == [str(i) for i in range(30)]
    assert Counter(path.read_text().split()) == Counter(str(i) for i in range(30))  # each once
    assert ready_per_partition(r, HOT) == [0, 0, 0]


def test_priority_is_strict_within_each_partition(parted, pclient, tmp_path):
    path = tmp_path / "order"
    prios = [(-50, 0, 50)[i % 3] for i in range(7)] * 3  # each partition gets every priority
    handles = pclient.submit_many(
        [spec("t.record", str(tmp_path / "order"), str(i), queue=PRIO, priority=p) for i, p in enumerate(prios)]
    )
    partition = {str(i): pclient.get_task(h.id).spec.queue for i, h in enumerate(handles)}
    with run_worker_thread(app, parted.address, queues=(PRIO,), concurrency=1, prefetch=1) as w:
        eventually(lambda: w.completed == len(prios))
    order = path.read_text().split()
    for q in set(partition.values()):
        mine = [prios[int(label)] for label in order if partition[label] == q]
        assert mine == sorted(mine, reverse=True), (q, mine)


def test_pause_and_explain_cover_every_partition(parted, pclient):
    pclient.pause_queue(PAUSED)
    handles = pclient.submit_many([spec("t.add", i, i, queue=PAUSED) for i in range(6)])
    stat = next(s for s in pclient.queue_stats() if s.queue == PAUSED)
    assert (stat.ready, stat.paused) == (6, True)
    with run_worker_thread(app, parted.address, queues=(PAUSED,)):
        for h in handles:
            eventually(lambda h=h: h.explain().reason == "QUEUE_PAUSED")
        assert all(h.status() is TaskState.QUEUED for h in handles)
        pclient.resume_queue(PAUSED)
        assert [h.get(timeout=10) for h in handles] == [2 * i for i in range(6)]


def test_dead_letters_of_every_partition_are_listed_and_requeued(parted, pclient):
    with run_worker_thread(app, parted.address, queues=(DEAD,)):
        handles = pclient.submit_many([spec("t.always_fails", "broken", queue=DEAD) for _ in range(3)])
        for h in handles:
            with pytest.raises(tasktide.TaskDead):
                h.get(timeout=20)
        assert {pclient.get_task(h.id).spec.queue for h in handles} == {DEAD, f"{DEAD}#1", f"{DEAD}#2"}
        # The final event is recorded before the task joins the dead letters: wait for all three.
        eventually(lambda: sorted(d.task_id for d in pclient.dead_letters(DEAD)) == sorted(h.id for h in handles))
        assert next(s for s in pclient.queue_stats() if s.queue == DEAD).dead == 3
        assert pclient.requeue_dead(DEAD, [handles[2].id]) == 1
        eventually(lambda: handles[2].status() is TaskState.DEAD and len(pclient.dead_letters(DEAD)) == 3)
        assert pclient.requeue_dead(DEAD) == 3


def test_a_queued_task_in_any_partition_is_cancelled(parted, pclient):
    handles = pclient.submit_many([spec("t.add", i, i, queue=CANCEL) for i in range(3)])
    assert [h.cancel() for h in handles] == [TaskState.CANCELLED] * 3
    assert next(s for s in pclient.queue_stats() if s.queue == CANCEL).ready == 0


def test_a_partition_name_is_not_a_queue_callers_may_name(parted, pclient):
    with pytest.raises(tasktide.InvalidArgument, match="invalid queue name"):
        pclient.submit_spec(spec("t.add", 1, 1, queue=f"{HOT}#1"))
    with grpc.insecure_channel(parted.address) as ch:
        stub = worker_pb2_grpc.RegistryStub(ch)
        for bad in (f"{HOT}#0", f"{HOT}#999", f"{HOT}#x", "#1", f"{HOT}#1#2"):
            with pytest.raises(grpc.RpcError) as info:
                stub.Locate(worker_pb2.LocateRequest(queue=bad, task_id="0" * 32))
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, bad
        assert not stub.Locate(worker_pb2.LocateRequest(queue=f"{HOT}#2", task_id="0" * 32)).ready


def test_the_direct_path_spreads_over_the_partitions_too(parted, redis_server, r):
    queue = f"pq-{RUN}-direct"
    env = {"TASKTIDE_QUEUE_PARTITIONS": f"{queue}:{N}"}
    direct = DirectSubmitter.from_url(redis_server.url, env)
    try:
        for i in range(9):
            assert direct.submit(spec("t.add", i, i, queue=queue))
    finally:
        direct.close()
    assert ready_per_partition(r, queue) == [3, 3, 3]


@pytest.mark.parametrize(
    "text",
    ["hot", "hot:0", "hot:257", "hot:x", "bad#name:3", ":3", "hot:-1"],
)
def test_a_bad_declaration_is_refused_with_its_item(text):
    with pytest.raises(ValueError, match="TASKTIDE_QUEUE_PARTITIONS"):
        ServerSettings.from_env({"TASKTIDE_QUEUE_PARTITIONS": text})


def test_a_declaration_is_read_once_into_the_settings():
    settings = ServerSettings.from_env({"TASKTIDE_QUEUE_PARTITIONS": "hot:3, ns~q:2,"})
    assert settings.queue_partitions == (("hot", 3), ("ns~q", 2))
    assert parse("") == {}
    parts = Partitions.from_pairs(settings.queue_partitions)
    assert parts.of("hot") == ["hot", "hot#1", "hot#2"] and parts.of("other") == ["other"]
    assert [parts.choose("hot") for _ in range(4)] == ["hot", "hot#1", "hot#2", "hot"]


def test_a_reaper_pass_in_chunks_goes_on_past_a_poisoned_queue(redis_server):
    """The reaper looks at many queues per round trip; a queue whose keys Redis refuses fails alone,
    and scripts Redis lost are loaded again within the pass. The queues live in a database of their
    own: the registry this module runs on database 0 would otherwise reap them first."""
    import asyncio

    from tasktide_services.common.lua import load_scripts, run_blocking_pipeline
    from tasktide_services.common.peers import Peers
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.scheduler.admission import new_task
    from tasktide_services.worker import passes, reaper
    from tasktide_services.worker.store import SCRIPTS, RegistryStore, build_enqueue

    url = f"redis://127.0.0.1:{redis_server.port}/7"
    r = redis.Redis.from_url(url)
    queues = [f"pq-{RUN}-reap{i}" for i in range(5)]
    poisoned = f"pq-{RUN}-reap-poison"
    scripts = load_scripts(None, SCRIPTS)
    tasks = [new_task(spec("t.add", 1, 1, queue=q), 0) for q in queues]
    run_blocking_pipeline(r, lambda pipe: build_enqueue(pipe, scripts, tasks), scripts)
    for q in queues:  # leased with a deadline already past
        run_blocking_pipeline(r, lambda pipe, q=q: scripts["dispatch"](keys.queue_keys(q), [0, 1, 1], client=pipe))
    r.set(keys.queue_keys(poisoned).leases, "not a sorted set")
    r.sadd(keys.QUEUES, poisoned)

    async def one_pass() -> int:
        aredis = await connect(url)
        peers = Peers(ServerSettings())
        try:
            return await reaper.reap_once(RegistryStore(aredis), peers, ServerSettings())
        finally:
            await peers.close()
            await aredis.aclose()

    r.script_flush()  # Redis lost its scripts (a restart): the pass loads them and looks again
    old = passes.CHUNK
    passes.CHUNK = 2  # several chunks, the poisoned queue in one of them
    try:
        failed = asyncio.run(one_pass())
    finally:
        passes.CHUNK = old
        r.delete(keys.queue_keys(poisoned).leases)
        r.srem(keys.QUEUES, poisoned)
    assert failed == 1
    assert [int(r.zcard(keys.queue_keys(q).ready)) for q in queues] == [1] * 5
    assert [int(r.zcard(keys.queue_keys(q).leases)) for q in queues] == [0] * 5
    r.flushdb()
    r.close()


def test_each_priority_is_spread_over_the_partitions_whatever_the_arrival_order(parted, pclient):
    """High, low, low, high, low, low...: by arrival turn alone every high task would land in one
    partition and wait behind the others' low ones; each priority takes its own turn instead."""
    queue = PRIO
    prios = [50, -50, -50] * 3
    handles = pclient.submit_many([spec("t.add", 1, 1, queue=queue, priority=p) for p in prios])
    highs = [pclient.get_task(h.id).spec.queue for h, p in zip(handles, prios, strict=True) if p == 50]
    assert sorted(highs) == sorted(Partitions({queue: N}).of(queue))
    for h in handles:
        h.cancel()


def test_each_partition_is_a_hash_slot_of_its_own():
    """Every key of a partition shares one slot (its scripts stay single-slot); partitions differ."""
    from redis.crc import key_slot

    parts = Partitions({"hot": 3}).of("hot")
    slots = []
    for q in parts:
        mine = {key_slot(k.encode()) for k in keys.queue_keys(q)}
        assert len(mine) == 1, q
        slots += mine
    assert len(set(slots)) == len(parts)


def test_the_reaper_spends_at_most_a_fifth_of_its_time_in_passes():
    from tasktide_services.worker.reaper import MAX_SHARE, pause_after

    assert pause_after(0.01, 1.0) == 0.0  # a short pass: the usual interval
    for elapsed in (0.5, 2.0, 10.0):  # a long one (many queues): pass / (pass + interval + pause)
        assert elapsed / (elapsed + 1.0 + pause_after(elapsed, 1.0)) == pytest.approx(MAX_SHARE)


def test_the_registry_takes_a_partition_from_a_scheduler_elsewhere(parted, r):
    """Enqueue (a scheduler in another process) carries the partition chosen at admission."""
    from tasktide_services.scheduler.admission import new_task

    queue = f"pq-{RUN}-enqueue"
    task = new_task(spec("t.add", 1, 1, queue=f"{queue}#2"), 0)
    with grpc.insecure_channel(parted.address) as ch:
        stub = worker_pb2_grpc.RegistryStub(ch)
        assert stub.Enqueue(worker_pb2.EnqueueRequest(tasks=[task])).enqueued == 1
        for bad in (f"{queue}#0", f"{queue}#", f"{queue}#1#1", "bad name#1"):
            task.spec.queue = bad
            with pytest.raises(grpc.RpcError) as info:
                stub.Enqueue(worker_pb2.EnqueueRequest(tasks=[task]))
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, bad
    assert int(r.zcard(keys.queue_keys(f"{queue}#2").ready)) == 1
    r.delete(*keys.queue_keys(f"{queue}#2"))
    r.srem(keys.QUEUES, f"{queue}#2")
