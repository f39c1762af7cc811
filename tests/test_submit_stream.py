"""Submitting over the shared SubmitStream: answers by sequence number, refusals that leave the
stream open, pipelined submission confirmed by flush(), and a stream reopened after a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import grpc
import pytest

from tasktide import Client, ClientSettings
from tasktide._exceptions import InvalidArgument, Unavailable
from tasktide._spec import build_spec
from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2, worker_pb2, worker_pb2_grpc
from tasktide_services.testing import PlatformThread, client_settings, eventually, run_worker_thread
from tests.conftest import ROOT
from tests.submit_stream_server import serve_submit_stream
from tests.tasks_app import app


def _spec(name: str, queue: str) -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name=name, queue=queue)


def test_each_request_is_answered_by_its_sequence_number_and_a_refusal_leaves_the_stream_open(platform, queue_name):
    seqs = [7, 8, 9, 10]
    names = ["t.add", "not a valid name!", "t.add", ""]
    reqs = [
        scheduler_pb2.SubmitStreamRequest(seq=s, spec=_spec(n, queue_name)) for s, n in zip(seqs, names, strict=True)
    ]
    with grpc.insecure_channel(platform.address) as ch:
        answers = list(scheduler_pb2_grpc.SchedulerStub(ch).SubmitStream(iter(reqs)))
    by_seq = {a.seq: a for a in answers}
    assert sorted(by_seq) == seqs
    for seq in (7, 9):
        assert by_seq[seq].error_code == 0 and len(by_seq[seq].result.task_id) == 32
        assert by_seq[seq].result.state == task_pb2.TASK_STATE_QUEUED
    for seq in (8, 10):
        assert by_seq[seq].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert by_seq[seq].error_message  # says what is wrong
        assert not by_seq[seq].result.task_id


def test_a_refused_task_raises_and_the_next_one_goes_through(client, queue_name):
    with pytest.raises(InvalidArgument, match="name"):
        client.submit("not a valid name!", [1, 2], queue=queue_name)
    with run_worker_thread(app, client.settings.address, queues=(queue_name,)):
        assert client.submit("t.add", [2, 3], queue=queue_name).get(timeout=20) == 5


def test_submissions_from_many_threads_share_the_stream(client, queue_name):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(lambda i: client.submit("t.add", [i, 1], queue=queue_name), range(200)))
    assert len({h.id for h in handles}) == 200
    with run_worker_thread(app, client.settings.address, queues=(queue_name,)):
        assert [h.get(timeout=20) for h in handles] == [i + 1 for i in range(200)]


def test_pipelined_submission_is_confirmed_by_flush(platform, queue_name):
    settings = replace(client_settings(platform.address), pipelined_submit=True)
    with Client(settings=settings) as c:
        handles = [c.submit("t.add", [i, i], queue=queue_name) for i in range(300)]
        c.flush(timeout=30)
        assert all(len(h.id) == 32 for h in handles)
        with run_worker_thread(app, platform.address, queues=(queue_name,)):
            assert [h.get(timeout=20) for h in handles] == [2 * i for i in range(300)]


def test_a_pipelined_refusal_is_raised_by_flush_and_by_its_handle(platform, queue_name):
    settings = replace(client_settings(platform.address), pipelined_submit=True)
    with Client(settings=settings) as c:
        good = c.submit("t.add", [1, 1], queue=queue_name)
        bad = c.submit("not a valid name!", [], queue=queue_name)  # returns: nothing is confirmed yet
        with pytest.raises(InvalidArgument, match="name"):
            c.flush(timeout=30)
        c.flush(timeout=30)  # reported once
        assert len(good.id) == 32
        with pytest.raises(InvalidArgument):
            _ = bad.id


def test_refusals_waiting_for_flush_are_kept_up_to_a_bound_and_the_rest_counted(platform, queue_name):
    from tasktide._submitter import REFUSALS_KEPT

    settings = replace(client_settings(platform.address), pipelined_submit=True)
    n = REFUSALS_KEPT + 150
    with Client(settings=settings) as c:
        bad = [c.submit("not a valid name!", [], queue=queue_name) for _ in range(n)]
        with pytest.raises(InvalidArgument) as raised:
            c.flush(timeout=30)
        notes = raised.value.__notes__
        assert sum(note.startswith("also refused") for note in notes) == REFUSALS_KEPT - 1
        assert notes[-1].startswith(f"and {n - REFUSALS_KEPT} more refused")
        c.flush(timeout=30)  # reported once
        for h in bad[-3:]:  # each handle still holds its own error
            with pytest.raises(InvalidArgument):
                _ = h.id


def test_the_stream_reopens_after_the_platform_restarts(server_settings, queue_name):
    p1 = PlatformThread(server_settings).start()  # on port 0; it comes back on the port it was given
    settings = replace(server_settings, address=p1.address)
    with Client(settings=ClientSettings.from_env({}, address=p1.address)) as c:
        first = c.submit("t.add", [1, 2], queue=queue_name)
        p1.stop()
        with pytest.raises(Unavailable):
            c.submit("t.add", [3, 4], queue=queue_name)
        p2 = PlatformThread(settings).start()
        try:

            def submit_again() -> object:
                try:
                    return c.submit("t.add", [5, 6], queue=queue_name)
                except Unavailable:
                    return None  # the channel reconnects with backoff

            second = eventually(submit_again, timeout=20, interval=0.2, what="a submission after the restart")
            with run_worker_thread(app, p2.address, queues=(queue_name,)):
                assert first.get(timeout=20) == 3
                assert second.get(timeout=20) == 11
        finally:
            p2.stop()


def _notified(redis_server, queue: str, action) -> list[str]:
    """Queue names published on the registry's wake-up channel while `action` runs."""
    import redis

    from tasktide_services.worker import keys

    r = redis.Redis.from_url(redis_server.url)
    ps = r.pubsub()
    ps.subscribe(keys.NOTIFY)
    try:
        ps.get_message(timeout=1.0)  # the subscription's confirmation
        action()
        # The wake-up is published inside the submission's script, before the call returns; a
        # marker published now arrives after anything it published, so the marker ends the wait.
        marker = f"{queue}-marker-{uuid.uuid4().hex[:6]}"
        r.publish(keys.NOTIFY, marker)
        names: list[str] = []

        def marker_seen() -> bool:
            msg = ps.get_message(timeout=0.1)
            if msg is not None and msg["type"] == "message":
                names.extend(msg["data"].decode().split(","))
            return marker in names

        eventually(marker_seen, timeout=10, interval=0, what="the marker on the wake-up channel")
        return [n for n in names if n == queue]
    finally:
        ps.close()
        r.close()


