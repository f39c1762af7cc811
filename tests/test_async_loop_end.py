"""An AsyncClient left open when its event loop ends (`asyncio.run(main())` where main never closes
it), or closed just before: its streams end their calls while the loop still runs, so nothing is
reported when the loop closes, nor later in the process; and a client whose streams' tasks were
cancelled still works."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasktide import AsyncClient
from tasktide_services.testing import client_settings, run_worker_thread, service_env
from tests.tasks_app import app

ROOT = Path(__file__).resolve().parent.parent

# Each round runs asyncio.run(main()) on a new loop: main submits tasks with a few AsyncClients, each
# over its SubmitStream, and awaits their results over their Follow streams, then returns with the
# clients open (kept, as a framework keeps a client per loop), or closes them first. gRPC hands the
# outcome of a call that arrives after its loop closed to the next loop of the process, which
# reports "Event loop is closed" (a process that ends with that loop shows nothing): hence rounds,
# enough that the code before the streams ended their calls failed nearly every run (the closed
# variant with one client: a few clients at once hid it).
ROUNDS = 30
CHILD = """
import asyncio, sys
from tasktide import AsyncClient

queue, rounds = sys.argv[1], int(sys.argv[2])
clients = []

async def use(n):
    client = AsyncClient()  # TASKTIDE_ADDRESS (and each service's address when they are apart)
    clients.append(client)
    handles = [await client.submit("t.add", [n, i], queue=queue) for i in range(2)]
    handles += await asyncio.gather(*(client.submit("t.add", [n, i], queue=queue) for i in range(2, 4)))
    results = await asyncio.gather(*(h.get(timeout=60) for h in handles))
    if CLOSE:
        await client.close()
    return results

async def main(n):
    return await asyncio.gather(*(use(n) for _ in range(CLIENTS)))

got = [asyncio.run(main(n)) for n in range(rounds)]
print(got == [[[n + i for i in range(4)]] * CLIENTS for n in range(rounds)])
"""


@pytest.mark.parametrize("close", [False, True], ids=["left-open", "closed"])
def test_clients_whose_loops_end_leave_no_errors(platform, queue_name, close):
    code = CHILD.replace("CLIENTS", "1" if close else "3").replace("CLOSE", str(close))
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        done = subprocess.run(
            [sys.executable, "-c", code, queue_name, str(ROUNDS)],
            env={**os.environ, **service_env(platform.address)},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
    assert done.stdout.strip() == "True", done.stdout + done.stderr
    for sign in ("Event loop is closed", "Exception ignored", "Traceback"):
        assert sign not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr


def test_a_caller_that_stops_waiting_leaves_the_streams_open(platform, queue_name):
    """A get() and a submit() cancelled by their callers: the Follow stream and the SubmitStream
    stay open and answer the next ones."""

    async def run() -> int:
        async with AsyncClient(settings=client_settings(platform.address)) as c:
            await (await c.submit("t.add", [0, 0], queue=queue_name)).get(timeout=30)  # both streams open
            stream, task = c._submitter._stream, c._follower._task  # noqa: SLF001
            never = await c.submit("t.add", [1, 1], queue=f"{queue_name}-unserved")  # never runs
            getting = asyncio.ensure_future(c.wait(never.id, timeout=None))
            submitting = asyncio.ensure_future(c.submit("t.add", [1, 1], queue=queue_name))
            await asyncio.sleep(0)
            getting.cancel()
            submitting.cancel()
            await asyncio.gather(getting, submitting, return_exceptions=True)
            result = await (await c.submit("t.add", [2, 2], queue=queue_name)).get(timeout=30)
            assert c._submitter._stream is stream and c._follower._task is task  # noqa: SLF001 - the same
            return result

    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert asyncio.run(run()) == 4


def test_a_client_whose_stream_tasks_were_cancelled_opens_new_streams(platform, queue_name):
    """What a loop's end does to the streams' tasks, on a loop that goes on: the next submission
    and the next wait open new streams and are answered."""

    async def run() -> list[int]:
        async with AsyncClient(settings=client_settings(platform.address)) as c:
            first = await c.submit("t.add", [1, 1], queue=queue_name)
            assert await first.get(timeout=30) == 2
            stream, follower = c._submitter._stream, c._follower  # noqa: SLF001 - the streams' tasks
            opened = follower.opened
            tasks = [stream.reader, follower._task]  # noqa: SLF001
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert stream.call.done()
            second = await c.submit("t.add", [2, 2], queue=queue_name)
            assert c._submitter._stream is not stream  # noqa: SLF001 - a new stream
            result = await second.get(timeout=30)
            assert follower.opened == opened + 1  # a new Follow stream answered it
            return [result]

    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert asyncio.run(run()) == [4]
