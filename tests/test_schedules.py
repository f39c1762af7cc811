"""Periodic schedules against real services: firing, replicas, cron, pause/resume, delete, CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import tasktide
from tasktide.v1 import scheduler_pb2, task_pb2
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler import keys
from tasktide_services.scheduler.schedule_store import ScheduleStore
from tasktide_services.scheduler.store import SchedulerStore
from tasktide_services.testing import (
    PlatformThread,
    blocking_redis,
    client_settings,
    eventually,
    run_worker_thread,
    unreachable_address,
)
from tests.tasks_app import app

UTC = dt.UTC


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture()
def sched_name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def sync_redis(server_settings: ServerSettings) -> Any:
    r = blocking_redis(server_settings.redis_url)
    yield r
    r.close()


def idem_keys(r: Any, name: str) -> set[bytes]:
    return set(r.scan_iter(match=keys.idem(f"schedule:{name}:*"), count=1000))


def cannot_fire(r: Any, name: str) -> bool:
    """No occurrence of the schedule is due or being handed over: nothing more can be submitted."""
    firing = [m for m in r.zrange(keys.SCHEDULES_FIRING, 0, -1) if m.decode().startswith(f"{name}|")]
    return r.zscore(keys.SCHEDULES_DUE, name) is None and not firing


def queue_drained(client: tasktide.Client, queue: str) -> bool:
    """Every task submitted to the queue has finished (none ready or leased)."""
    stat = next((s for s in client.queue_stats() if s.queue == queue), None)
    return stat is not None and stat.ready == 0 and stat.leased == 0


def test_bad_definitions_are_invalid_argument(client: tasktide.Client, sched_name: str) -> None:
    with pytest.raises(tasktide.InvalidArgument, match="invalid cron expression"):
        client.put_schedule(sched_name, "t.add", [1, 2], cron="61 * * * *")
    with pytest.raises(tasktide.InvalidArgument, match="unknown timezone"):
        client.put_schedule(sched_name, "t.add", [1, 2], cron="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(tasktide.InvalidArgument, match="every must be"):
        client.put_schedule(sched_name, "t.add", [1, 2], every=0.0001)
    with pytest.raises(tasktide.InvalidArgument, match="invalid schedule id"):
        client.put_schedule("no spaces", "t.add", [1, 2], every=1.0)
    with pytest.raises(tasktide.ConfigurationError, match="exactly one"):
        client.put_schedule(sched_name, "t.add", cron="* * * * *", every=1.0)
    for nothing in (0, 0.0, dt.timedelta(0), float("nan")):  # 0 would travel as "no interval"
        with pytest.raises(tasktide.ConfigurationError, match="every must be a positive number of seconds"):
            client.put_schedule(sched_name, "t.add", every=nothing)
    with pytest.raises(tasktide.NotFound):
        client.get_schedule(sched_name)


def test_cron_schedule_reports_its_next_run(client: tasktide.Client, sched_name: str) -> None:
    before = dt.datetime.now(UTC)
    s = client.put_schedule(sched_name, "t.add", [1, 2], cron="*/5 * * * *")
    try:
        assert s.next_run is not None and before < s.next_run <= before + dt.timedelta(minutes=5)
        assert s.next_run.minute % 5 == 0 and s.next_run.second == 0
        assert s.cron == "*/5 * * * *" and s.timezone == "UTC" and s.runs == 0 and s.args == [1, 2]
        assert sched_name in [x.name for x in client.list_schedules()]
        again = client.put_schedule(sched_name, "t.add", [1, 2], cron="*/5 * * * *")
        assert again.next_run == s.next_run
    finally:
        client.delete_schedule(sched_name)


# -- firing -------------------------------------------------------------------------------------


def test_interval_schedule_fires_repeatedly_until_deleted(
    client: tasktide.Client,
    platform: PlatformThread,
    queue_name: str,
    sched_name: str,
    tmp_path: Path,
    sync_redis: Any,
) -> None:
    out = tmp_path / "ticks"
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        client.put_schedule(sched_name, "t.record", [str(out), "tick"], every=0.2, queue=queue_name)
        eventually(lambda: lines(out) >= 3, what="three occurrences run")
        s = client.get_schedule(sched_name)
        assert s.runs >= 3 and s.last_task_id and s.last_run is not None
        assert s.next_run is not None and s.next_run > s.last_run
        eventually(lambda: client.status(s.last_task_id) == tasktide.TaskState.SUCCEEDED, what="last task done")
        runs = client.get_schedule(sched_name).runs
        assert client.delete_schedule(sched_name)
        # Occurrences claimed between the read of `runs` and the delete (more than one when a loaded
        # machine is slow between the two calls) may still be submitted; then nothing more.
        eventually(lambda: cannot_fire(sync_redis, sched_name), what="no occurrence due or handed over")
        eventually(lambda: lines(out) >= runs and queue_drained(client, queue_name), what="submitted ones run")
        assert runs <= lines(out) == len(idem_keys(sync_redis, sched_name))  # each submitted occurrence ran once
    with pytest.raises(tasktide.NotFound):
        client.get_schedule(sched_name)
    with pytest.raises(tasktide.NotFound):
        client.delete_schedule(sched_name)


def test_pause_stops_firing_and_resume_continues(
    client: tasktide.Client,
    platform: PlatformThread,
    queue_name: str,
    sched_name: str,
    tmp_path: Path,
    sync_redis: Any,
) -> None:
    out = tmp_path / "ticks"
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        client.put_schedule(sched_name, "t.record", [str(out), "tick"], every=0.1, queue=queue_name)
        eventually(lambda: lines(out) >= 2, what="two occurrences run")
        paused = client.pause_schedule(sched_name)
        assert paused.paused and paused.next_run is None
        eventually(lambda: lines(out) == paused.runs, what="occurrences claimed before the pause run")
        eventually(lambda: cannot_fire(sync_redis, sched_name), what="no occurrence due or handed over")
        assert client.get_schedule(sched_name).runs == paused.runs
        assert lines(out) == paused.runs
        resumed = client.resume_schedule(sched_name)
        assert not resumed.paused and resumed.next_run is not None
        eventually(lambda: lines(out) >= paused.runs + 2, what="firing after resume")
        client.delete_schedule(sched_name)


def test_missed_occurrences_fire_once_on_catch_up(
    client: tasktide.Client, sched_name: str, queue_name: str, sync_redis: Any
) -> None:
    client.put_schedule(sched_name, "t.add", [1, 2], every=60.0, queue=queue_name)
    try:
        # As if no scheduler had run for ten minutes: the next occurrence lies ten intervals back.
        missed = int(time.time() * 1000) - 600_000
        sync_redis.zadd(keys.SCHEDULES_DUE, {sched_name: missed})
        s = eventually(
            lambda: (g := client.get_schedule(sched_name)).runs == 1 and g.last_task_id and g, what="catch-up"
        )
        assert s.last_run == dt.datetime.fromtimestamp(missed / 1000, UTC)
        assert s.next_run is not None and s.next_run > dt.datetime.now(UTC)
        assert idem_keys(sync_redis, sched_name) == {keys.idem(f"schedule:{sched_name}:{missed}").encode()}
        task = client.get_task(s.last_task_id)
        assert task.spec.headers["tasktide-occurrence"] == str(missed)
    finally:
        client.delete_schedule(sched_name)


def test_a_repeated_hand_over_submits_once(
    client: tasktide.Client, sched_name: str, queue_name: str, sync_redis: Any
) -> None:
    """An occurrence left in :firing past its deadline (its scheduler died after claiming it) is
    submitted by another; handing it over again after it was submitted makes no second task."""
    client.put_schedule(sched_name, "t.add", [1, 2], every=3600.0, queue=queue_name)
    try:
        occurrence = int(time.time() * 1000) - 5_000
        member = f"{sched_name}|{occurrence}"
        sync_redis.zadd(keys.SCHEDULES_FIRING, {member: occurrence})
        eventually(lambda: sync_redis.zscore(keys.SCHEDULES_FIRING, member) is None, what="hand-over taken over")
        first = client.get_schedule(sched_name).last_task_id
        assert first and client.get_task(first).spec.headers["tasktide-occurrence"] == str(occurrence)
        sync_redis.hset(keys.schedule(sched_name), "last_task", "")
        sync_redis.zadd(keys.SCHEDULES_FIRING, {member: occurrence})  # as if the first hand-over had not finished
        eventually(lambda: sync_redis.zscore(keys.SCHEDULES_FIRING, member) is None, what="second hand-over")
        assert client.get_schedule(sched_name).last_task_id == first
        assert idem_keys(sync_redis, sched_name) == {keys.idem(f"schedule:{sched_name}:{occurrence}").encode()}
    finally:
        client.delete_schedule(sched_name)


def test_two_replicas_never_fire_an_occurrence_twice(
    client: tasktide.Client, platform: PlatformThread, server_settings: ServerSettings, queue_name: str, sync_redis: Any
) -> None:
    """Each claim counts a run; each submitted occurrence leaves its idempotency key. Had two replicas
    claimed one occurrence, a schedule would count more runs than occurrences submitted."""
    second = PlatformThread(server_settings).start()
    names = [f"r-{uuid.uuid4().hex[:8]}-{i}" for i in range(8)]
    try:
        for n in names:  # no worker: the tasks wait in their queue
            client.put_schedule(n, "t.add", [1, 2], every=0.05, queue=queue_name)
        eventually(lambda: all(client.get_schedule(n).runs >= 10 for n in names), what="ten runs each")
        for n in names:
            client.pause_schedule(n)
        mine = tuple(f"{n}|" for n in names)
        eventually(
            lambda: not [m for m in sync_redis.zrange(keys.SCHEDULES_FIRING, 0, -1) if m.decode().startswith(mine)],
            what="hand-overs finished",
        )
        for n in names:
            s = client.get_schedule(n)
            occurrences_submitted = idem_keys(sync_redis, n)
            assert s.runs >= 10
            assert len(occurrences_submitted) == s.runs, n
    finally:
        second.stop()
        for n in names:
            client.delete_schedule(n, missing_ok=True)


def test_claim_is_exclusive(server_settings: ServerSettings, sched_name: str) -> None:
    """Two schedulers that read the same due occurrence: exactly one claims it."""

    async def main() -> list[bool]:
        r = await connect(server_settings.redis_url)
        try:
            base = SchedulerStore(r, 60)
            st = ScheduleStore(r, base.scripts)
            s = scheduler_pb2.Schedule(id=sched_name, task=task_pb2.TaskSpec(name="t.add", queue="nowhere"), every=3600)
            now = int(time.time() * 1000)
            # Due an hour from now, read as if it were then: the platform's own scheduler, running
            # on the same Redis, does not see it due and stays out of the race.
            later = now + 3_600_000
            await st.put(s, later, now, False)
            (seen,) = [d for d in await st.due(later, 10_000) if d.schedule.id == sched_name]
            results = await asyncio.gather(*[st.claim(seen, later + 3_600_000, later + 30_000) for _ in range(5)])
            await st.fired([(sched_name, seen.occurrence, "")])
            await st.delete(sched_name)
            return list(results)
        finally:
            await r.aclose()

    assert sorted(asyncio.run(main())) == [False, False, False, False, True]


# -- declarative schedules and the command line ------------------------------------------------------


def test_sync_schedules_is_idempotent_and_keeps_a_pause(platform: PlatformThread, queue_name: str) -> None:
    shop = tasktide.App(f"shop{uuid.uuid4().hex[:6]}", address=platform.address)

    @shop.periodic_task(cron="0 3 * * *", timezone="Europe/Paris", queue=queue_name)
    def nightly() -> str:
        return "done"

    shop.add_periodic("t.add", [1, 2], every=3600.0, name=f"{shop.name}-hourly", queue=queue_name)
    try:
        first = {s.name: s for s in shop.sync_schedules()}
        assert set(first) == {nightly.name, f"{shop.name}-hourly"}
        assert first[nightly.name].timezone == "Europe/Paris" and first[nightly.name].queue == queue_name
        shop.client.pause_schedule(nightly.name)
        again = {s.name: s for s in shop.sync_schedules()}
        assert again[f"{shop.name}-hourly"].next_run == first[f"{shop.name}-hourly"].next_run
        assert again[nightly.name].paused
    finally:
        for n in shop.periodic:
            shop.client.delete_schedule(n, missing_ok=True)
        shop.close()


def _cli(*args: str, address: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKTIDE_ADDRESS": address}
    return subprocess.run(
        [sys.executable, "-m", "tasktide.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_add_list_delete_round_trip(platform: PlatformThread, sched_name: str) -> None:
    a = platform.address
    res = _cli("schedule", "add", sched_name, "t.add", "--args", "[1, 2]", "--cron", "*/5 * * * *", address=a)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["next_run"]
    listed = [json.loads(line) for line in _cli("schedule", "list", address=a).stdout.splitlines()]
    (mine,) = [s for s in listed if s["name"] == sched_name]
    assert mine["task"] == "t.add" and mine["args"] == [1, 2] and mine["cron"] == "*/5 * * * *"
    res = _cli("schedule", "pause", sched_name, address=a)
    assert res.returncode == 0 and json.loads(res.stdout)["paused"] is True
    res = _cli("schedule", "add", "x" + sched_name, "t.add", "--cron", "not a cron", address=a)
    assert res.returncode == 2 and "invalid cron expression" in res.stderr
    res = _cli("schedule", "add", "x" + sched_name, "t.add", address=a)
    assert res.returncode == 2 and "exactly one of --cron and --every" in res.stderr
    res = _cli("schedule", "add", "x" + sched_name, "t.add", "--every", "0", address=a)
    assert res.returncode == 2 and "every must be a positive number of seconds, got 0.0" in res.stderr
    assert _cli("schedule", "delete", sched_name, address=a).returncode == 0
    res = _cli("schedule", "delete", sched_name, address=a)
    assert res.returncode == 4 and "no schedule" in res.stderr
    assert _cli("schedule", "resume", sched_name, address=a).returncode == 4
    assert sched_name not in _cli("schedule", "list", address=a).stdout
    with unreachable_address() as nowhere:
        assert _cli("schedule", "list", address=nowhere).returncode == 3


def test_async_client_manages_schedules(platform: PlatformThread, sched_name: str) -> None:
    async def main() -> None:
        async with tasktide.AsyncClient(settings=client_settings(platform.address)) as c:
            s = await c.put_schedule(sched_name, "t.add", [1, 2], every=3600.0, paused=True)
            assert s.paused and s.next_run is None
            assert (await c.resume_schedule(sched_name)).next_run is not None
            assert sched_name in [x.name for x in await c.list_schedules()]
            assert await c.delete_schedule(sched_name)
            with pytest.raises(tasktide.NotFound):
                await c.get_schedule(sched_name)
            with pytest.raises(tasktide.InvalidArgument, match="cron"):
                await c.put_schedule(sched_name, "t.add", cron="* * *")

    asyncio.run(main())