@pytest.mark.one_process  # with the services split, the hand-over is a call to the registry
def test_a_task_for_an_idle_worker_is_handed_over_without_a_wake_up(redis_server, platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert client.submit("t.add", [1, 2], queue=queue_name).get(timeout=20) == 3  # the worker is connected
        handles = []
        woken = _notified(
            redis_server, queue_name, lambda: handles.append(client.submit("t.add", [4, 5], queue=queue_name))
        )
        assert handles[0].get(timeout=20) == 9
        assert woken == []  # leased in the submission's own round trip, sent to the idle worker
    # With no worker, the task waits in its queue and the queue is announced.
    woken = _notified(redis_server, queue_name, lambda: client.submit("t.add", [1, 1], queue=queue_name))
    assert woken == [queue_name]


def test_tasks_beyond_the_idle_workers_credit_are_announced_and_run(redis_server, platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=1, prefetch=1):
        handles: list = []
        woken = _notified(
            redis_server,
            queue_name,
            lambda: handles.extend(
                client.submit_many([build_spec("t.add", [i, i], queue=queue_name) for i in range(10)])
            ),
        )
        assert woken == [queue_name]  # more than the worker's credit: they wait in the queue, announced
        assert [h.get(timeout=20) for h in handles] == [2 * i for i in range(10)]


def test_a_stream_left_idle_is_replaced_before_the_next_submission(client, queue_name, monkeypatch):
    from tasktide import _submitter

    monkeypatch.setattr(_submitter, "MAX_IDLE_SECONDS", 0.2)
    first = client.submit("t.add", [1, 1], queue=queue_name)
    stream = client._submitter._stream  # noqa: SLF001 - which stream carried it
    time.sleep(0.4)
    second = client.submit("t.add", [2, 2], queue=queue_name)
    assert client._submitter._stream is not stream  # noqa: SLF001
    assert len({first.id, second.id}) == 2
    with run_worker_thread(app, client.settings.address, queues=(queue_name,)):
        assert (first.get(timeout=20), second.get(timeout=20)) == (2, 4)


def test_the_stream_works_with_each_service_in_its_own_process(tmp_path, queue_name):
    """No hop collapsed, no hand-over: the scheduler reaches the registry and results over gRPC."""
    from tasktide_services.testing import spawn
    from tests.processes import ROOT, own_redis, separate_services, stop

    with (
        own_redis(tmp_path / "redis") as redis_url,
        separate_services({"TASKTIDE_REDIS_URL": redis_url, "TASKTIDE_TICK_SECONDS": "0.05"}) as common,
    ):
        worker = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, "-c", "2", env=common, cwd=ROOT)
        try:
            settings = ClientSettings.from_env(common)
            with Client(settings=settings) as confirmed:
                handles = [confirmed.submit("t.add", [i, i], queue=queue_name) for i in range(20)]
                with pytest.raises(InvalidArgument):
                    confirmed.submit("not a valid name!", [], queue=queue_name)
                assert [h.get(timeout=30) for h in handles] == [2 * i for i in range(20)]
            with Client(settings=replace(settings, pipelined_submit=True)) as pipelined:
                handles = [pipelined.submit("t.add", [i, 1], queue=queue_name) for i in range(200)]
                pipelined.flush(timeout=30)
                assert [h.get(timeout=30) for h in handles] == [i + 1 for i in range(200)]
        finally:
            stop([worker])


