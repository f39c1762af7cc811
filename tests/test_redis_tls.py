"""The services on a Redis reached over TLS (`rediss://`): a TLS proxy (tests/tls_proxy.py) in front
of a plain Redis of the module's own, with certificates of a test CA, optionally requiring a client
certificate. A task runs end to end with every Redis connection of the services through the proxy;
a missing client certificate or a server certificate of another CA stops the services with a clear
error, and nothing falls back to plaintext. Submission straight to Redis takes `rediss://` too.
(A TLS Redis Cluster, `rediss+cluster://`, is not covered here.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tasktide import AsyncClient, Client, TaskHandle, Unavailable
from tasktide_services.common.redis_server import LocalRedis, start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.testing import (
    PlatformThread,
    client_settings,
    eventually,
    register_services,
    run_worker_thread,
    spawn,
    unreachable_address,
)
from tests.conftest import ROOT
from tests.processes import TEST_SERVICE_ENV, separate_services, stop
from tests.tasks_app import app
from tests.test_tls import certs as certs  # noqa: F401 - the fixture (two CAs)
from tests.tls_proxy import ProxyCounts, TlsProxy, tls_proxy


@pytest.fixture(scope="module")
def plain_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A Redis of the module's own: every client it has is one of these tests' services."""
    server = start_redis(tmp_path_factory.mktemp("redis-behind-tls"), appendonly=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(plain_redis: LocalRedis, certs: tuple[Path, Path]) -> Iterator[TlsProxy]:
    ours = certs[0]
    with tls_proxy(("127.0.0.1", plain_redis.port), ours / "server.pem", ours / "server-key.pem") as p:
        yield p


def _url(proxy: TlsProxy, ca: Path, client: Path | None = None) -> str:
    url = f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={ca / 'ca.pem'}"
    if client is not None:
        url += f"&ssl_certfile={client / 'client.pem'}&ssl_keyfile={client / 'client-key.pem'}"
    return url


@pytest.fixture(scope="module")
def tls_platform(
    server_settings: ServerSettings, proxy: TlsProxy, certs: tuple[Path, Path]
) -> Iterator[PlatformThread]:
    with PlatformThread(replace(server_settings, redis_url=_url(proxy, certs[0]))) as p:
        yield p


def _bypassing(plain_redis: LocalRedis, proxy: TlsProxy) -> list[str]:
    """The clients of the plain Redis that are not the proxy's connections (nor this one)."""
    with redis.Redis(port=plain_redis.port) as r:
        me = r.client_id()
        listed = r.client_list()
    ports = proxy.snapshot().upstream_ports
    return [c["addr"] for c in listed if int(c["id"]) != me and int(c["addr"].rsplit(":", 1)[1]) not in ports]


def _all_through_the_proxy(plain_redis: LocalRedis, proxy: TlsProxy) -> None:
    """Every client of the plain Redis is a proxy connection (a connection the proxy has just
    opened may be listed by Redis a moment before the proxy notes its port)."""
    eventually(lambda: not _bypassing(plain_redis, proxy), timeout=5, what="no client bypassing the proxy")


@pytest.fixture(params=["one", "split"])
def tls_services(
    request: pytest.FixtureRequest, tls_platform: PlatformThread, proxy: TlsProxy, certs: tuple[Path, Path]
) -> Iterator[str]:
    """The address of services on the TLS Redis: in one process, or each in its own process."""
    if request.param == "one":
        yield tls_platform.address
        return
    with separate_services({"TASKTIDE_REDIS_URL": _url(proxy, certs[0]), **TEST_SERVICE_ENV}) as env:
        register_services(env["TASKTIDE_ADDRESS"], env)
        try:
            yield env["TASKTIDE_ADDRESS"]
        finally:
            register_services(env["TASKTIDE_ADDRESS"], {})


def test_a_task_runs_end_to_end_over_tls(
    tls_services: str, proxy: TlsProxy, plain_redis: LocalRedis, queue_name: str
) -> None:
    before = proxy.snapshot()
    worker = spawn(
        "worker", "tests.tasks_app:app", "--queues", queue_name, env={"TASKTIDE_ADDRESS": tls_services}, cwd=ROOT
    )
    try:
        with Client(settings=client_settings(tls_services)) as client:
            handle = client.submit("t.add", [2, 3], queue=queue_name)
            assert handle.get(timeout=60) == 5
    finally:
        stop([worker])
    after = proxy.snapshot()
    assert after.accepted > 0 and not after.refused
    assert after.bytes_up > before.bytes_up and after.bytes_down > before.bytes_down
    # The task's record is in the Redis behind the proxy, and reached it only through the proxy.
    with redis.Redis(port=plain_redis.port) as r:
        assert any(handle.id.encode() in key for key in r.scan_iter(match=f"*{handle.id}*"))
    _all_through_the_proxy(plain_redis, proxy)


@pytest.fixture(scope="module")
def mtls_proxy(plain_redis: LocalRedis, certs: tuple[Path, Path]) -> Iterator[TlsProxy]:
    ours = certs[0]
    with tls_proxy(
        ("127.0.0.1", plain_redis.port), ours / "server.pem", ours / "server-key.pem", client_ca=ours / "ca.pem"
    ) as p:
        yield p


def test_a_client_certificate_is_sent_when_the_url_names_one(
    server_settings: ServerSettings, mtls_proxy: TlsProxy, certs: tuple[Path, Path], queue_name: str
) -> None:
    ours = certs[0]
    p = PlatformThread(replace(server_settings, redis_url=_url(mtls_proxy, ours, client=ours))).start()
    try:
        with run_worker_thread(app, p.address, queues=(queue_name,)), Client(settings=client_settings(p.address)) as c:
            assert c.submit("t.add", [4, 5], queue=queue_name).get(timeout=60) == 9
    finally:
        p.stop()
    counts = mtls_proxy.snapshot()
    assert counts.accepted > 0 and not counts.refused


def test_without_a_client_certificate_the_services_do_not_start(
    server_settings: ServerSettings, mtls_proxy: TlsProxy, certs: tuple[Path, Path]
) -> None:
    url = _url(mtls_proxy, certs[0])
    refused = len(mtls_proxy.snapshot().refused)
    with pytest.raises(RuntimeError) as info:
        PlatformThread(replace(server_settings, redis_url=url)).start()
    assert str(info.value).startswith(f"cannot reach Redis at {url}: ")
    assert "client certificate" in str(info.value) and "ssl_certfile=" in str(info.value)
    reasons = mtls_proxy.snapshot().refused[refused:]
    assert reasons and all("CERTIFICATE" in r for r in reasons), reasons


def test_the_entry_point_exits_non_zero_without_a_client_certificate(
    mtls_proxy: TlsProxy, certs: tuple[Path, Path]
) -> None:
    url = _url(mtls_proxy, certs[0])
    done = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "registry", "--address", "127.0.0.1:0", "--redis-url", url],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 3, done.stderr
    assert f"tasktide registry: cannot reach Redis at {url}: " in done.stderr
    assert "ssl_certfile=" in done.stderr
    assert "listening on" not in done.stdout


