"""Every script call keeps its KEYS in one Redis Cluster slot, so the same scripts run on Redis
Cluster (the keys of one queue, task or schedule share a hash tag). A run through the platform is
watched with MONITOR, and the keys of each script call are hashed as Redis Cluster does."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from redis.crc import key_slot

import tasktide
from tasktide import chord, group
from tasktide_services.common.lua import LuaFile
from tasktide_services.results.store import SCRIPTS as RESULTS_SCRIPTS
from tasktide_services.scheduler.store import SCRIPTS as SCHEDULER_SCRIPTS
from tasktide_services.testing import run_worker_thread
from tasktide_services.worker.store import SCRIPTS as REGISTRY_SCRIPTS
from tests.tasks_app import add, app, total

END = "end-of-key-slot-watch"

# The scripts the run below makes the platform call. Not among them: release (a draining worker
# giving back leases it has not started), schedule_stuck (after a scheduler crashed) and
# idem_release (after a failed write); they take the same key builders as their neighbours
# (keys.queue_keys, keys.schedule_keys, keys.idem).
EXPECTED = {
    "enqueue",
    "dispatch",
    "extend",
    "complete",
    "reap",
    "hold",
    "bury",
    "revoke",
    "requeue_dead",
    "retire",
    "retried",
    "claim_due",
    "schedule_put",
    "schedule_pause",
    "schedule_delete",
    "schedule_claim",
    "schedule_fired",
    "rate_slots",
    "idem_confirm",
    "step_done",
    "finish",
    "record",
    "events_after",
}


def script_names(*files: LuaFile) -> dict[str, str]:
    """SHA1 of each script as Redis runs it -> its name."""
    return {hashlib.sha1(src.encode()).hexdigest(): name for f in files for name, src in f.sources().items()}


class ScriptCalls:
    """The script calls Redis runs while watched, as (script name, KEYS), read from MONITOR."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.names = script_names(SCHEDULER_SCRIPTS, REGISTRY_SCRIPTS, RESULTS_SCRIPTS)
        self.calls: list[tuple[str, list[str]]] = []
        self._changed = threading.Condition()
        self._watching = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with redis.Redis.from_url(self.url).monitor() as monitor:
            self._watching.set()
            while True:
                words = monitor.next_command()["command"].split(" ")
                if words[0].upper() == "ECHO" and words[1:2] == [END]:
                    return
                if words[0].upper() == "EVALSHA":
                    n = int(words[2])
                    with self._changed:
                        self.calls.append((self.names.get(words[1], words[1]), words[3 : 3 + n]))
                        self._changed.notify_all()

    def seen(self) -> set[str]:
        with self._changed:
            return {name for name, _ in self.calls}

    def wait_for(self, name: str, timeout: float = 15.0) -> None:
        """Until Redis has run the script `name`."""
        with self._changed:
            if not self._changed.wait_for(lambda: name in {n for n, _ in self.calls}, timeout):
                raise AssertionError(f"no call of {name} within {timeout} s")

    @contextmanager
    def watching(self) -> Iterator[ScriptCalls]:
        self._thread.start()
        assert self._watching.wait(10)
        try:
            yield self
        finally:
            with redis.Redis.from_url(self.url) as r:
                r.echo(END)
            self._thread.join(10)


def slots(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


def test_slots_are_computed_as_redis_cluster_does() -> None:
    assert key_slot(b"123456789") == 12739  # the CRC16 check value of the cluster specification
    assert slots(["tt:w:{q}:ready", "tt:w:{q}:task"]) == {key_slot(b"q")}
    assert len(slots(["tt:s:delayed", "tt:s:moving"])) == 2  # names without a shared tag


def test_every_script_call_keeps_its_keys_in_one_slot(platform, client, queue_name, redis_server, tmp_path):
    q = queue_name

    def submit(name: str, *args: object, **opts: object) -> tasktide.TaskHandle:
        return client.submit_spec(app.tasks[name].spec(list(args), queue=q, **opts))

    with ScriptCalls(redis_server.url).watching() as calls:
        with run_worker_thread(app, platform.address, queues=(q,)):
            assert submit("t.add", 1, 2).get(timeout=10) == 3
            assert submit("t.add", 2, 2, countdown=0.05).get(timeout=10) == 4
            assert submit("t.fails_once", str(tmp_path / "failed")).get(timeout=10) == "second attempt ok"
            submit("t.limited", str(tmp_path / "starts")).get(timeout=10)
            assert submit("t.with_progress", 2).get(timeout=10) == 2
            dead = submit("t.always_fails", "broken")
            with pytest.raises(tasktide.TaskDead):
                dead.get(timeout=10)
            assert client.requeue_dead(q) == 1
            wf = chord(group(add.s(i, 1).set(queue=q) for i in range(3)), total.s().set(queue=q)).apply_async(client)
            assert wf.get(timeout=15) == 6
            assert [e.cursor for e in client.watch([wf.task_ids[0][0]])]

            marker = tmp_path / "started"
            running = submit("t.cooperative", 30.0, str(marker))
            calls.wait_for("extend")  # a heartbeat while it runs
            assert running.cancel() is tasktide.TaskState.RUNNING
            with pytest.raises(tasktide.TaskCancelled):
                running.get(timeout=10)

            client.put_schedule(f"s-{q}", "t.add", [1, 2], every=0.05, queue=q)
            calls.wait_for("schedule_fired")
            client.pause_schedule(f"s-{q}")
            client.delete_schedule(f"s-{q}")
            calls.wait_for("reap")
        assert submit("t.add", 0, 0).cancel() is tasktide.TaskState.CANCELLED  # still queued: revoked

    # On one Redis server a task's `record` call also writes its index entry (results/store.py): its
    # KEYS are then the task's three and an index bucket's three, each group in one slot; on a
    # cluster the entry has a call of its own (tests/test_cluster.py runs the suite there).
    groups = [(name, group) for name, keys in calls.calls for group in _groups(name, keys)]
    split = [(name, keys) for name, keys in groups if len(slots(keys)) != 1]
    assert split == []
    assert any(name == "record" and len(keys) == 6 for name, keys in calls.calls)
    assert EXPECTED <= calls.seen(), f"not called: {sorted(EXPECTED - calls.seen())}"


def _groups(name: str, keys: list[str]) -> list[list[str]]:
    """The KEYS of a script call that must share a slot (a `record` carrying an index entry: two)."""
    return [keys[:3], keys[3:]] if name == "record" and len(keys) == 6 else [keys]