def test_pipelined_submissions_are_confirmed_before_the_process_exits(platform, queue_name):
    """A producer that ends without flush() or close(): its unconfirmed submissions still arrive."""
    code = (
        "from tasktide import Client, ClientSettings\n"
        f"settings = ClientSettings.from_env({{'TASKTIDE_PIPELINED_SUBMIT': '1'}}, address={platform.address!r})\n"
        "c = Client(settings=settings)\n"
        f"for i in range(500): c.submit('t.add', [i, i], queue={queue_name!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
    with grpc.insecure_channel(platform.registry_address) as ch:
        stats = worker_pb2_grpc.RegistryStub(ch).QueueStats(worker_pb2.QueueStatsRequest(), timeout=10)
    assert {q.queue: q.ready for q in stats.queues}.get(queue_name) == 500


def test_a_stream_larger_than_a_batch_is_read_a_batch_at_a_time_and_answered_whole(server_settings, queue_name):
    """The inbox holds one batch at most (the stream is not read while it is full): 250 submissions
    sent at once on a platform whose batches are 7 are all answered, each once."""
    small = replace(server_settings, limits=replace(server_settings.limits, max_batch=7))
    with PlatformThread(small) as p, grpc.insecure_channel(p.address) as ch:
        reqs = [scheduler_pb2.SubmitStreamRequest(seq=i, spec=_spec("t.add", queue_name)) for i in range(250)]
        answers = list(scheduler_pb2_grpc.SchedulerStub(ch).SubmitStream(iter(reqs)))
    assert sorted(a.seq for a in answers) == list(range(250))
    assert all(a.error_code == 0 and len(a.result.task_id) == 32 for a in answers)
    assert len({a.result.task_id for a in answers}) == 250


class _Enqueues:
    """Counts the registry's enqueue scripts run for one queue, read from Redis MONITOR while the
    block runs: the platform's own loops (due tasks, reaper, schedules) run scripts meanwhile,
    more of them the longer a loaded machine takes, so the whole EVALSHA count would not tell."""

    def __init__(self, port: int, queue: str) -> None:
        import threading

        import redis

        from tasktide_services.common.lua import load_scripts
        from tasktide_services.worker.store import SCRIPTS

        scripts = load_scripts(None, SCRIPTS)
        self._shas = {scripts[name].sha for name in ("enqueue", "enqueue_dispatch")}
        self._queue, self._end = queue, f"end-{uuid.uuid4().hex}"
        self._redis = redis.Redis(port=port)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="monitor", daemon=True)
        self.count = 0

    def _read(self) -> None:
        with self._redis.monitor() as m:
            self._ready.set()
            for cmd in m.listen():
                words = str(cmd["command"]).split()
                if words[:2] == ["ECHO", self._end]:
                    return
                if words[:1] == ["EVALSHA"] and words[1] in self._shas and self._queue in words[2:]:
                    self.count += 1

    def __enter__(self) -> _Enqueues:
        self._thread.start()
        assert self._ready.wait(10), "MONITOR did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._redis.echo(self._end)
        self._thread.join(30)
        assert not self._thread.is_alive(), "MONITOR did not see the end of the count"
        self._redis.close()


