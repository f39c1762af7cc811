"""The services' pipelines over one multiplexed connection (common/redis_link.py), against a real
Redis: the same replies as the client's own pipeline, errors in place, many pipelines at once, and
a connection dropped by Redis replaced by the next pipeline; the pipelines of one turn of the event
loop sent in one write; transactions (all or nothing); a subscription that comes back; a Unix
socket URL and a password; scripts lost by Redis loaded again."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

from tasktide_services.common.redis_conn import connect
from tasktide_services.common.redis_link import LinkedRedis, subscribe
from tasktide_services.common.redis_server import find_redis_server, free_port
from tasktide_services.testing import eventually

DB = 9  # a database of its own: the link must select it


def url(redis_server: Any) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/{DB}"


def build(pipe: Any) -> None:
    pipe.set("k", 7)
    pipe.get("k")
    pipe.hset("h", mapping={"a": b"1", "b": b"2"})
    pipe.hgetall("h")
    pipe.hmget("h", "a", "missing")
    pipe.zadd("z", {"x": 1.5, "y": 2})
    pipe.zscore("z", "x")
    pipe.zrange("z", 0, -1, withscores=True)
    pipe.sadd("s", "m")
    pipe.exists("k", "nothing")
    pipe.pexpire("k", 60_000)
    pipe.eval("return {1, 'two', {3}}", 0)
    pipe.publish("tt:test", "x")


async def mine_and_theirs(linked: Redis, plain: Redis, sync: redis.Redis, transaction: bool) -> tuple[Any, Any]:
    """`build`'s replies over the link and over the client's own pipeline, each on an empty database."""
    out = []
    for client in (linked, plain):
        sync.flushdb()
        async with client.pipeline(transaction=transaction) as p:
            build(p)
            out.append(await p.execute())
    return out[0], out[1]


def test_replies_match_the_clients_own_pipeline(redis_server):
    sync = redis.Redis(port=redis_server.port, db=DB)

    async def main() -> tuple[list[Any], list[Any]]:
        linked = await connect(url(redis_server))
        plain = Redis.from_url(url(redis_server))
        try:
            assert isinstance(linked, LinkedRedis)
            return await mine_and_theirs(linked, plain, sync, transaction=False)
        finally:
            await linked.aclose()
            await plain.aclose()

    mine, theirs = asyncio.run(main())
    assert mine == theirs
    assert mine[1] == b"7" and mine[3] == {b"a": b"1", b"b": b"2"} and mine[6] == 1.5
    assert sync.get("k") == b"7"  # written to the selected database


def test_errors_come_back_in_place_and_unknown_scripts_as_noscript(redis_server):
    async def main() -> None:
        r = await connect(url(redis_server))
        try:
            async with r.pipeline(transaction=False) as p:
                p.set("k", "v")
                p.hincrby("k", "f", 1)  # wrong type
                p.get("k")
                out = await p.execute(raise_on_error=False)
            assert out[0] is True and isinstance(out[1], ResponseError) and out[2] == b"v"
            async with r.pipeline(transaction=False) as p:
                p.evalsha("0" * 40, 0)
                with pytest.raises(NoScriptError):
                    await p.execute()
            async with r.pipeline(transaction=False) as p:  # the connection is still in step
                p.get("k")
                assert await p.execute() == [b"v"]
        finally:
            await r.aclose()

    asyncio.run(main())


def test_a_transaction_answers_as_a_pipeline_and_runs_all_or_nothing(redis_server):
    """A transactional pipeline over the link: the same replies as the client's own transaction,
    errors at run time in place (the other commands ran); a command refused as it is queued refuses
    the whole (nothing ran), and the connection stays in step."""
    sync = redis.Redis(port=redis_server.port, db=DB)

    async def main() -> None:
        linked = await connect(url(redis_server))
        plain = Redis.from_url(url(redis_server))
        try:
            mine, theirs = await mine_and_theirs(linked, plain, sync, transaction=True)
            assert mine == theirs
            async with linked.pipeline(transaction=True) as p:
                p.set("t", "v")
                p.hincrby("t", "f", 1)  # wrong type: refused as it runs, the others run
                p.get("t")
                out = await p.execute(raise_on_error=False)
            assert out[0] is True and isinstance(out[1], ResponseError) and out[2] == b"v"
            async with linked.pipeline(transaction=True) as p:
                p.set("u", "1")
                p.execute_command("SET", "u")  # wrong arity: refused as it is queued
                p.set("w", "2")
                out = await p.execute(raise_on_error=False)
            assert [type(x).__name__ for x in out] == ["NotRun", "ResponseError", "NotRun"], out
            assert sync.exists("u", "w") == 0, "a command of a refused transaction ran"
            async with linked.pipeline(transaction=False) as p:  # the connection is still in step
                p.get("t")
                assert await p.execute() == [b"v"]
        finally:
            await linked.aclose()
            await plain.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["linked", "plain"])
def test_an_atomic_pipeline_whose_scripts_redis_lost_runs_each_call_once(redis_server, kind):
    """`run_pipeline(atomic=True)` after SCRIPT FLUSH, on the link and on the client's own
    connections (a `rediss://` URL): the script calls answered NOSCRIPT at EXEC (the rest of the
    transaction ran) run again once the scripts are loaded; nothing runs twice."""
    from tasktide_services.common.lua import Script, run_pipeline

    sync = redis.Redis(port=redis_server.port, db=DB)
    incr = Script(None, "return redis.call('INCR', KEYS[1])")

    async def main() -> list[Any]:
        r = await connect(url(redis_server)) if kind == "linked" else Redis.from_url(url(redis_server))
        try:
            sync.flushdb()
            sync.script_flush()

            def build_it(pipe: Any) -> None:
                pipe.incr("plain")
                incr(["scripted"], [], client=pipe)
                pipe.incr("plain")

            return await run_pipeline(r, build_it, {"incr": incr}, atomic=True)
        finally:
            await r.aclose()

    assert asyncio.run(main()) == [1, 1, 2]
    assert (sync.get("plain"), sync.get("scripted")) == (b"2", b"1")


def test_after_a_redis_restart_the_link_loads_its_scripts_before_any_pipeline(tmp_path):
    """A real restart of redis-server (its scripts are gone): the link's new connection loads the
    scripts it was told of (`preload`) before the next pipeline, so a transaction's script call
    runs in the transaction itself. Before, the call answered NOSCRIPT at EXEC while the plain
    commands beside it ran, and it ran again in a second transaction (the raw replies show it)."""
    from tasktide_services.common.lua import Script, preload

    port = free_port()
    admin = redis.Redis(port=port)
    incr = Script(None, "return redis.call('INCR', KEYS[1])")
    args = ("--port", str(port), "--bind", "127.0.0.1")

    async def main() -> tuple[Any, Any]:
        with own_redis(admin, *args):
            r = await connect(f"redis://127.0.0.1:{port}/{DB}")
            await preload(r, {"incr": incr})
        try:
            with own_redis(admin, *args):  # restarted: a new process on the same port, no scripts
                assert admin.script_exists(incr.sha) == [False]
                with contextlib.suppress(ConnectionError):  # the old connection is found gone
                    async with r.pipeline(transaction=False) as p:
                        p.ping()
                        await p.execute()
                async with r.pipeline(transaction=True) as p:
                    p.incr("plain")
                    incr(["scripted"], [], client=p)
                    replies = await p.execute(raise_on_error=False)
                return replies, admin.script_exists(incr.sha)
        finally:
            await r.aclose()

    assert asyncio.run(main()) == ([1, 1], [True])


def test_after_a_redis_restart_single_commands_on_idle_pooled_connections_do_not_fail(tmp_path):
    """Single commands take pooled connections. A restart of redis-server closes every one of them;
    each is found closed when it is next taken from the pool and opened again before the command is
    sent, so no command fails for it. With redis-py's maintenance notifications on (its default),
    that check is skipped: the first command on each such connection failed ("Connection closed by
    server"), so a delayed pump's load after its claim did."""
    port = free_port()
    admin = redis.Redis(port=port)
    args = ("--port", str(port), "--bind", "127.0.0.1")

    async def main() -> list[str]:
        with own_redis(admin, *args):
            r = await connect(f"redis://127.0.0.1:{port}/{DB}")
            await asyncio.gather(*(r.get("k") for _ in range(8)))  # several pooled connections
        try:
            with own_redis(admin, *args):  # restarted: a new process on the same port
                await asyncio.sleep(0.2)  # the loop sees the old connections closed
                failed = []
                for _ in range(3):
                    got = await asyncio.gather(*(r.get("k") for _ in range(8)), return_exceptions=True)
                    failed += [repr(e) for e in got if isinstance(e, BaseException)]
                return failed
        finally:
            await r.aclose()

    assert asyncio.run(main()) == []


def test_many_pipelines_at_once_each_get_their_own_replies(redis_server):
    async def one(r: Redis, i: int) -> list[Any]:
        async with r.pipeline(transaction=False) as p:
            p.set(f"n{i}", i)
            p.incrby(f"n{i}", i)
            p.get(f"n{i}")
            return await p.execute()  # type: ignore[no-any-return]

    async def main() -> list[list[Any]]:
        r = await connect(url(redis_server))
        try:
            return await asyncio.gather(*(one(r, i) for i in range(300)))
        finally:
            await r.aclose()

    for i, out in enumerate(asyncio.run(main())):
        assert out == [True, 2 * i, str(2 * i).encode()]
    assert redis.Redis(port=redis_server.port, db=DB).get("n299") == b"598"  # all in the URL's database


def test_a_dropped_connection_fails_what_waited_and_the_next_pipeline_reconnects(redis_server):
    admin = redis.Redis(port=redis_server.port)

    async def main() -> None:
        r = await connect(url(redis_server))
        try:
            async with r.pipeline(transaction=False) as p:
                p.client_setname("tt-link-test")
                await p.execute()
            blocked = asyncio.ensure_future(_blpop(r))
            await asyncio.sleep(0.2)
            killed = [c for c in admin.client_list() if c["name"] == "tt-link-test"]
            assert len(killed) == 1
            admin.client_kill_filter(_id=killed[0]["id"])
            with pytest.raises(ConnectionError):
                await blocked
            async with r.pipeline(transaction=False) as p:
                p.set("after", 1)
                p.get("after")
                assert await p.execute() == [True, b"1"]
        finally:
            await r.aclose()

    asyncio.run(main())


def test_a_connection_on_which_redis_says_nothing_is_dropped_and_replaced(redis_server):
    """Replies owed and nothing heard for `reply_timeout`: the pipelines waiting fail with
    ConnectionError and the next one gets a new connection. (BLPOP stands for a Redis that went
    silent: it answers nothing until its own 5 s are over, which would be a reply, not an error.)"""

    async def main() -> None:
        r = await connect(url(redis_server), reply_timeout=0.3)
        try:
            with pytest.raises(ConnectionError, match="no reply from Redis"):
                async with r.pipeline(transaction=False) as p:
                    p.blpop(["never-filled"], 5)
                    await p.execute()
            async with r.pipeline(transaction=False) as p:
                p.set("after-silence", 1)
                p.get("after-silence")
                assert await p.execute() == [True, b"1"]
        finally:
            await r.aclose()

    asyncio.run(main())


async def _blpop(r: Redis) -> list[Any]:
    async with r.pipeline(transaction=False) as p:
        p.blpop(["never-filled"], 30)  # waits in Redis until the connection is killed
        return await p.execute()  # type: ignore[no-any-return]


def test_a_subscription_hands_over_each_message_and_comes_back_after_its_connection_is_killed(redis_server):
    admin = redis.Redis(port=redis_server.port)

    async def wait_for(got: list[bytes], n: int) -> None:
        async with asyncio.timeout(10):
            while len(got) < n:
                await asyncio.sleep(0.01)

    async def main() -> list[bytes]:
        r = await connect(url(redis_server))
        got: list[bytes] = []
        before = {c["id"] for c in admin.client_list()}
        sub = await subscribe(r, "tt:link-test", got.append)
        try:
            assert admin.publish("tt:link-test", "one") == 1
            await wait_for(got, 1)
            subscriber = [c for c in admin.client_list() if c["id"] not in before and c["sub"] == "1"]
            assert len(subscriber) == 1
            admin.client_kill_filter(_id=subscriber[0]["id"])
            async with asyncio.timeout(10):  # resubscribed within RESUBSCRIBE_DELAY, give or take
                while admin.publish("tt:link-test", "two") == 0:
                    await asyncio.sleep(0.05)
            await wait_for(got, 2)
            return got
        finally:
            sub.close()
            await r.aclose()

    assert asyncio.run(main()) == [b"one", b"two"]


@contextlib.contextmanager
def own_redis(admin: redis.Redis, *args: str) -> Iterator[None]:
    """A redis-server of the test's own (`args`), ready once `admin` can ping it."""
    proc = subprocess.Popen(
        [find_redis_server(), *args, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                return bool(admin.ping())
            except redis.ConnectionError:
                return False

        eventually(up, timeout=10, interval=0.05, what="redis-server to answer")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def pipeline_and_message(url: str, channel: str, build: Callable[[Any], None]) -> tuple[list[Any], list[bytes]]:
    """Run `build` and a PUBLISH on `channel` as one pipeline through `connect(url)`, with a
    subscription to `channel` open; the pipeline's replies and the messages received."""

    async def main() -> tuple[list[Any], list[bytes]]:
        r = await connect(url)
        got: list[bytes] = []
        sub = await subscribe(r, channel, got.append)
        try:
            async with r.pipeline(transaction=False) as p:
                build(p)
                p.publish(channel, "hello")
                out = await p.execute()
            async with asyncio.timeout(10):
                while not got:
                    await asyncio.sleep(0.01)
            return out, got
        finally:
            sub.close()
            await r.aclose()

    return asyncio.run(main())


def test_a_unix_socket_url_works_for_pipelines_and_subscriptions(tmp_path):
    path = tmp_path / "redis.sock"
    with own_redis(redis.Redis(unix_socket_path=str(path)), "--port", "0", "--unixsocket", str(path)):
        out, got = pipeline_and_message(f"unix://{path}?db=3", "tt:unix-test", lambda p: (p.set("k", "v"), p.get("k")))
        assert out == [True, b"v", 1] and got == [b"hello"]
        assert redis.Redis(unix_socket_path=str(path), db=3).get("k") == b"v"


def test_a_password_in_the_url_is_sent_by_the_link_and_the_subscription(tmp_path):
    port = free_port()
    admin = redis.Redis(port=port, password="s3cret")
    with own_redis(admin, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret"):
        url = f"redis://:s3cret@127.0.0.1:{port}/2"
        assert pipeline_and_message(url, "tt:auth-test", lambda p: p.set("k", "v")) == ([True, 1], [b"hello"])
        assert redis.Redis(port=port, password="s3cret", db=2).get("k") == b"v"


def test_scripts_lost_by_redis_are_loaded_again_by_the_services(redis_server, platform, client, queue_name):
    """After SCRIPT FLUSH (as after a restart of Redis) the next pipeline over the link gets NOSCRIPT,
    loads the scripts again and runs once more: tasks, delayed ones too, run as usual."""
    from tasktide_services.testing import run_worker_thread
    from tests.tasks_app import app

    admin = redis.Redis(port=redis_server.port)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert client.submit_spec(app.tasks["t.add"].spec([1, 1], queue=queue_name)).get(timeout=10) == 2
        admin.script_flush()
        h = client.submit_spec(app.tasks["t.add"].spec([20, 22], queue=queue_name))
        assert h.get(timeout=10) == 42
        assert client.submit_spec(app.tasks["t.add"].spec([2, 3], queue=queue_name, countdown=0.2)).get(timeout=10) == 5


def test_an_acl_user_in_the_url_is_sent_by_the_link_and_the_subscription(tmp_path):
    """A Redis ACL user of its own (not `default`), with the commands the services use."""
    port = free_port()
    admin = redis.Redis(port=port, password="adm1n")
    with own_redis(admin, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "adm1n"):
        admin.acl_setuser(
            "tasktide", enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"]
        )
        url = f"redis://tasktide:s3cret@127.0.0.1:{port}/3"
        assert pipeline_and_message(url, "tt:acl-test", lambda p: p.set("k", "v")) == ([True, 1], [b"hello"])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, username="tasktide", password="wrong").ping()


def test_the_pipelines_of_one_turn_of_the_loop_reach_redis_in_one_write(tmp_path):
    """Pipelines started in the same turn of the event loop are written together, at its end: Redis
    reads them in one go (its count of reads grows by one, not by one per pipeline), and each gets
    its own replies."""
    port = free_port()
    admin = redis.Redis(port=port)
    with own_redis(admin, "--port", str(port), "--bind", "127.0.0.1"):

        def reads() -> int:
            return int(admin.info("stats")["total_reads_processed"])

        async def one(r: Redis, i: int) -> list[Any]:
            async with r.pipeline(transaction=False) as p:
                p.set(f"w{i}", i)
                p.get(f"w{i}")
                return await p.execute()  # type: ignore[no-any-return]

        async def main() -> tuple[list[list[Any]], int]:
            r = await connect(f"redis://127.0.0.1:{port}/{DB}")
            try:
                await one(r, -1)  # connected, database selected
                before = reads()
                out = await asyncio.gather(*(one(r, i) for i in range(50)))  # started in one turn
                return out, reads() - before - 1  # less the INFO of this second count
            finally:
                await r.aclose()

        out, read = asyncio.run(main())
        assert out == [[True, str(i).encode()] for i in range(50)]
        assert read == 1


class _OwnConnection(redis.asyncio.connection.Connection):
    """A connection class of its own: the link does not serve such a client (as with rediss://)."""


def test_a_pooled_connection_loads_only_the_scripts_redis_lacks(redis_server):
    """A client the link does not serve loads its kept scripts on each new pooled connection; one
    SCRIPT EXISTS first, so a connection opened as the pool grows loads none when Redis has them,
    and a connection made after Redis lost them loads them all again."""
    from tasktide_services.common.lua import Script, preload

    sync = redis.Redis(port=redis_server.port, db=DB)
    scripts = {f"s{i}": Script(None, f"return {i} + #KEYS") for i in range(5)}

    def script_calls() -> int:  # SCRIPT LOAD, EXISTS, FLUSH ("cmdstat_script" before Redis 7)
        stats = sync.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))

    async def main() -> tuple[int, int, list[int]]:
        pool = redis.asyncio.ConnectionPool(port=redis_server.port, db=DB, connection_class=_OwnConnection)
        r = LinkedRedis(connection_pool=pool)
        try:
            assert r._linked() is None, "the link serves this client"
            sync.script_flush()
            await preload(r, scripts)
            before = script_calls()
            await asyncio.gather(*(r.ping() for _ in range(3)))  # commands at once: the pool grows
            assert len(pool._available_connections) >= 2, "the pool did not grow"
            grown = script_calls() - before
            sync.script_flush()
            await pool.disconnect()  # as after a restart of Redis: the next commands connect anew
            before = script_calls()
            await asyncio.gather(*(r.ping() for _ in range(3)))
            return grown, script_calls() - before, sync.script_exists(*(s.sha for s in scripts.values()))
        finally:
            await r.aclose()

    grown, after_flush, present = asyncio.run(main())
    # One SCRIPT EXISTS per new connection (at most 3 here), not a SCRIPT LOAD per script.
    assert grown <= 3, f"{grown} SCRIPT commands for connections opened while Redis had every script"
    assert after_flush >= len(scripts), "the connections made after Redis lost the scripts did not load them"
    assert present == [True] * len(scripts)
