"""A call that fails because Redis or another service is out of reach answers UNAVAILABLE (a caller
tries again), never INTERNAL; a request that another service refused keeps that service's status.

The services run as separate processes, as in production, on a Redis of their own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tasktide import Client, ClientSettings
from tasktide._exceptions import Unavailable
from tasktide_services.common.errors import from_exception
from tasktide_services.common.redis_server import start_redis
from tasktide_services.testing import eventually, spawn
from tests.processes import ROOT, separate_services, stop, wait_serving

T = TypeVar("T")


def test_calls_while_redis_is_away_are_unavailable_and_work_again_after(tmp_path: Path, queue_name: str) -> None:
    data = tmp_path / "redis"
    server = start_redis(data, appendonly=True)
    port = server.port
    try:
        with separate_services({"TASKTIDE_REDIS_URL": server.url}) as common:
            with Client(settings=ClientSettings.from_env(common)) as client:
                first = client.submit("t.add", [1, 1], queue=queue_name)
                server.stop()
                with pytest.raises(Unavailable, match="Redis is out of reach"):
                    client.submit("t.add", [2, 2], queue=queue_name)
                # the service answered: it is up, its Redis is not
                with pytest.raises(Unavailable, match="tasktide at .* is unavailable: .*Redis is out of reach"):
                    client.get_task(first.id)
                with pytest.raises(Unavailable, match="Redis is out of reach"):  # the registry's admin calls too
                    client.drain_worker("some-worker")
                server = start_redis(data, port=port, appendonly=True)

                def again(call: Callable[[], T]) -> Callable[[], T]:
                    def attempt() -> T:
                        try:
                            return call()
                        except Unavailable as exc:  # while the services reconnect
                            raise AssertionError(str(exc)) from exc

                    return attempt

                assert len(eventually(again(lambda: client.submit("t.add", [3, 3], queue=queue_name).id), 30)) == 32
                assert eventually(again(lambda: client.get_task(first.id)), 30).id == first.id
    finally:
        server.stop()


def test_a_submission_whose_registry_is_out_of_reach_is_unavailable(tmp_path: Path, queue_name: str) -> None:
    server = start_redis(tmp_path / "redis", appendonly=False)
    folder = Path(tempfile.mkdtemp(prefix="tt-"))
    address = f"unix:{folder}/scheduler.sock"
    env = {
        "TASKTIDE_REDIS_URL": server.url,
        "TASKTIDE_LISTEN": address,
        "TASKTIDE_REGISTRY_ADDRESS": f"unix:{folder}/nobody.sock",  # nothing listens there
        "TASKTIDE_RESULTS_ADDRESS": f"unix:{folder}/nobody.sock",
    }
    proc = spawn("scheduler", env=env, cwd=ROOT)
    try:
        wait_serving(address, proc)
        with Client(settings=ClientSettings(address=address)) as client:
            with pytest.raises(Unavailable, match="out of reach or failed"):
                client.submit("t.add", [1, 1], queue=queue_name)
            with pytest.raises(Unavailable, match="out of reach or failed"):  # it asks the registry
                client.get_task("0" * 32)
    finally:
        stop([proc])
        server.stop()


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
        (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE),
        (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_a_failed_call_to_another_service_keeps_a_status_the_caller_can_act_on(peer, expected) -> None:
    failed = grpc.aio.AioRpcError(peer, grpc.aio.Metadata(), grpc.aio.Metadata(), details="what it said")
    error = from_exception(failed, "Scheduler")
    assert error.code == expected
    assert "what it said" in str(error)
    assert from_exception(RedisConnectionError("refused"), "X").code == grpc.StatusCode.UNAVAILABLE
    assert from_exception(ValueError("a defect"), "X").code == grpc.StatusCode.INTERNAL


def test_a_service_out_of_reach_is_told_apart_from_one_that_answered(tmp_path: Path, queue_name: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="tt-"))
    with Client(settings=ClientSettings(address=f"unix:{folder}/nobody.sock")) as client:
        with pytest.raises(Unavailable, match="cannot reach tasktide at unix:"):
            client.submit("t.add", [1, 1], queue=queue_name)