def test_several_streams_sending_at_once_are_each_answered_with_their_own_submissions(server_settings, queue_name):
    """Three streams send 100 submissions each at once on a platform whose batches are 7: the
    streams' submissions are admitted together, and every stream gets its own sequence numbers
    back, each once."""
    import threading

    small = replace(server_settings, limits=replace(server_settings.limits, max_batch=7))
    p = PlatformThread(small).start()
    answers: dict[int, list[scheduler_pb2.SubmitStreamResponse]] = {}
    start = threading.Barrier(3)

    def run(k: int) -> None:
        reqs = [
            scheduler_pb2.SubmitStreamRequest(seq=k * 1000 + i, spec=_spec("t.add", queue_name)) for i in range(100)
        ]
        with grpc.insecure_channel(p.address) as ch:
            grpc.channel_ready_future(ch).result(timeout=10)
            start.wait()
            answers[k] = list(scheduler_pb2_grpc.SchedulerStub(ch).SubmitStream(iter(reqs)))

    try:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        p.stop()
    for k in range(3):
        assert sorted(a.seq for a in answers[k]) == [k * 1000 + i for i in range(100)]
        assert all(a.error_code == 0 and len(a.result.task_id) == 32 for a in answers[k])
    assert len({a.result.task_id for k in range(3) for a in answers[k]}) == 300


