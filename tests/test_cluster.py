"""The services' Redis link on a real Redis Cluster (common/redis_cluster.py; the `redis_cluster`
fixture: three primaries with a replica each): the platform spreads its queues over every primary
and runs their tasks; MOVED and ASK are followed while a slot migrates; a script lost by one node is
loaded there and nothing that ran elsewhere runs twice; keys across slots are refused by Redis;
a subscription hears what any node publishes; WAIT after writes; the direct path; bad URLs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from redis.exceptions import ClusterCrossSlotError, ClusterDownError, ConnectionError, ResponseError

from tasktide import Client, ClientSettings
from tasktide._exceptions import Unavailable
from tasktide.v1 import task_pb2
from tasktide_services.common.lua import Script, preload, run_pipeline
from tasktide_services.common.redis_cluster import command_slot
from tasktide_services.common.redis_cluster_client import ClusterRedis
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.redis_link import subscribe
from tasktide_services.common.redis_server import LocalCluster, LocalRedis, start_cluster
from tasktide_services.common.settings import ServerSettings
from tasktide_services.testing import PlatformThread, eventually, run_worker_thread, unreachable_address
from tests.tasks_app import app

INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture(scope="module")
def cluster_platform(redis_cluster: LocalCluster, server_settings: ServerSettings) -> Iterator[PlatformThread]:
    with PlatformThread(replace(server_settings, redis_url=redis_cluster.url)) as p:
        yield p


def node_client(node: LocalRedis) -> redis.Redis:
    return redis.Redis(port=node.port, socket_timeout=10)


def keys_on_two_primaries(cluster: LocalCluster, prefix: str) -> tuple[str, str]:
    """Two keys whose slots are served by different primaries."""
    first = f"{{{prefix}-0}}k"
    for n in range(1, 200):
        other = f"{{{prefix}-{n}}}k"
        if cluster.primary_of(other).port != cluster.primary_of(first).port:
            return first, other
    raise AssertionError("no two keys on different primaries")


def test_queues_spread_over_every_primary_and_their_tasks_run(cluster_platform, redis_cluster, queue_name):
    queues = [f"{queue_name}-{i}" for i in range(12)]
    with Client(settings=ClientSettings(address=cluster_platform.address)) as c:
        handles = [c.submit("t.add", [i, 1], queue=q) for i, q in enumerate(queues)]
        with run_worker_thread(app, cluster_platform.address, queues=tuple(queues)):
            assert [c.result(h.id, timeout=30) for h in handles] == [i + 1 for i in range(12)]
    primaries = [p for p, role in redis_cluster.roles().items() if role == "master"]
    holding = [
        p for p in primaries if any(True for _ in node_client(redis_cluster.node(p)).scan_iter(f"*{queue_name}*"))
    ]
    assert sorted(holding) == sorted(primaries)


def test_delayed_tasks_due_together_are_read_across_slots_and_run(cluster_platform, queue_name):
    """Several delayed tasks fall due in one step of the pump, which reads their records together:
    the records lie in different slots, so one MGET is refused (CROSSSLOT) by a cluster. The link
    reads them per slot, and every task runs."""
    with Client(settings=ClientSettings(address=cluster_platform.address)) as c:
        specs = [
            task_pb2.TaskSpec(name="t.add", args=task_pb2.Payload(json=f"[{i}, 1]".encode()), queue=queue_name)
            for i in range(12)
        ]
        for spec in specs:
            spec.countdown = 0.5
        handles = c.submit_many(specs)  # one batch: due together
        with run_worker_thread(app, cluster_platform.address, queues=(queue_name,)):
            assert [c.result(h.id, timeout=30) for h in handles] == [i + 1 for i in range(12)]


def test_moved_and_ask_are_followed_while_a_slot_migrates(redis_cluster):
    key, _ = keys_on_two_primaries(redis_cluster, "migrate")
    slot = command_slot(("GET", key))
    assert slot is not None
    src = redis_cluster.primary_of(key)
    dst = next(redis_cluster.node(p) for p, role in redis_cluster.roles().items() if role == "master" and p != src.port)
    s, d = node_client(src), node_client(dst)
    src_id, dst_id = s.execute_command("CLUSTER MYID").decode(), d.execute_command("CLUSTER MYID").decode()

    async def run() -> None:
        r = await connect(redis_cluster.url)
        assert isinstance(r, ClusterRedis)
        try:
            await r.set(key, "before")
            d.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            s.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", key)
            # The source answers ASK for a key it no longer holds: read and written on the target.
            assert await r.get(key) == b"before"
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(key, "during")
                pipe.get(key)
                assert await pipe.execute() == [True, b"during"]
            primaries = [p for p, role in redis_cluster.roles().items() if role == "master"]
            others = [node_client(redis_cluster.node(p)) for p in primaries if p not in (src.port, dst.port)]
            for node in (d, s, *others):
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
            # Now the source answers MOVED: followed, and the map learns the slot's new owner.
            assert await r.get(key) == b"during"
            assert r.routes._topology is not None
            await r.routes.refresh()
            assert r.routes._topology.slots[slot] == ("127.0.0.1", dst.port)
            assert d.get(key) == b"during"
            assert s.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
        finally:
            await r.aclose()

    asyncio.run(run())
    redis_cluster.wait_healthy()


def test_a_script_lost_by_one_node_is_loaded_there_and_nothing_runs_twice(redis_cluster):
    k1, k2 = keys_on_two_primaries(redis_cluster, "noscript")
    scripts = {"incr": Script(None, INCR)}

    async def both(r: Any) -> list[Any]:
        def build(pipe: Any) -> None:
            scripts["incr"]([k1], [], client=pipe)
            scripts["incr"]([k2], [], client=pipe)

        return await run_pipeline(r, build, scripts)

    async def run() -> None:
        r = await connect(redis_cluster.url)
        try:
            first = await both(r)
        finally:
            await r.aclose()
        node_client(redis_cluster.primary_of(k1)).script_flush()
        # A client that has loaded nothing yet (a service replica started after the scripts were
        # loaded): k2's node runs its call, k1's answers NOSCRIPT; k2's call must not run again.
        fresh = await connect(redis_cluster.url)
        try:
            second = await both(fresh)
            assert [second[0] - first[0], second[1] - first[1]] == [1, 1]
        finally:
            await fresh.aclose()

    asyncio.run(run())


def test_a_script_marked_last_runs_after_the_other_nodes_parts_and_not_after_a_failure(redis_cluster):
    """Confirming an idempotency key must follow the write of its task (scheduler/store.py), but a
    pipeline's parts run on their nodes at once: a script marked last is sent once the other parts
    have answered. Here the other node is paused for 0.4 s (CLIENT PAUSE): the last script's clock
    reads after the pause. And when an earlier command failed, the last script is not run."""
    k1, k2 = keys_on_two_primaries(redis_cluster, "last")
    fails = "return redis.error_reply('refused')"
    scripts = {
        "incr": Script(None, INCR),
        "fails": Script(None, fails),
        "last": Script(None, "redis.call('INCR', KEYS[1]); return redis.call('TIME')", last=True),
    }

    async def run(first: str) -> tuple[float, list[Any]]:
        r = await connect(redis_cluster.url)
        try:
            await preload(r, scripts)  # on every primary: no NOSCRIPT round to delay a call
            node_client(redis_cluster.primary_of(k1)).execute_command("CLIENT", "PAUSE", 400, "WRITE")
            started = time.time()

            def build(pipe: Any) -> None:
                scripts["last"]([k2], [], client=pipe)  # queued first, sent last
                scripts[first]([k1], [], client=pipe)

            async with r.pipeline(transaction=False) as pipe:
                build(pipe)
                return started, await pipe.execute(raise_on_error=False)
        finally:
            await r.aclose()

    started, (clock, _) = asyncio.run(run("incr"))
    ran_at = int(clock[0]) + int(clock[1]) / 1e6
    assert ran_at - started >= 0.35, f"the last script ran {ran_at - started:.3f} s after the start"
    before = int(node_client(redis_cluster.primary_of(k2)).get(k2))
    _, (skipped, refused) = asyncio.run(run("fails"))
    assert isinstance(refused, ResponseError) and "refused" in str(refused), refused
    assert isinstance(skipped, ResponseError) and "not run" in str(skipped), skipped
    assert int(node_client(redis_cluster.primary_of(k2)).get(k2)) == before, "the last script ran"


def test_a_script_called_on_its_own_is_remembered_once_however_often(redis_cluster):
    """A store's script called on its own (a pipeline of one: `dispatch`, `complete`, `hold`, per
    task) tells the client its owner on every call; the client keeps each owner it has seen. The
    owner is one mapping per script, so the client keeps two here (the preloaded store's and the
    script's own), not one more per call (201 after 200 calls, before)."""
    script = Script(None, INCR)

    async def run() -> int:
        r = await connect(redis_cluster.url)
        try:
            script.redis = r
            await preload(r, {"incr": script})
            for _ in range(200):
                await script(["alone"], [])
            return len(r._owners)
        finally:
            await r.aclose()

    assert asyncio.run(run()) == 2


def test_keys_across_slots_are_refused(redis_cluster):
    k1, k2 = keys_on_two_primaries(redis_cluster, "cross")

    async def run() -> None:
        r = await connect(redis_cluster.url)
        try:
            with pytest.raises(ClusterCrossSlotError):
                await r.eval("return redis.call('MGET', KEYS[1], KEYS[2])", 2, k1, k2)
            with pytest.raises(ClusterCrossSlotError):
                await r.delete(k1, k2)
            async with r.pipeline(transaction=False) as pipe:
                pipe.exists(k1, k2)
                with pytest.raises(ClusterCrossSlotError):
                    await pipe.execute()
        finally:
            await r.aclose()

    asyncio.run(run())


def test_a_subscription_hears_what_any_node_publishes(redis_cluster):
    got: list[bytes] = []

    async def run() -> None:
        r = await connect(redis_cluster.url)
        sub = await subscribe(r, "tt-cluster-test", got.append)
        try:
            for port in redis_cluster.roles():
                node_client(redis_cluster.node(port)).publish("tt-cluster-test", str(port))
            await r.publish("tt-cluster-test", "link")
            for _ in range(500):
                if len(got) == len(redis_cluster.roles()) + 1:
                    break
                await asyncio.sleep(0.01)
        finally:
            sub.close()
            await r.aclose()

    asyncio.run(run())
    assert sorted(got) == sorted([str(p).encode() for p in redis_cluster.roles()] + [b"link"])


def test_wait_replicas_makes_writes_wait_for_a_replica(redis_cluster):
    redis_cluster.wait_healthy()  # every primary's replica attached and in sync (the link counts them)
    key, _ = keys_on_two_primaries(redis_cluster, "wait")
    primary = node_client(redis_cluster.primary_of(key))

    def waits() -> int:
        stats = primary.info("commandstats").get("cmdstat_wait", {})
        return int(stats.get("calls", 0))

    async def run() -> tuple[int, int]:
        r = await connect(redis_cluster.url + "?wait_replicas=1&wait_timeout_ms=5000")
        try:
            script = Script(r, INCR)
            await preload(r, {"incr": script})  # a NOSCRIPT answer would send the call, and a WAIT, again
            before = waits()
            for _ in range(5):
                await script([key], [])
            await r.get(key)  # a read: no WAIT
            assert isinstance(r, ClusterRedis)
            return before, r.routes.unreplicated
        finally:
            await r.aclose()

    before, unreplicated = asyncio.run(run())
    assert unreplicated == 0
    assert waits() - before == 5


def test_direct_submission_to_a_cluster(cluster_platform, redis_cluster, queue_name):
    with unreachable_address() as nowhere:
        settings = ClientSettings.from_env({"TASKTIDE_SUBMIT_REDIS_URL": redis_cluster.url}, address=nowhere)
        with Client(settings=settings) as direct:
            handle = direct.submit("t.add", [20, 22], queue=queue_name)
    with Client(settings=ClientSettings(address=cluster_platform.address)) as c:
        with run_worker_thread(app, cluster_platform.address, queues=(queue_name,)):
            assert c.result(handle.id, timeout=30) == 42


def test_direct_submission_to_a_cluster_out_of_reach_is_a_clear_error(cluster_platform):
    with unreachable_address() as nowhere:
        url = f"redis+cluster://:secret@{nowhere}"
        settings = ClientSettings.from_env({"TASKTIDE_SUBMIT_REDIS_URL": url}, address=cluster_platform.address)
        with Client(settings=settings) as direct:
            with pytest.raises(
                Unavailable, match=r"cannot reach Redis at redis\+cluster://127\.0\.0\.1:\d+ to submit"
            ) as refusal:
                direct.submit("t.add", [1, 2])
    assert "secret" not in str(refusal.value)


def test_a_transaction_is_refused_on_a_cluster(redis_cluster):
    async def run() -> None:
        r = await connect(redis_cluster.url)
        try:
            with pytest.raises(ResponseError, match="MULTI/EXEC"):
                r.pipeline(transaction=True)
        finally:
            await r.aclose()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "at least one HOST:PORT"),
        ("redis+cluster://127.0.0.1", "HOST:PORT, not '127.0.0.1'"),
        ("redis+cluster://127.0.0.1:0", "HOST:PORT"),
        ("redis+cluster://127.0.0.1:7000/3", "database 0 only"),
        ("redis+cluster://127.0.0.1:7000?wait_replicas=two", "whole number"),
        ("redis+cluster://127.0.0.1:7000?wait_replicas=1&wait_timeout_ms=0", "at least 1"),
        ("redis+cluster://127.0.0.1:7000?color=red", "unknown option(s) in the Redis Cluster URL: color"),
    ],
)
def test_bad_cluster_urls_are_clear_errors(url, message):
    with pytest.raises(RuntimeError, match="bad Redis Cluster URL") as info:
        asyncio.run(connect(url))
    assert message in str(info.value)


