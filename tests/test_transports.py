"""The client's transport, chosen once from the settings (or transport=): each one submits tasks
that run, the "redis" one is found through its entry point, and a plugin's interceptor wraps
whichever is chosen."""

from __future__ import annotations

import asyncio

import pytest

from tasktide import AsyncClient, Client, ConfigurationError
from tasktide._async_submitter import AsyncStreamSubmitter
from tasktide._submitter import StreamSubmitter
from tasktide._transport import AsyncUnarySubmitter, UnarySubmitter
from tasktide._transports import registered
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide.contrib.opentelemetry._producer import AsyncTracingSubmitter, TracingSubmitter
from tasktide_services.scheduler.direct_transport import AsyncDirectTransport, DirectTransport
from tasktide_services.testing import client_settings, run_worker_thread
from tests.tasks_app import app

CHOICES = {
    "default": ({}, StreamSubmitter, None),
    "unary": ({"TASKTIDE_SUBMIT_TRANSPORT": "unary"}, UnarySubmitter, None),
    "stream": ({"TASKTIDE_SUBMIT_TRANSPORT": "stream"}, StreamSubmitter, None),
    "pipelined": ({"TASKTIDE_PIPELINED_SUBMIT": "1"}, StreamSubmitter, None),
    "redis": ({"TASKTIDE_SUBMIT_REDIS_URL": "@"}, DirectTransport, StreamSubmitter),
    "redis+unary": (
        {"TASKTIDE_SUBMIT_REDIS_URL": "@", "TASKTIDE_SUBMIT_TRANSPORT": "unary"},
        DirectTransport,
        UnarySubmitter,
    ),
}


def _env(env: dict[str, str], redis_url: str) -> dict[str, str]:
    return {k: redis_url if v == "@" else v for k, v in env.items()}


@pytest.mark.parametrize("choice", list(CHOICES))
def test_each_transport_chosen_by_settings_submits_tasks_that_run(platform, redis_server, queue_name, choice):
    env, outer, fallback = CHOICES[choice]
    settings = client_settings(platform.address, _env(env, redis_server.url))
    with Client(settings=settings) as c:
        chain = c._submitter  # noqa: SLF001 - the chain the client built
        assert type(chain) is outer
        if fallback is not None:
            assert type(chain._fallback) is fallback  # noqa: SLF001
        if isinstance(chain, StreamSubmitter):
            assert chain._pipelined is (choice == "pipelined")  # noqa: SLF001
        handles = [c.submit("t.add", [i, i], queue=queue_name) for i in range(5)]
        handles.append(c.submit("t.add", [5, 5], queue=queue_name, countdown=0.05))  # needs the scheduler
        c.flush()
        with run_worker_thread(app, platform.address, queues=(queue_name,)):
            assert [h.get(timeout=20) for h in handles] == [0, 2, 4, 6, 8, 10]


def test_an_explicit_transport_overrides_the_settings(platform):
    settings = client_settings(platform.address, {"TASKTIDE_PIPELINED_SUBMIT": "1"})
    with Client(settings=settings, transport="unary") as c:
        assert type(c._submitter) is UnarySubmitter  # noqa: SLF001


def test_the_asyncio_client_is_a_stream_unary_or_redis(platform, redis_server, queue_name, client):
    async def submit(env: dict[str, str]) -> tuple[type, type | None, str]:
        settings = client_settings(platform.address, env)
        async with AsyncClient(settings=settings) as c:
            chain = c._submitter  # noqa: SLF001
            fallback = type(chain._fallback) if isinstance(chain, AsyncDirectTransport) else None  # noqa: SLF001
            return type(chain), fallback, (await c.submit("t.add", [2, 3], queue=queue_name)).id

    plain = asyncio.run(submit({}))
    pipelined = asyncio.run(submit({"TASKTIDE_PIPELINED_SUBMIT": "1"}))  # confirmed all the same
    unary = asyncio.run(submit({"TASKTIDE_SUBMIT_TRANSPORT": "unary"}))
    direct = asyncio.run(submit({"TASKTIDE_SUBMIT_REDIS_URL": redis_server.url}))
    assert plain[:2] == (AsyncStreamSubmitter, None)
    assert pipelined[:2] == (AsyncStreamSubmitter, None)
    assert unary[:2] == (AsyncUnarySubmitter, None)
    assert direct[:2] == (AsyncDirectTransport, AsyncStreamSubmitter)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert [client.result(t[2], timeout=20) for t in (plain, pipelined, unary, direct)] == [5, 5, 5, 5]


def test_tracing_wraps_the_chosen_transport(platform, redis_server):
    hooks = TracingHooks()
    for env, inner in (({}, StreamSubmitter), ({"TASKTIDE_SUBMIT_REDIS_URL": redis_server.url}, DirectTransport)):
        settings = client_settings(platform.address, env)
        with Client(settings=settings, hooks=hooks) as c:
            chain = c._submitter  # noqa: SLF001
            assert type(chain) is TracingSubmitter and type(chain.next) is inner

    async def chain_types() -> tuple[type, type]:
        settings = client_settings(platform.address, {"TASKTIDE_SUBMIT_REDIS_URL": redis_server.url})
        async with AsyncClient(settings=settings, hooks=hooks) as c:
            chain = c._submitter  # noqa: SLF001
            return type(chain), type(chain.next)

    assert asyncio.run(chain_types()) == (AsyncTracingSubmitter, AsyncDirectTransport)


def test_bad_transport_settings_are_clear_errors(platform):
    settings = client_settings(platform.address, {"TASKTIDE_SUBMIT_TRANSPORT": "carrier-pigeon"})
    with pytest.raises(ConfigurationError, match="unknown submit transport 'carrier-pigeon'"):
        Client(settings=settings)
    with pytest.raises(ConfigurationError, match="no tasktide transport 'nats' is installed"):
        registered("nats")


def test_django_async_clients_outlive_no_event_loop(platform, queue_name, client, caplog):
    """Django may run an async view on an event loop that ends with the request (async_to_sync),
    and nobody closes the async client it made for that loop: it makes a Submit call per task, so
    no stream of it is left open under a closed loop (gRPC would report the loop closed)."""
    import gc
    import logging

    from asgiref.sync import async_to_sync

    from tasktide.contrib.django.clients import async_client

    settings = client_settings(platform.address)

    async def view(i: int) -> str:
        c = async_client(settings)
        assert type(c._submitter) is AsyncUnarySubmitter  # noqa: SLF001
        return (await c.submit("t.add", [i, i], queue=queue_name)).id

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        ids = [async_to_sync(view)(i) for i in range(5)]
        gc.collect()
        with run_worker_thread(app, platform.address, queues=(queue_name,)):
            assert [client.result(t, timeout=20) for t in ids] == [0, 2, 4, 6, 8]
    assert not [r for r in caplog.records if "Event loop is closed" in r.getMessage() + str(r.exc_info)]
