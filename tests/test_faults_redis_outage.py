"""An idle worker keeps working after Redis is stopped for a while and started again, and a Wait and
a Watch open across the outage get their task's end.

The services run as separate processes on a Redis of their own (append-only file on, so the
restarted Redis has the data it had). Every loop of the registry (a session's dispatcher, the
reaper) and of the results service must survive the failed calls of the outage and go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from tasktide import Client, ClientSettings
from tasktide.v1 import task_pb2
from tasktide_services.common.redis_server import start_redis
from tasktide_services.testing import spawn
from tests.processes import ROOT, separate_services

OUTAGE_SECONDS = 3.0
TASKS = 20


def _submit_when_accepted(client: Client, queue: str, i: int, until: float) -> str:
    """Submissions refused while a service reconnects are tried again (a producer would)."""
    while True:
        try:
            return client.submit("t.add", [i, 1], queue=queue).id
        except Exception:  # noqa: BLE001 - Unavailable while the scheduler reconnects
            if time.monotonic() > until:
                raise
            time.sleep(0.2)


def _keep(box: list[object], call: Callable[[], object]) -> None:
    """Run `call` (in a thread); its result, or the error it raised, goes in `box`."""
    try:
        box.append(call())
    except Exception as exc:  # noqa: BLE001 - the test asserts on it
        box.append(exc)


def test_idle_worker_runs_new_tasks_after_redis_outage(tmp_path: Path, queue_name: str) -> None:
    data = tmp_path / "redis"
    server = start_redis(data, appendonly=True)
    port = server.port
    env = {"TASKTIDE_REDIS_URL": server.url, "TASKTIDE_LEASE_SECONDS": "3", "TASKTIDE_TICK_SECONDS": "0.05"}
    worker = None
    try:
        with separate_services(env) as common:
            late = f"{queue_name}-late"
            worker = spawn("worker", "tests.tasks_app:app", "--queues", f"{queue_name},{late}", env=common, cwd=ROOT)
            settings = ClientSettings.from_env(common)
            with Client(settings=settings) as client:
                # The worker is connected and has run a task: it is idle when Redis goes away.
                assert client.submit("t.add", [1, 1], queue=queue_name).get(timeout=30) == 2
                # A task held back in a paused queue is waited for and watched across the outage.
                client.pause_queue(late)
                held = client.submit("t.add", [40, 2], queue=late).id
                waited: list[object] = []
                watched: list[object] = []
                waiter = threading.Thread(target=lambda: _keep(waited, lambda: client.result(held, timeout=90)))
                watcher = threading.Thread(
                    target=lambda: _keep(watched, lambda: [e.state for e in client.watch([held])][-1])
                )
                waiter.start()
                watcher.start()
                time.sleep(0.5)
                server.stop()
                time.sleep(OUTAGE_SECONDS)
                server = start_redis(data, port=port, appendonly=True)
                restarted = time.monotonic()
                until = restarted + 60
                ids = [_submit_when_accepted(client, queue_name, i, until) for i in range(TASKS)]
                results = [client.result(t, timeout=30) for t in ids]
                recovered = time.monotonic() - restarted
                ran_on = {client.wait(t, timeout=5).worker_id for t in ids}
                client.resume_queue(late)
                waiter.join(60)
                watcher.join(60)
            assert waited == [42], "a Wait across the outage gets its result"
            assert watched == [task_pb2.TASK_STATE_SUCCEEDED], "a Watch across the outage sees the task end"
            assert results == [i + 1 for i in range(TASKS)]
            assert worker.poll() is None
            assert len(ran_on) == 1 and f"-{worker.pid}-" in ran_on.pop(), "the worker connected before ran them"
            print(f"\n{TASKS} tasks run by the idle worker {recovered:.2f} s after Redis came back")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        server.stop()
