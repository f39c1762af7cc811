"""Admission (scheduler/admission.py) is the one decision of what a submission needs: a task that needs
the scheduler's state is accepted by the scheduler whether or not the client submits straight to Redis,
and the direct path (scheduler/direct.py) writes only what admission calls runnable now."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tasktide import Client, ClientSettings
from tasktide.v1 import task_pb2
from tasktide_services.scheduler import admission
from tasktide_services.scheduler.direct import DirectSubmitter
from tasktide_services.worker.keys import queue_keys

S = task_pb2


@pytest.fixture()
def direct(platform, redis_server) -> Iterator[Client]:
    settings = ClientSettings.from_env({"TASKTIDE_SUBMIT_REDIS_URL": redis_server.url}, address=platform.address)
    with Client(settings=settings) as c:
        yield c


@pytest.fixture()
def submitter(redis_server) -> Iterator[DirectSubmitter]:
    s = DirectSubmitter.from_url(redis_server.url)
    yield s
    s.close()


def _spec(queue: str, name: str = "t.add", **fields: Any) -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(name=name, queue=queue, args=task_pb2.Payload(json=b"[1,2]"), **fields)


def _outcome(client: Client, submitted: Client, queue: str, name: str) -> list[tuple[str, int, str]]:
    """Submit through `submitted` a delayed task, a keyed one twice, and two under a rate limit of
    one an hour; what the scheduler then says of each (id relations, state, wait reason)."""
    key = f"{name}-key"
    options: list[dict[str, Any]] = [
        {"countdown": 3600.0},
        {"idempotency_key": key},
        {"idempotency_key": key},
        {"rate_limit": "1/h"},
        {"rate_limit": "1/h"},
    ]
    handles = [submitted.submit_spec(_spec(queue, name=name, **o)) for o in options]
    ids = [h.id for h in handles]
    first = [f"#{ids.index(task_id)}" for task_id in ids]  # the keyed pair is one task
    return [(f, client.get_task(t).state, client.explain(t).reason) for f, t in zip(first, ids, strict=True)]


def test_tasks_needing_the_scheduler_end_the_same_with_the_direct_path(client, direct, queue_name):
    # Each run its own task name: a rate limit's slots are per task name.
    without = _outcome(client, client, f"{queue_name}-a", f"t.plain_{uuid.uuid4().hex[:8]}")
    with_direct = _outcome(client, direct, f"{queue_name}-b", f"t.direct_{uuid.uuid4().hex[:8]}")
    assert with_direct == without
    assert without == [
        ("#0", S.TASK_STATE_SCHEDULED, "ETA"),
        ("#1", S.TASK_STATE_QUEUED, "NO_WORKER"),
        ("#1", S.TASK_STATE_QUEUED, "NO_WORKER"),
        ("#3", S.TASK_STATE_QUEUED, "NO_WORKER"),
        ("#4", S.TASK_STATE_SCHEDULED, "RATE_LIMIT"),
    ]


SPECS = {
    "plain": {},
    "countdown": {"countdown": 30.0},
    "eta": {"eta_ms": 4_000_000_000_000},
    "idempotency key": {"idempotency_key": "k"},
    "rate limit": {"rate_limit": "10/s"},
    "all of them": {"countdown": 1.0, "idempotency_key": "k", "rate_limit": "1/m"},
}


@pytest.mark.parametrize("fields", SPECS.values(), ids=SPECS.keys())
def test_the_direct_path_writes_only_what_admission_calls_runnable_now(submitter, redis_server, queue_name, fields):
    spec = _spec(queue_name, **fields)
    routed = bool(admission.needs(spec))
    task_id = submitter.submit(spec)
    ready = redis.Redis(port=redis_server.port).zrange(queue_keys(queue_name)[0], 0, -1)
    if routed:
        assert task_id is None
        assert ready == []
    else:
        assert task_id is not None
        assert ready == [task_id.encode()]


def test_a_need_added_to_admission_sends_direct_submissions_to_the_scheduler(
    submitter, redis_server, queue_name, monkeypatch
):
    """A new piece of scheduler state (here: a header) declared in admission alone routes the
    direct path's submissions to the scheduler, with no change to direct.py."""
    spec = _spec(queue_name, headers={"tasktide-tenant": "acme"})
    ready = redis.Redis(port=redis_server.port)
    queued = submitter.submit(spec)  # needs nothing yet: written directly
    assert queued is not None
    assert ready.zrange(queue_keys(queue_name)[0], 0, -1) == [queued.encode()]

    tenant = admission.Need("tenant", lambda s: "tasktide-tenant" in s.headers)
    monkeypatch.setattr(admission, "NEEDS", (*admission.NEEDS, tenant))
    assert admission.needs(spec) == {tenant}
    assert submitter.submit(_spec(queue_name, headers={"tasktide-tenant": "acme"})) is None
    assert ready.zrange(queue_keys(queue_name)[0], 0, -1) == [queued.encode()]