def test_a_cluster_out_of_reach_is_a_clear_error():
    with unreachable_address() as nowhere:
        with pytest.raises(RuntimeError, match="no node of the Redis Cluster answered CLUSTER SLOTS"):
            asyncio.run(connect(f"redis+cluster://{nowhere}"))


def test_eventually_every_node_agrees(redis_cluster):
    """The cluster the other tests left behind is whole (no slot left migrating)."""
    eventually(lambda: redis_cluster._unhealthy() == "", timeout=30, what="a healthy cluster")


def test_a_cluster_that_requires_a_password(tmp_path, server_settings, queue_name):
    """The password in the URL is sent on every node's connection and the subscription's; without
    it the services cannot start, with a clear error."""
    locked = start_cluster(tmp_path / "locked", password="s3cret")
    try:
        with pytest.raises(RuntimeError, match="cannot reach Redis"):
            asyncio.run(connect(locked.url.replace(":s3cret@", "")))
        p = PlatformThread(replace(server_settings, redis_url=locked.url)).start()
        try:
            with Client(settings=ClientSettings(address=p.address)) as c:
                with run_worker_thread(app, p.address, queues=(queue_name,)):
                    assert c.submit("t.add", [2, 3], queue=queue_name).get(timeout=30) == 5
        finally:
            p.stop()
    finally:
        locked.stop()


