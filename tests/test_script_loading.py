"""Lua scripts Redis lacks (common/lua.py): a service loads its stores' scripts when it starts, and a
pipeline whose scripts Redis has only in part runs again only the calls that answered NOSCRIPT, so
no call that ran runs twice."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from tasktide_services.common.lua import LuaFile, Script, load_scripts, preload, run_blocking_pipeline, run_pipeline
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.redis_server import LocalCluster, free_port
from tasktide_services.common.settings import ServerSettings
from tasktide_services.results.store import SCRIPTS as RESULTS_SCRIPTS
from tasktide_services.scheduler.store import SCRIPTS as SCHEDULER_SCRIPTS
from tasktide_services.server import start
from tasktide_services.worker.store import SCRIPTS as REGISTRY_SCRIPTS
from tests.processes import own_redis

LOG = "noscript-test:log"


def _logging_script(client: object, name: str) -> Script:
    """A script that appends its name to LOG: how many times it ran, and in what order."""
    return Script(client, f"return redis.call('RPUSH', KEYS[1], '{name}')")  # type: ignore[arg-type]


def test_a_pipeline_whose_scripts_redis_has_in_part_runs_each_call_once(tmp_path: Path) -> None:
    async def main(url: str) -> None:
        client = await connect(url)
        try:
            owner = {name: _logging_script(client, name) for name in ("first", "loaded", "last")}
            await client.script_load(owner["loaded"].source)  # Redis has this one only

            def build(pipe: object) -> None:
                for script in owner.values():
                    script([LOG], [], client=pipe)  # type: ignore[arg-type]

            replies = await run_pipeline(client, build, owner)
            assert await client.lrange(LOG, 0, -1) == [b"loaded", b"first", b"last"]
            assert replies == [2, 1, 3]  # each call's own reply, in the pipeline's order
            replies = await run_pipeline(client, build, owner)  # all loaded now: in order
            assert await client.lrange(LOG, 3, -1) == [b"first", b"loaded", b"last"]
        finally:
            await client.aclose()

    with own_redis(tmp_path / "redis") as url:
        asyncio.run(main(url))


def test_a_blocking_pipeline_whose_scripts_redis_has_in_part_runs_each_call_once(tmp_path: Path) -> None:
    with own_redis(tmp_path / "redis") as url:
        client = redis.Redis.from_url(url)
        try:
            owner = {name: _logging_script(None, name) for name in ("first", "loaded", "last")}
            client.script_load(owner["loaded"].source)

            def build(pipe: redis.client.Pipeline) -> None:
                for script in owner.values():
                    script([LOG], [], client=pipe)

            assert run_blocking_pipeline(client, build, owner) == [2, 1, 3]
            assert client.lrange(LOG, 0, -1) == [b"loaded", b"first", b"last"]
        finally:
            client.close()


def test_an_error_reply_of_a_pipeline_is_raised_once_the_lost_calls_ran(tmp_path: Path) -> None:
    async def main(url: str) -> None:
        client = await connect(url)
        try:
            owner = {"log": _logging_script(client, "log")}
            await client.set("noscript-test:string", "x")

            def build(pipe: object) -> None:
                pipe.lpush("noscript-test:string", "y")  # type: ignore[attr-defined]  # WRONGTYPE
                owner["log"]([LOG], [], client=pipe)  # type: ignore[arg-type]

            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                await run_pipeline(client, build, owner)
            assert await client.lrange(LOG, 0, -1) == [b"log"]
        finally:
            await client.aclose()

    with own_redis(tmp_path / "redis") as url:
        asyncio.run(main(url))


@pytest.mark.parametrize(
    ("which", "files"),
    [
        (("registry",), [REGISTRY_SCRIPTS]),
        (("results",), [RESULTS_SCRIPTS]),
        (("scheduler",), [SCHEDULER_SCRIPTS]),
        (("scheduler", "registry", "results"), [REGISTRY_SCRIPTS, RESULTS_SCRIPTS, SCHEDULER_SCRIPTS]),
    ],
)
def test_a_service_started_on_a_fresh_redis_has_loaded_its_scripts(
    tmp_path: Path, which: tuple[str, ...], files: list[LuaFile]
) -> None:
    async def main(url: str) -> None:
        client = await connect(url)
        settings = replace(ServerSettings(), address="127.0.0.1:0", redis_url=url)
        running = await start(settings, client, which)
        try:
            shas = [s.sha for f in files for s in load_scripts(None, f).values()]
            assert shas and all(await client.script_exists(*shas))
        finally:
            await running.stop(grace=0.5)
            await client.aclose()

    with own_redis(tmp_path / "redis") as url:
        asyncio.run(main(url))


def test_loading_the_scripts_at_startup_with_redis_away_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        client = AsyncRedis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
        try:
            await preload(client, load_scripts(None, REGISTRY_SCRIPTS))
        finally:
            await client.aclose()

    asyncio.run(main())
    assert "loading the Lua scripts at startup failed" in caplog.text


def test_a_service_started_on_a_redis_cluster_has_loaded_its_scripts_on_every_primary(
    redis_cluster: LocalCluster,
) -> None:
    primaries = [n for n in redis_cluster.nodes if redis_cluster.roles()[n.port] == "master"]
    for node in primaries:
        with redis_cluster.client(node) as r:
            r.script_flush()  # as after a restart of every node

    async def main() -> None:
        client = await connect(redis_cluster.url)
        settings = replace(ServerSettings(), address="127.0.0.1:0", redis_url=redis_cluster.url)
        running = await start(settings, client, ("registry",))
        await running.stop(grace=0.5)
        await client.aclose()

    asyncio.run(main())
    shas = [s.sha for s in load_scripts(None, REGISTRY_SCRIPTS).values()]
    for node in primaries:
        with redis_cluster.client(node) as r:
            assert all(r.script_exists(*shas)), f"scripts missing on {node.port}"