def test_the_refusal_names_the_url_without_its_password(
    server_settings: ServerSettings, mtls_proxy: TlsProxy, certs: tuple[Path, Path]
) -> None:
    """An ACL user's password in the URL stays out of the message (and so out of logs)."""
    url = _url(mtls_proxy, certs[0])
    with pytest.raises(RuntimeError) as info:
        PlatformThread(replace(server_settings, redis_url=url.replace("//", "//tasktide:s3cret@", 1))).start()
    assert str(info.value).startswith(f"cannot reach Redis at {url}: ")
    assert "s3cret" not in str(info.value)


def test_a_server_certificate_of_another_ca_is_refused(
    server_settings: ServerSettings, plain_redis: LocalRedis, certs: tuple[Path, Path]
) -> None:
    ours, theirs = certs
    with tls_proxy(("127.0.0.1", plain_redis.port), theirs / "server.pem", theirs / "server-key.pem") as other:
        url = _url(other, ours)
        with pytest.raises(RuntimeError) as info:
            PlatformThread(replace(server_settings, redis_url=url)).start()

        def tried() -> ProxyCounts:
            counts = other.snapshot()  # the proxy notes a failed handshake on its own thread
            assert counts.refused, "the services never tried the TLS port"
            return counts

        counts = eventually(tried, timeout=10)
        # What the proxy notes for a client that speaks plaintext to it (so the check below can fail).
        with pytest.raises(redis.ConnectionError), redis.Redis(port=other.port, socket_timeout=10) as plain:
            plain.ping()
        plaintext = eventually(lambda: other.snapshot().refused[len(counts.refused) :], timeout=10)
    assert str(info.value).startswith(f"cannot reach Redis at {url}: ")
    assert "certificate verify failed" in str(info.value)
    # Refused at the handshake, by the services: no connection reached Redis, none in plaintext.
    assert counts.accepted == 0 and counts.bytes_up == 0
    assert plaintext and all("WRONG_VERSION_NUMBER" in r for r in plaintext), plaintext
    assert not [r for r in counts.refused if "WRONG_VERSION_NUMBER" in r], counts.refused