def test_a_subscription_moves_to_another_node_when_its_node_dies(tmp_path):
    """Plain pub/sub is broadcast by the cluster: a subscription whose node is killed reconnects
    to another node and hears what is published after; commands of the dead primary's slots
    fail (ConnectionError) until its replica is promoted, then work again."""
    c = start_cluster(tmp_path / "dying", node_timeout_ms=1000)
    got: list[bytes] = []

    async def run() -> None:
        r = await connect(c.url + "?wait_replicas=1&wait_timeout_ms=5000")  # "kept" is on the replica
        sub = await subscribe(r, "tt-moving", got.append)
        while c.roles()[sub._kwargs["port"]] != "master":  # a random node: have it be a primary
            sub.close()
            sub = await subscribe(r, "tt-moving", got.append)
        try:
            victim = c.node(sub._kwargs["port"])
            key = next(f"{{k{i}}}" for i in range(1000) if c.primary_of(f"{{k{i}}}").port == victim.port)
            await r.set(key, "kept")
            victim.process.kill()
            victim.process.wait(10)
            live = next(n for n in c.nodes if n.process.poll() is None)
            for _ in range(1000):  # until the subscription is back on a live node and hears this
                c.client(live).publish("tt-moving", "after")
                await asyncio.sleep(0.02)
                if got:
                    break
            assert got and got[0] == b"after"
            for _ in range(1000):  # its replica is promoted; the link follows
                try:
                    assert await r.get(key) == b"kept"
                    break
                except (ConnectionError, ClusterDownError):
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the slot of the killed primary never came back")
            assert isinstance(r, ClusterRedis) and r.routes.unreplicated == 0
        finally:
            sub.close()
            await r.aclose()

    try:
        asyncio.run(run())
    finally:
        c.stop()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:7000?wait_replicas=-1", "bad Redis Cluster URL: wait_replicas"),
        ("redis+cluster://127.0.0.1:1", "no node of the Redis Cluster answered CLUSTER SLOTS"),
    ],
)
def test_a_server_given_a_bad_cluster_url_says_so_and_exits(url, message):
    done = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "registry", "--address", "127.0.0.1:0"],
        env={**os.environ, "TASKTIDE_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert message in done.stderr
