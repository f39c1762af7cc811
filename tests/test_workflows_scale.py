"""Workflows at scale: a group of 10,000 completes with its results in order, and what Redis sends
per member does not grow with the size of the group (no figure depends on the machine's load)."""

from __future__ import annotations

import redis

from tasktide import chord, group
from tasktide_services.testing import run_worker_thread
from tests.tasks_app import add, app, total


def _output_bytes(url: str) -> int:
    with redis.Redis.from_url(url) as r:
        return int(r.info("stats")["total_net_output_bytes"])


def test_a_group_of_ten_thousand_completes_with_its_results_in_order(platform, client, queue_name):
    n = 10_000
    wf = group(add.s(i, 1).set(queue=queue_name) for i in range(n)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=8):
        assert wf.get(timeout=900) == [i + 1 for i in range(n)]
    assert wf.state() == "SUCCEEDED"
    assert len(wf.task_ids[0]) == n


def test_redis_sends_as_much_per_member_for_a_large_chord_as_for_a_small_one(
    platform, client, queue_name, redis_server
):
    """Each member's completion used to read the whole workflow (every spec and every result so
    far): bytes per member grew with the chord's size, and the time of a chord with its square."""
    per_member = {}
    for n in (100, 1_500):
        before = _output_bytes(redis_server.url)
        wf = chord(group(add.s(i, 0).set(queue=queue_name) for i in range(n)), total.s().set(queue=queue_name))
        handle = wf.apply_async(client)
        with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=8):
            assert handle.get(timeout=600) == n * (n - 1) // 2
        per_member[n] = (_output_bytes(redis_server.url) - before) / n
    assert per_member[1_500] < 2 * per_member[100], per_member