def test_submission_straight_to_redis_over_tls(
    tls_platform: PlatformThread, proxy: TlsProxy, plain_redis: LocalRedis, certs: tuple[Path, Path], queue_name: str
) -> None:
    """TASKTIDE_SUBMIT_REDIS_URL takes the rediss:// URL, in the blocking and the asyncio client: the
    tasks are queued with no scheduler at the producer's address, so only through the proxy, and the
    platform runs them."""
    before = proxy.snapshot()
    env = {"TASKTIDE_SUBMIT_REDIS_URL": _url(proxy, certs[0])}

    async def submit_async(nowhere: str) -> str:
        async with AsyncClient(settings=client_settings(nowhere, env)) as producer:
            return (await producer.submit("t.add", [1, 2], queue=queue_name)).id

    with unreachable_address() as nowhere, Client(settings=client_settings(nowhere, env)) as producer:
        task_ids = [producer.submit("t.add", [20, 22], queue=queue_name).id, asyncio.run(submit_async(nowhere))]
    assert proxy.snapshot().accepted > before.accepted
    with run_worker_thread(app, tls_platform.address, queues=(queue_name,)):
        with Client(settings=client_settings(tls_platform.address)) as client:
            assert [client.result(task_id, timeout=60) for task_id in task_ids] == [42, 3]
    _all_through_the_proxy(plain_redis, proxy)


def _subscribed_through(plain_redis: LocalRedis, ports: set[int]) -> set[int]:
    """The ports (at the proxy's end) of the subscribed clients of the plain Redis among `ports`."""
    with redis.Redis(port=plain_redis.port) as r:
        listed = r.client_list()
    found = {int(c["addr"].rsplit(":", 1)[1]) for c in listed if int(c["sub"]) > 0}
    return found & ports


def _submitted(client: Client, queue: str) -> TaskHandle:
    try:
        return client.submit("t.add", [3, 4], queue=queue)
    except Unavailable as exc:
        raise AssertionError(str(exc)) from exc


def test_connections_cut_between_the_services_and_redis_are_made_again_over_tls(
    server_settings: ServerSettings, plain_redis: LocalRedis, certs: tuple[Path, Path], queue_name: str
) -> None:
    """Every connection through the proxy is cut (as by a network or Redis restart): the services
    open new TLS connections, their subscriptions included, and the next task runs."""
    ours = certs[0]
    with tls_proxy(("127.0.0.1", plain_redis.port), ours / "server.pem", ours / "server-key.pem") as own:
        p = PlatformThread(replace(server_settings, redis_url=_url(own, ours))).start()
        try:
            with (
                run_worker_thread(app, p.address, queues=(queue_name,)),
                Client(settings=client_settings(p.address)) as client,
            ):
                assert client.submit("t.add", [1, 2], queue=queue_name).get(timeout=60) == 3
                before = own.snapshot()
                subscribed = _subscribed_through(plain_redis, before.upstream_ports)
                assert subscribed, "no subscription of the services goes through the proxy"
                assert own.drop_all() > 0
                eventually(
                    lambda: (
                        len(_subscribed_through(plain_redis, own.snapshot().upstream_ports - before.upstream_ports))
                        == len(subscribed)
                    ),
                    timeout=30,
                    what="the services' subscriptions back over new TLS connections",
                )
                # A call on a connection that was cut fails once (UNAVAILABLE, "try again"), as on
                # a plain Redis; the producer tries again.
                handle = eventually(lambda: _submitted(client, queue_name), timeout=30, what="a submission accepted")
                assert handle.get(timeout=60) == 7
            assert own.snapshot().accepted > before.accepted and not own.snapshot().refused
        finally:
            p.stop()
