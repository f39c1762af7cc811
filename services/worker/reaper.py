"""Expired leases go back to their queue, or to the dead-letter set after max deliveries.

A task going back is first held by the reaper (`reap` gives it a lease of the reaper's, HOLD_MS
long), its QUEUED event recorded, then released into its queue: so the event comes before the next
delivery's RUNNING, and the task's state says it waits while no worker takes it. A recording that
fails (the results service away) is logged, and the task goes back all the same.

A task a Cancel was asked for while it was leased (keys.py :cancel) is not queued again: `reap`
holds it apart, or `release` keeps it when the Cancel came while it was held, and it is ended as
CANCELLED (cancelled.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.client import Pipeline

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common.events import event, first_events, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.loop import run_forever
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker import keys
from tasktide_services.worker.cancelled import WORKER_AWAY, end_cancelled
from tasktide_services.worker.housekeeping import Housekeeping
from tasktide_services.worker.outcomes import hand_retries
from tasktide_services.worker.passes import per_queue
from tasktide_services.worker.store import Leased, Reaped, RegistryStore, reaped, release_reply
from tasktide_services.worker.workflow_ends import report_to_workflows

log = logging.getLogger("tasktide.registry.reaper")

RETRY_HANDOVER_MS = 10_000  # next attempts parked longer than this were orphaned by a crash
HOLD_MS = 10_000  # how long the reaper holds a task it requeues (a reaper lost meanwhile: reaped again)
RECORD_SECONDS = 2.0  # how long a pass waits for its QUEUED events to be recorded
RECORD_BATCH = 1000  # QUEUED events per Record call
REAP_LIMIT = 1000  # expired leases handled per queue and pass
MAX_SHARE = 0.2  # of its time the reaper's loop spends in passes, at most


async def reap_once(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks | None = None
) -> int:
    """One pass over every queue, many queues per Redis round trip (passes.py: the `reap` script
    and a look for stuck retries per queue), so a pass over 10,000 queues is 20 round trips, not
    20,000. A queue whose step fails is logged and the pass goes on with the others (what failed
    stays in Redis for the next pass); returns how many queues failed."""
    hooks = hooks or ServiceHooks()
    queues = await store.queues()
    max_deliveries = settings.max_deliveries
    now = now_ms()
    hold = now + HOLD_MS

    def build(pipe: Pipeline, q: str) -> None:
        k = keys.queue_keys(q)
        store.scripts["reap"](k, [now, max_deliveries, REAP_LIMIT, hold], client=pipe)
        pipe.zrangebyscore(k.retry_at, "-inf", now - RETRY_HANDOVER_MS, start=0, num=1)

    try:
        replies = await per_queue(store, queues, build, 2)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - Redis away: the next pass tries again
        log.warning("reaping %d queues failed", len(queues), exc_info=True)
        return len(queues)
    failed = 0
    passed: list[tuple[str, Reaped, Any]] = []
    for q, (reply, stuck) in zip(queues, replies, strict=True):
        try:
            for r in (reply, stuck):
                if isinstance(r, Exception):
                    raise r
            passed.append((q, reaped(reply, hold, q), stuck))
        except Exception:  # noqa: BLE001 - see above (what it holds goes back once its hold ends)
            failed += 1
            log.warning("reaping queue %s failed", q, exc_info=True)
    await _record_queued(peers, [h for _, r, _ in passed for h in r.requeue])
    holding = {q: r.requeue for q, r, _ in passed if r.requeue}
    cancel = [h for _, r, _ in passed for h in r.cancel]
    released: dict[str, Any]
    try:  # many queues per round trip, as the reap
        replies = await per_queue(store, list(holding), lambda pipe, q: store.build_requeue(pipe, q, holding[q]), 1)
        released = {q: reply for q, (reply,) in zip(holding, replies, strict=True)}
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - Redis away: the holds expire and the tasks are reaped again
        released = dict.fromkeys(holding, exc)
    for q, reply in released.items():
        if not isinstance(reply, Exception):  # a Cancel asked while the task was held
            kept = {r.task_id for r in release_reply(reply, [h.ref() for h in holding[q]]).cancel}
            cancel += [h for h in holding[q] if h.task.id in kept]
            released[q] = int(reply[0])
    await end_cancelled(store, peers, cancel, WORKER_AWAY)
    for q, r, stuck in passed:
        dead = r.dead
        try:
            await _after_reap(store, peers, settings, hooks, q, released.get(q, 0), dead, stuck)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - see above
            failed += 1
            log.warning("reaping queue %s failed", q, exc_info=True)
    return failed


async def _after_reap(
    store: RegistryStore,
    peers: Peers,
    settings: ServerSettings,
    hooks: ServiceHooks,
    q: str,
    released: Any,
    dead: list[str],
    stuck: Any,
) -> None:
    if isinstance(released, Exception):
        raise released
    if released:
        hooks.redelivered(q, int(released))
    if dead:
        await _record_dead(store, peers, q, dead, settings.max_deliveries, hooks)
    if stuck:  # the rare case: read them all
        parked = await store.stuck_retries(q, now_ms() - RETRY_HANDOVER_MS)
        if parked:
            await hand_retries(store, peers, parked)


async def run_reaper(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks | None = None
) -> None:
    """Expired leases not handled this time stay in Redis until the next step. Housekeeping
    (housekeeping.py) runs from the same loop, every HOUSEKEEPING_SECONDS. A pass is linear in
    the number of queues; the loop spends at most MAX_SHARE of its time in passes (pause_after)."""

    housekeeping = Housekeeping(store, settings)
    interval = max(settings.tick_seconds, min(settings.lease_seconds / 10, 1.0))
    loop = asyncio.get_running_loop()

    async def step() -> int:
        started = loop.time()
        await reap_once(store, peers, settings, hooks)
        reaping = loop.time() - started
        await housekeeping.maybe_run()  # every HOUSEKEEPING_SECONDS: not counted in the pause
        await asyncio.sleep(pause_after(reaping, interval))
        return 0

    await run_forever("lease reaper", step, interval)


def pause_after(elapsed: float, interval: float) -> float:
    """What to wait beyond `interval` after a pass that took `elapsed` seconds, so that passes take
    at most MAX_SHARE of the time: with many queues, expired leases are found later (a pass over
    10,000 queues every few seconds instead of every second) rather than the reaper taking a core."""
    return max(0.0, elapsed * (1 / MAX_SHARE - 1) - interval)


async def _record_queued(peers: Peers, held: list[Leased]) -> None:
    """Record that the tasks held in a pass wait again (RECORD_BATCH events a call, all within
    RECORD_SECONDS); the tasks go back to their queues whether or not it was recorded (explain()
    asks the registry)."""
    message = "the lease of delivery {} expired (its worker was lost or stopped); queued again"
    events: list[task_pb2.TaskEvent] = []
    for h in held:
        if not h.task.spec.name:  # its value did not parse (store.reaped): nothing to record
            continue
        # The task's first event too, in case the session that leased it ended before recording it
        # (the results service keeps one: common/events.py, results/scripts.lua `record`).
        events += first_events(h.task)
        events.append(event(h.task, task_pb2.TASK_STATE_QUEUED, message=message.format(h.delivery)))
    if not events:
        return

    async def send() -> None:
        for start in range(0, len(events), RECORD_BATCH):
            await peers.results.Record(results_pb2.RecordRequest(events=events[start : start + RECORD_BATCH]))

    try:
        await asyncio.wait_for(send(), RECORD_SECONDS)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - see above
        log.warning("recording that %d tasks are queued again failed", len(events), exc_info=True)


async def _record_dead(
    store: RegistryStore,
    peers: Peers,
    queue: str,
    ids: list[str],
    max_deliveries: int,
    hooks: ServiceHooks | None = None,
) -> None:
    events = []
    tasks = []
    for tid in ids:
        task = await store.dead_task(queue, tid)
        if task is None:
            continue
        err = task_pb2.TaskError(
            type="tasktide.WorkerLost",
            message=f"the worker running this task was lost {max_deliveries} times; moved to the dead-letter set",
        )
        events.append(event(task, task_pb2.TASK_STATE_DEAD, error=err))
        tasks.append(task)
    if hooks is not None and tasks:
        hooks.dead_lettered(tasks, "worker_lost")
    await report_to_workflows(peers, events, tasks)
    if events:
        await peers.results.Record(results_pb2.RecordRequest(events=events))