def test_producers_each_waiting_for_their_answer_share_the_schedulers_writes(redis_server, platform, queue_name):
    """Four clients (four streams) submitting one task at a time, each waiting for its answer, as
    the processes of a web server do: submissions arriving from different streams while one is
    written are admitted together, so there are fewer enqueue scripts than tasks (one each when
    every stream is admitted on its own)."""
    import threading

    clients = [Client(settings=ClientSettings.from_env({}, address=platform.address)) for _ in range(4)]
    try:
        for c in clients:  # streams open, scripts loaded
            c.submit("t.add", [0, 0], queue=queue_name)
        start = threading.Barrier(4)

        def run(c: Client) -> None:
            start.wait()
            for i in range(50):
                c.submit("t.add", [i, i], queue=queue_name)

        with _Enqueues(redis_server.port, queue_name) as enqueues:
            threads = [threading.Thread(target=run, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        for c in clients:
            c.close()
    assert 0 < enqueues.count < 200


def _answers(messages: list[scheduler_pb2.SubmitStreamResponse]) -> list[scheduler_pb2.SubmitStreamResponse]:
    """Every answer of a SubmitStream, each message's batch opened."""
    return [a for m in messages for a in (m.batch or [m])]


def test_a_message_may_carry_a_batch_of_submissions_each_answered_by_its_sequence_number(server_settings, queue_name):
    """The scheduler announces how many submissions a message may carry (its batch limit, in the
    stream's initial metadata). A batch's entries are answered one by one, a refused entry with its
    error, those beyond the limit with RESOURCE_EXHAUSTED; answers ready together come in one
    message; a message of one submission is still answered on its own, and the stream goes on."""
    small = replace(server_settings, limits=replace(server_settings.limits, max_batch=7))
    with PlatformThread(small) as p:
        first = [scheduler_pb2.SubmitStreamRequest(seq=i, spec=_spec("t.add", queue_name)) for i in range(1, 11)]
        first[2].spec.name = "not a valid name!"
        then = scheduler_pb2.SubmitStreamRequest(seq=50, spec=_spec("t.add", queue_name))
        with grpc.insecure_channel(p.address) as ch:
            call = scheduler_pb2_grpc.SchedulerStub(ch).SubmitStream(
                iter([scheduler_pb2.SubmitStreamRequest(batch=first), then])
            )
            header = dict(call.initial_metadata())
            messages = list(call)
    assert header["tasktide-submit-batch"] == "7"
    assert header["tasktide-submit-bytes"] == str(small.limits.max_message_bytes)  # the largest message it takes
    by_seq = {a.seq: a for a in _answers(messages)}
    assert sorted(by_seq) == [*range(1, 11), 50]
    assert len(_answers(messages)) == 11  # each once
    accepted = [1, 2, 4, 5, 6, 7, 50]
    assert all(by_seq[s].error_code == 0 and len(by_seq[s].result.task_id) == 32 for s in accepted)
    assert by_seq[3].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "name" in by_seq[3].error_message
    for s in (8, 9, 10):
        assert by_seq[s].error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert "10 submissions in one message; the limit is 7" in by_seq[s].error_message
    assert any(len(m.batch) > 1 for m in messages)  # the refusals beyond the limit, at least, come together


class _MessagesSent(grpc.StreamStreamClientInterceptor):
    """Counts the SubmitStream messages a client sends and the submissions they carry, and keeps
    the size of the largest message of several."""

    def __init__(self) -> None:
        self.messages = 0
        self.submissions = 0
        self.largest_batch = 0  # submissions
        self.largest_batch_bytes = 0

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        def counted():  # type: ignore[no-untyped-def]
            for req in request_iterator:
                self.messages += 1
                self.submissions += len(req.batch) or 1
                if len(req.batch) > 1:
                    self.largest_batch = max(self.largest_batch, len(req.batch))
                    self.largest_batch_bytes = max(self.largest_batch_bytes, req.ByteSize())
                yield req

        return continuation(client_call_details, counted())


def _submitter(address: str, counter: _MessagesSent, pipelined: bool = False):  # type: ignore[no-untyped-def]
    from tasktide._submitter import StreamSubmitter

    channel = grpc.intercept_channel(grpc.insecure_channel(address), counter)
    return StreamSubmitter(scheduler_pb2_grpc.SchedulerStub(channel), address, pipelined=pipelined), channel


def _from_eight_threads(address: str, specs: list[task_pb2.TaskSpec]) -> tuple[list[str], _MessagesSent]:
    """Each spec submitted by one of eight threads, each waiting for its answer: the ids in the
    specs' order, and what the client sent."""
    from concurrent.futures import ThreadPoolExecutor

    counter = _MessagesSent()
    submitter, channel = _submitter(address, counter)
    try:
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(submitter.submit, specs))
    finally:
        submitter.close()
        channel.close()
    return ids, counter


def test_threads_waiting_for_their_answers_share_messages(platform, queue_name):
    """Eight threads submitting one task at a time each: what they queue while a message is being
    sent goes in the next one, so the client sends fewer messages than tasks, and every thread gets
    its own task's id."""
    specs = [build_spec("t.add", [i, 1], {}, queue=queue_name) for i in range(400)]
    ids, counter = _from_eight_threads(platform.address, specs)
    assert len(set(ids)) == 400 and all(isinstance(i, str) and len(i) == 32 for i in ids)
    assert counter.submissions == 400
    assert counter.messages < 400
    with (
        run_worker_thread(app, platform.address, queues=(queue_name,)),
        Client(settings=client_settings(platform.address)) as c,
    ):
        assert [c.result(i, timeout=20) for i in ids] == [i + 1 for i in range(400)]


def test_a_scheduler_that_announces_no_batches_gets_one_submission_per_message(queue_name):
    """A scheduler from before batches (its SubmitStream sends no batch header) is sent one
    submission per message, pipelined or not."""
    seen: list[scheduler_pb2.SubmitStreamRequest] = []

    def answer(requests, context):  # type: ignore[no-untyped-def]
        for req in requests:
            seen.append(req)
            yield scheduler_pb2.SubmitStreamResponse(
                seq=req.seq, result=scheduler_pb2.SubmitResponse(task_id=f"{req.seq:032x}")
            )

    counter = _MessagesSent()
    with serve_submit_stream(answer) as address:
        submitter, channel = _submitter(address, counter, pipelined=True)
        try:
            futs = [submitter.send(build_spec("t.add", [i, 1], {}, queue=queue_name), True) for i in range(200)]
            submitter.flush(timeout=30)
        finally:
            submitter.close()
            channel.close()
    assert [f.result() for f in futs] == [f"{i + 1:032x}" for i in range(200)]
    assert counter.messages == 200
    assert not any(len(req.batch) for req in seen)


def test_pipelined_submissions_go_in_batches_the_scheduler_announced(platform, queue_name):
    """Pipelined, the submissions queued while a message is sent go together: 1,000 tasks in far
    fewer messages, each confirmed with its own id."""
    counter = _MessagesSent()
    submitter, channel = _submitter(platform.address, counter, pipelined=True)
    try:
        futs = [submitter.submit(build_spec("t.add", [i, 1], {}, queue=queue_name)) for i in range(1000)]
        submitter.flush(timeout=60)
    finally:
        submitter.close()
        channel.close()
    ids = [f.result() for f in futs]  # type: ignore[union-attr]
    assert len(set(ids)) == 1000 and all(len(i) == 32 for i in ids)
    assert counter.submissions == 1000
    assert counter.messages < 500


def test_a_batch_stays_under_the_message_size_a_scheduler_takes(server_settings, queue_name):
    """Twenty pipelined tasks of about 300 KB each, to a scheduler that takes messages of 2 MiB at
    most: the client splits what is queued into messages under 1 MiB, and every task is accepted
    (one message of all twenty would be refused whole, failing every submission it carried)."""
    small = replace(server_settings, limits=replace(server_settings.limits, max_message_bytes=2 * 1024 * 1024))
    counter = _MessagesSent()
    with PlatformThread(small) as p:
        submitter, channel = _submitter(p.address, counter, pipelined=True)
        try:
            specs = [build_spec("t.add", ["x" * 300_000, str(i)], {}, queue=queue_name) for i in range(20)]
            futs = [submitter.submit(s) for s in specs]
            submitter.flush(timeout=60)
        finally:
            submitter.close()
            channel.close()
    ids = [f.result() for f in futs]  # type: ignore[union-attr]
    assert len(set(ids)) == 20 and all(len(i) == 32 for i in ids)
    assert counter.submissions == 20


def test_batches_stay_under_a_message_limit_below_1_mib(server_settings, queue_name):
    """A scheduler that takes messages of 64 KiB at most, and eight threads submitting tasks of
    about 20 KiB each, waiting for their answers: what they queue together goes in messages under
    the size the scheduler announced, so every task is accepted (a message of four such tasks,
    under the client's own 1 MiB bound, would end the stream with RESOURCE_EXHAUSTED and fail
    every submission it carried)."""
    limit = 64 * 1024
    small = replace(server_settings, limits=replace(server_settings.limits, max_message_bytes=limit))
    with PlatformThread(small) as p:
        specs = [build_spec("t.add", ["x" * 20_000, str(i)], {}, queue=queue_name) for i in range(160)]
        ids, counter = _from_eight_threads(p.address, specs)
    assert len(set(ids)) == 160 and all(isinstance(i, str) and len(i) == 32 for i in ids)
    assert counter.submissions == 160
    assert counter.largest_batch > 1, "no batch formed: the test shows nothing"
    assert counter.largest_batch_bytes <= limit


def test_tasktide_max_message_bytes_sets_the_limit_the_scheduler_announces_and_keeps(server_settings, queue_name):
    """`tasktide dev` started with TASKTIDE_MAX_MESSAGE_BYTES=65536 (read once at the entry point)
    announces it on SubmitStream, and eight threads submitting tasks of about 20 KiB through it
    each get their task accepted: the client's batches stay under it."""
    from tasktide_services.testing import spawn_listening
    from tests.processes import stop

    limit = 64 * 1024
    env = {"TASKTIDE_REDIS_URL": server_settings.redis_url, "TASKTIDE_MAX_MESSAGE_BYTES": str(limit)}
    proc, address, _ = spawn_listening("dev", env=env, cwd=ROOT)
    try:
        call = scheduler_pb2_grpc.SchedulerStub(grpc.insecure_channel(address)).SubmitStream(iter(()))
        assert dict(call.initial_metadata())["tasktide-submit-bytes"] == str(limit)
        call.cancel()
        specs = [build_spec("t.add", ["x" * 20_000, str(i)], {}, queue=queue_name) for i in range(80)]
        ids, counter = _from_eight_threads(address, specs)
    finally:
        stop([proc])
    assert len(set(ids)) == 80
    assert counter.largest_batch > 1, "no batch formed: the test shows nothing"
    assert counter.largest_batch_bytes <= limit


@pytest.mark.parametrize("value", ["0", "-1", "lots", "65535", "70000.5", "inf", "3000000000"])
def test_a_bad_tasktide_max_message_bytes_stops_the_server_with_a_message(value):
    """A message limit that is not a whole number of bytes from 64 KiB to gRPC's ceiling: the
    server does not start, and says which setting and why (exit code 2)."""
    env = {**os.environ, "TASKTIDE_MAX_MESSAGE_BYTES": value, "TASKTIDE_REDIS_URL": ""}
    out = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "dev", "--address", "127.0.0.1:0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out
    assert "TASKTIDE_MAX_MESSAGE_BYTES" in out.stderr
