"""Results.Follow against real services: one stream the client keeps open, adding ids to follow and
forgetting others, answered with each task's final result once. Tasks are made final by recording
their events directly (Results.Record), so each test decides exactly when a result exists."""

from __future__ import annotations

import json
import queue
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tasktide.v1 import results_pb2, results_pb2_grpc, task_pb2
from tasktide_services.common.auth import mint
from tasktide_services.common.redis_server import start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.testing import PlatformThread, spawn
from tests.processes import ROOT, lone_results, stop, wait_serving

KEY = b"f" * 40
SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED


def new_id() -> str:
    return uuid.uuid4().hex


class Follow:
    """One Follow stream: `send` adds (and forgets) ids, `next` is the next response's results."""

    def __init__(self, channel: grpc.Channel, metadata: list[tuple[str, str]] | None = None) -> None:
        self._requests: queue.Queue[results_pb2.FollowRequest | None] = queue.Queue()
        stub = results_pb2_grpc.ResultsStub(channel)
        self.call = stub.Follow(iter(self._requests.get, None), metadata=metadata, timeout=60)

    def send(self, ids: list[str] = (), forget: list[str] = ()) -> None:  # type: ignore[assignment]
        self._requests.put(results_pb2.FollowRequest(task_ids=ids, forget=forget))

    def close(self) -> None:
        """Half-closes: no more requests."""
        self._requests.put(None)

    def next(self) -> dict[str, task_pb2.TaskResult]:
        return {r.task_id: r for r in next(self.call).results}

    def until(self, ids: set[str]) -> dict[str, task_pb2.TaskResult]:
        """Responses until every one of `ids` was answered; what was answered (each id once)."""
        got: dict[str, task_pb2.TaskResult] = {}
        while not ids <= got.keys():
            for tid, r in self.next().items():
                assert tid not in got, f"{tid} answered twice"
                got[tid] = r
        return got

    def cancel(self) -> None:
        self.call.cancel()
        self._requests.put(None)


def record(channel: grpc.Channel, tid: str, state: int = SUCCEEDED, value: object = None, namespace: str = "") -> None:
    spec = task_pb2.TaskSpec(name="t.follow", headers={"tasktide-namespace": namespace} if namespace else {})
    event = task_pb2.TaskEvent(task_id=tid, state=state, at_ms=1, spec=spec, name="t.follow")
    if state == SUCCEEDED:
        event.result.json = json.dumps(value).encode()
    stub = results_pb2_grpc.ResultsStub(channel)
    stub.Record(results_pb2.RecordRequest(events=[event]), timeout=30)


@pytest.fixture()
def results(platform: PlatformThread) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(getattr(platform, "results_address", platform.address))
    yield channel
    channel.close()


@pytest.fixture()
def follow(results: grpc.Channel) -> Iterator[Follow]:
    f = Follow(results)
    yield f
    f.cancel()


def test_ids_added_over_time_are_answered_in_the_order_they_finish(results: grpc.Channel, follow: Follow) -> None:
    a, b, c = new_id(), new_id(), new_id()
    follow.send([a, b])
    record(results, b, task_pb2.TASK_STATE_RUNNING)  # not final: not answered
    record(results, b, value="b")
    assert set(follow.next()) == {b}
    follow.send([c])  # added to the open stream
    record(results, c, value="c")
    record(results, a, value="a")
    got = follow.until({a, c})
    assert {t: json.loads(r.result.json) for t, r in got.items()} == {a: "a", c: "c"}
    assert got[a].state == SUCCEEDED and got[a].found and got[a].name == "t.follow"


def test_the_stream_is_accepted_at_once_with_its_header(follow: Follow) -> None:
    """The headers come as the stream opens, before any request or result: a client knows the
    service took its stream, and counts a later loss as a restart (the clients' followers)."""
    headers = dict(follow.call.initial_metadata())
    assert headers.get("tasktide-follow") == "1", headers


def test_an_id_final_already_is_answered_at_once_and_again_when_followed_again(
    results: grpc.Channel, follow: Follow
) -> None:
    done = new_id()
    record(results, done, value=7)
    follow.send([done, done])  # named twice: followed once
    assert list(follow.next()) == [done]
    follow.send([done])  # an answered id is no longer followed: following it again answers again
    (again,) = follow.next().values()
    assert json.loads(again.result.json) == 7


def test_many_ready_at_once_share_messages(results: grpc.Channel, follow: Follow) -> None:
    ids = [new_id() for _ in range(50)]
    for tid in ids:
        record(results, tid, value=tid)
    follow.send(ids)
    got = follow.until(set(ids))
    assert len(got) == 50
    assert all(json.loads(r.result.json) == t for t, r in got.items())


