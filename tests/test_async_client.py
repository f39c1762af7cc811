"""The AsyncClient's queue, worker and dead-letter methods (those of Client, awaited), against the
real platform."""

from __future__ import annotations

import asyncio
import time

import pytest

import tasktide
from tasktide import AsyncClient, ClientSettings, TaskState
from tasktide_services.testing import client_settings, eventually, run_worker_thread
from tests.tasks_app import app


def _settings(platform) -> ClientSettings:
    return client_settings(platform.address)


def _stat(stats, queue: str):
    (stat,) = [s for s in stats if s.queue == queue]
    return stat


def test_pause_resume_and_queue_stats(platform, client, queue_name):
    async def paused_then_resumed() -> tuple[bool, str, int, bool, str]:
        async with AsyncClient(settings=_settings(platform)) as c:
            await c.pause_queue(queue_name)
            h = await c.submit_spec(app.tasks["t.add"].spec([3, 4], queue=queue_name))
            await c.flush()
            paused = _stat(await c.queue_stats(), queue_name)
            reason = (await h.explain()).reason
            await c.resume_queue(queue_name)
            resumed = _stat(await c.queue_stats(), queue_name)
            return paused.paused, reason, paused.ready, resumed.paused, h.id

    was_paused, reason, ready, still_paused, task_id = asyncio.run(paused_then_resumed())
    assert (was_paused, reason, ready, still_paused) == (True, "QUEUE_PAUSED", 1, False)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert client.result(task_id, timeout=20) == 7


def test_workers_lists_a_connected_worker(platform, queue_name):
    async def workers_of_queue() -> list:
        async with AsyncClient(settings=_settings(platform)) as c:
            while True:  # until the worker's session is open (the test's timeout bounds the wait)
                mine = [w for w in await c.workers() if queue_name in w.queues]
                if mine:
                    return mine
                await asyncio.sleep(0.02)

    with run_worker_thread(app, platform.address, queues=(queue_name,)) as worker:
        mine = asyncio.run(workers_of_queue())
    assert [(w.worker_id, w.language) for w in mine] == [(worker.config.worker_id, "python")]


def test_dead_letters_and_requeue_dead(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit_spec(app.tasks["t.always_fails"].spec(["broken"], queue=queue_name))
        with pytest.raises(tasktide.TaskDead):
            h.get(timeout=20)
        # The final event is recorded before the task joins the dead letters: wait for them to list it.
        eventually(lambda: [d.task_id for d in client.dead_letters(queue_name)] == [h.id])

        async def requeue() -> tuple[list[str], int]:
            async with AsyncClient(settings=_settings(platform)) as c:
                dead = [d.task_id for d in await c.dead_letters(queue_name)]
                return dead, await c.requeue_dead(queue_name, [h.id])

        dead, requeued = asyncio.run(requeue())
        assert (dead, requeued) == ([h.id], 1)
        # Requeued as a first attempt, it fails its attempts again and is dead once more.
        events: list[TaskState] = []
        while events.count(TaskState.DEAD) < 2:
            time.sleep(0.05)
            events = [TaskState.from_proto(e.state) for e in client.watch([h.id]) if not e.progress_only]
    assert events.count(TaskState.DEAD) == 2
    assert TaskState.QUEUED in events[events.index(TaskState.DEAD) :]
