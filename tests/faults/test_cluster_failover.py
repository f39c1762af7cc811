"""A Redis Cluster primary killed under load: the services as separate processes on a cluster of
three primaries with a replica each (append-only file, fsync every second); while a producer
submits, the primary that holds the busy queue is SIGKILLed and its replica takes over.

Replication in Redis is asynchronous: a write a primary confirmed may not have reached its
replica when the primary dies, and the promoted replica then never had it. With
`?wait_replicas=1` in the cluster URL (common/redis_cluster.py) every part of a pipeline that
writes ends with WAIT 1 on the same connection, so a submission is confirmed only once a replica
holds it: every confirmed task must run, once recorded. Without it the figures are printed (the
window is short on loopback) and only "recorded twice" is asserted."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from tasktide import Client, ClientSettings
from tasktide_services.common.redis_server import LocalCluster, start_cluster
from tasktide_services.testing import eventually
from tasktide_services.worker.keys import queue_keys
from tests.faults import figures
from tests.faults.cluster import Workers, cluster
from tests.faults.conftest import record
from tests.faults.figures import Figures, final_counts
from tests.faults.load import Load


def finals_recorded(c: LocalCluster, ids: Sequence[str]) -> dict[str, int]:
    """Per task, how many final events its event log holds, read through redis-py's cluster client."""
    live = next(n for n in c.nodes if n.process.poll() is None)
    r = RedisCluster(host="127.0.0.1", port=live.port)
    try:
        return final_counts(r, ids)
    finally:
        r.close()


def promoted(c: LocalCluster, key: str, killed: int) -> bool:
    """The slot of `key` is served by another node than `killed`, and the live nodes agree."""
    try:
        return c.primary_of(key).port != killed and c._unhealthy() == ""
    except Exception:  # noqa: BLE001 - a node is still electing: not yet
        return False


@pytest.mark.parametrize("wait", [True, False], ids=["wait-replicas-1", "async-replication"])
def test_primary_of_a_busy_queue_killed_under_load(tmp_path: Path, queue_name: str, wait: bool) -> None:
    redis_cluster = start_cluster(tmp_path / "redis-cluster", node_timeout_ms=1500)
    logs, markers = tmp_path / "logs", tmp_path / "markers"
    logs.mkdir()
    markers.mkdir()
    url = redis_cluster.url + ("?wait_replicas=1&wait_timeout_ms=2000" if wait else "")
    try:
        with cluster({"TASKTIDE_REDIS_URL": url}, logs) as services:
            w = Workers(services.env, queue_name, logs)
            try:
                w.spawn(2)
                with Client(settings=ClientSettings.from_env(services.env)) as client:
                    load = Load(client, queue_name, markers, total=400, rate=100).start()
                    eventually(lambda: len(load.ids) >= 100, timeout=60, what="100 confirmed submissions")
                    busy = queue_keys(queue_name).ready
                    victim = redis_cluster.primary_of(busy)
                    confirmed_before = len(load.ids)
                    victim.process.kill()
                    victim.process.wait(10)
                    killed_at = time.monotonic()
                    eventually(lambda: promoted(redis_cluster, busy, victim.port), timeout=60, what="a promotion")
                    took_over = time.monotonic() - killed_at
                    ids = load.join(120)
                    fig = count(redis_cluster, client, ids, markers, killed_at, wait)
                    print(
                        f"{fig.line()}; {confirmed_before} confirmed before the kill, replica took over in "
                        f"{took_over:.1f} s, submissions refused meanwhile {load.refused}"
                    )
                    record(fig)
            finally:
                w.close()
    finally:
        redis_cluster.stop()
    assert fig.recorded_twice == 0
    if wait:
        assert (fig.lost, fig.run) == (0, fig.submitted), fig.lost_detail


def count(c: LocalCluster, client: Client, ids: list[str], markers: Path, fault_ended: float, wait: bool) -> Figures:
    how = "WAIT 1 after writes" if wait else "asynchronous replication"
    case = f"Redis Cluster primary of the busy queue SIGKILLed, replica promoted ({how})"
    return figures.count(
        case, client, "", ids, markers, fault_ended, timeout=60, finals=lambda ids: finals_recorded(c, ids)
    )