def test_a_forgotten_id_is_not_answered(results: grpc.Channel, follow: Follow) -> None:
    gone, kept, applied, marker = new_id(), new_id(), new_id(), new_id()
    record(results, applied)
    follow.send([gone, kept])
    follow.send(forget=[gone])
    follow.send([applied])  # requests are applied in order: once this is answered, `gone` is forgotten
    assert set(follow.next()) == {applied}
    record(results, gone, value="gone")
    record(results, kept, value="kept")
    assert set(follow.next()) == {kept}
    record(results, marker)
    follow.send([marker])  # `gone` was final before this was read: it would have come first
    assert set(follow.next()) == {marker}


def test_a_half_closed_stream_answers_what_it_follows_then_ends(results: grpc.Channel, follow: Follow) -> None:
    tid = new_id()
    follow.send([tid])
    follow.close()
    record(results, tid, value=1)
    assert set(follow.next()) == {tid}
    assert list(follow.call) == []
    assert follow.call.code() == grpc.StatusCode.OK


def _status(f: Follow) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        while True:
            f.next()
    return info.value.code(), info.value.details()


@pytest.mark.parametrize("field", ["task_ids", "forget"])
def test_a_malformed_id_ends_the_stream_with_invalid_argument(follow: Follow, field: str) -> None:
    follow._requests.put(results_pb2.FollowRequest(**{field: ["../not-an-id"]}))
    code, details = _status(follow)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed task id" in details


def test_more_ids_than_the_bound_are_resource_exhausted(
    results: grpc.Channel, follow: Follow, server_settings: ServerSettings
) -> None:
    most = server_settings.limits.max_batch
    follow.send([new_id() for _ in range(most)])  # up to the bound: followed
    done = new_id()
    record(results, done)
    follow.send(forget=[new_id()], ids=[done])  # over it by one (forgetting an unknown id frees nothing)
    code, details = _status(follow)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {most} task ids" in details


def test_forgetting_makes_room_under_the_bound(
    results: grpc.Channel, follow: Follow, server_settings: ServerSettings
) -> None:
    most = server_settings.limits.max_batch
    ids = [new_id() for _ in range(most)]
    follow.send(ids)
    done = new_id()
    record(results, done)
    follow.send(forget=ids[:1], ids=[done])
    assert set(follow.next()) == {done}


@pytest.fixture(scope="module")
def secured(server_settings: ServerSettings) -> Iterator[PlatformThread]:
    with PlatformThread(replace(server_settings, auth_key=KEY.decode())) as p:
        yield p


def _md(namespace: str, role: str = "producer") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {mint(KEY, namespace=namespace, role=role)}")]


def test_another_namespaces_task_is_followed_as_an_unknown_id(secured: PlatformThread) -> None:
    theirs, mine = new_id(), new_id()
    with grpc.insecure_channel(secured.address) as ch:
        for tid, ns in ((theirs, "beta"), (mine, "alpha")):
            event = task_pb2.TaskEvent(
                task_id=tid,
                state=SUCCEEDED,
                at_ms=1,
                spec=task_pb2.TaskSpec(name="t.follow", headers={"tasktide-namespace": ns}),
            )
            results_pb2_grpc.ResultsStub(ch).Record(
                results_pb2.RecordRequest(events=[event]), metadata=_md("default", "service"), timeout=30
            )
        alpha = Follow(ch, metadata=_md("alpha"))
        try:
            alpha.send([theirs, mine])  # both final: read together, only its own is answered
            assert set(alpha.next()) == {mine}
            alpha.send(forget=[theirs])
            alpha.close()
            assert list(alpha.call) == []  # nothing was left followed
        finally:
            alpha.cancel()
        beta = Follow(ch, metadata=_md("beta"))
        try:
            beta.send([theirs])
            assert set(beta.next()) == {theirs}
        finally:
            beta.cancel()


def test_results_still_arrive_after_the_results_service_restarts(tmp_path: Path) -> None:
    """The results service is killed while a stream follows ids, and started again: the stream
    breaks (UNAVAILABLE), the client opens a new one and names its ids again, and the results
    recorded meanwhile and after are answered."""
    with lone_results(tmp_path) as r:
        address = r.addresses["results"][0]
        early, during, after = new_id(), new_id(), new_id()
        with grpc.insecure_channel(address) as ch:
            f = Follow(ch)
            f.send([early, during, after])
            record(ch, early, value="early")
            assert set(f.next()) == {early}
            r.kill("results", 0)
            code, _ = _status(f)
            assert code == grpc.StatusCode.UNAVAILABLE
            r.start("results", 0)
            record(ch, during, value="during")  # recorded before the client reopens
            f = Follow(ch)
            f.send([during, after])  # the ids still followed, named again
            assert set(f.next()) == {during}
            record(ch, after, value="after")
            assert set(f.next()) == {after}
            f.cancel()


def _record_when_accepted(channel: grpc.Channel, tid: str, until: float) -> None:
    """Record, tried again while the results service reconnects to Redis (as a registry would)."""
    while True:
        try:
            return record(channel, tid, value=tid)
        except grpc.RpcError:
            if time.monotonic() > until:
                raise
            time.sleep(0.2)


def test_a_stream_open_across_a_redis_outage_goes_on(tmp_path: Path) -> None:
    """Redis stops while a stream follows ids and reads a new one: the reads fail and are tried
    again, the stream stays open, and once Redis is back the ids are answered on it."""
    folder = tempfile.mkdtemp(prefix="tt-")  # short: a socket path has a length limit
    address = f"unix:{folder}/results.sock"
    data = tmp_path / "redis"
    server = start_redis(data, appendonly=True)  # the data outlives the restart
    proc = spawn("results", env={"TASKTIDE_REDIS_URL": server.url, "TASKTIDE_LISTEN": address}, cwd=ROOT)
    try:
        wait_serving(address, proc)
        first, across, before = new_id(), new_id(), new_id()
        with grpc.insecure_channel(address) as ch:
            record(ch, before, value="before")  # final before the outage, followed during it
            f = Follow(ch)
            f.send([first, across])
            record(ch, first, value="first")
            assert set(f.next()) == {first}
            server.stop()
            f.send([before])  # read while Redis is away: fails, and is tried again
            time.sleep(1.0)
            server = start_redis(data, port=server.port, appendonly=True)
            assert set(f.next()) == {before}
            _record_when_accepted(ch, across, time.monotonic() + 60)
            (result,) = f.next().values()
            assert result.task_id == across and json.loads(result.result.json) == across
            f.cancel()
        assert proc.poll() is None
    finally:
        stop([proc])
        server.stop()


def _gets(r: object) -> int:
    stats = r.info("commandstats")  # type: ignore[attr-defined]
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def test_a_result_recorded_by_the_results_service_is_answered_without_reading_it_back(tmp_path: Path) -> None:
    """The results service that records a task's final result answers its followers (a Follow
    stream, a Wait call) with the result as written: the only GET of the task after it is followed
    is the one inside `record`. A task reopened afterwards is not answered from that result."""
    import redis

    folder = tempfile.mkdtemp(prefix="tt-")
    address = f"unix:{folder}/results.sock"
    server = start_redis(tmp_path / "redis", appendonly=False)  # its own: the counters are this test's
    proc = spawn("results", env={"TASKTIDE_REDIS_URL": server.url, "TASKTIDE_LISTEN": address}, cwd=ROOT)
    r = redis.Redis.from_url(server.url)
    try:
        wait_serving(address, proc)
        tid = new_id()
        with grpc.insecure_channel(address) as ch:
            f = Follow(ch)
            record(ch, tid, task_pb2.TASK_STATE_RUNNING)
            f.send([tid])  # read at once: not final
            time.sleep(0.3)
            r.config_resetstat()
            record(ch, tid, value="written")
            (got,) = f.next().values()
            assert got.task_id == tid and got.state == SUCCEEDED and json.loads(got.result.json) == "written"
            assert got.spec.name == "t.follow" and got.found
            assert _gets(r) == 1  # record's own read of the result; none to answer the follower

            waited = new_id()  # the same for a Wait call
            stub = results_pb2_grpc.ResultsStub(ch)
            with futures.ThreadPoolExecutor(1) as pool:
                wait = pool.submit(stub.Wait, results_pb2.WaitRequest(task_id=waited, timeout=20), timeout=30)
                time.sleep(0.3)  # its first read: not found
                r.config_resetstat()
                record(ch, waited, value="waited")
                answer = wait.result(timeout=30)
            assert answer.state == SUCCEEDED and json.loads(answer.result.json) == "waited"
            assert _gets(r) == 1

            reopen = task_pb2.TaskEvent(task_id=tid, state=task_pb2.TASK_STATE_QUEUED, at_ms=2, reopen=True)
            stub.Record(results_pb2.RecordRequest(events=[reopen]), timeout=30)
            f.send([tid])  # queued again: the result written before is not the answer
            with pytest.raises(grpc.RpcError):
                _next_within(f, 0.5)
            f.cancel()
            f = Follow(ch)
            f.send([tid])
            record(ch, tid, value="again")
            (got,) = f.next().values()
            assert json.loads(got.result.json) == "again"
            f.cancel()
    finally:
        stop([proc])
        server.stop()


def _next_within(f: Follow, seconds: float) -> dict[str, task_pb2.TaskResult]:
    """The next response if it comes within `seconds`; the stream is cancelled otherwise."""
    import threading

    timer = threading.Timer(seconds, f.call.cancel)
    timer.start()
    try:
        return f.next()
    finally:
        timer.cancel()
