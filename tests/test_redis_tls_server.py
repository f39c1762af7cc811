"""The services on a Redis that speaks TLS itself (`rediss://`): a redis-server built with TLS,
listening on a TLS port only (`--port 0`: it has no plaintext port at all) and requiring a client
certificate of the test CA. Every connection that works is thus a TLS connection straight to
Redis, with nothing in between; tests/test_redis_tls.py puts a TLS proxy in front of a plain Redis
instead, to count what crosses it.

The server binary: TASKTIDE_TEST_TLS_REDIS_SERVER, else Debian's (package redis-tools, which
.ci/run installs: one binary that runs as the server when called by that name). Without either
the tests skip, and under CI=true they fail."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from tasktide import Client
from tasktide_services.common.redis_server import free_port
from tasktide_services.common.settings import ServerSettings
from tasktide_services.testing import (
    PlatformThread,
    client_settings,
    register_services,
    run_worker_thread,
    spawn,
    unreachable_address,
)
from tests.conftest import ROOT
from tests.processes import TEST_SERVICE_ENV, separate_services, stop
from tests.tasks_app import app
from tests.test_tls import certs as certs  # noqa: F401 - the fixture (two CAs)

BINARY_ENV = "TASKTIDE_TEST_TLS_REDIS_SERVER"
DEBIAN_BINARY = Path("/usr/bin/redis-check-rdb")  # redis-tools: the server, named after another mode


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: required under CI=true (Debian: apt-get install redis-tools)")
    pytest.skip(why)


def _binary(folder: Path) -> str:
    given = os.environ.get(BINARY_ENV)
    if given:
        return given
    if not DEBIAN_BINARY.exists():
        _missing(f"no redis-server built with TLS ({BINARY_ENV} unset, no {DEBIAN_BINARY})")
    link = folder / "redis-server"  # the binary runs as the server when its name says so
    link.symlink_to(DEBIAN_BINARY)
    return str(link)


@dataclass
class TlsRedis:
    port: int
    ca: Path  # the folder of the CA, server and client certificates it trusts

    def url(self, ca: Path | None = None, client: Path | None = None) -> str:
        url = f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={(ca or self.ca) / 'ca.pem'}"
        if client is not None:
            url += f"&ssl_certfile={client / 'client.pem'}&ssl_keyfile={client / 'client-key.pem'}"
        return url

    def admin(self) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.ca / "ca.pem"),
            ssl_certfile=str(self.ca / "client.pem"),
            ssl_keyfile=str(self.ca / "client-key.pem"),
        )


def _start(binary: str, folder: Path, port: int, ca: Path) -> subprocess.Popen[bytes]:
    """The TLS redis-server on `port`, once it answers a client with a certificate of `ca`."""
    args = [
        binary,
        *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
        *("--tls-cert-file", str(ca / "server.pem"), "--tls-key-file", str(ca / "server-key.pem")),
        *("--tls-ca-cert-file", str(ca / "ca.pem"), "--tls-auth-clients", "yes"),
        *("--save", "", "--appendonly", "no", "--dir", str(folder), "--logfile", str(folder / "redis.log")),
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            log = (folder / "redis.log").read_text() if (folder / "redis.log").exists() else ""
            err = (proc.stderr.read().decode() if proc.stderr else "") + log[-2000:]
            if "tls" in err.lower():  # e.g. "Bad directive": a build without TLS
                _missing(f"{binary} cannot serve TLS: {err.strip()[-300:]}")
            raise RuntimeError(f"the TLS redis-server exited with {proc.returncode}: {err}")
        try:
            with TlsRedis(port, ca).admin() as r:
                r.ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]) -> Iterator[TlsRedis]:
    folder = tmp_path_factory.mktemp("redis-tls")
    port = free_port()
    proc = _start(_binary(folder), folder, port, certs[0])
    try:
        yield TlsRedis(port, certs[0])
    finally:
        _stop(proc)


@pytest.fixture(params=["one", "split"])
def tls_services(request: pytest.FixtureRequest, server_settings: ServerSettings, tls_redis: TlsRedis) -> Iterator[str]:
    """The address of services on the TLS Redis, with the client certificate: in one process, or
    each in its own process."""
    url = tls_redis.url(client=tls_redis.ca)
    if request.param == "one":
        with PlatformThread(replace(server_settings, redis_url=url)) as p:
            yield p.address
        return
    with separate_services({"TASKTIDE_REDIS_URL": url, **TEST_SERVICE_ENV}) as env:
        register_services(env["TASKTIDE_ADDRESS"], env)
        try:
            yield env["TASKTIDE_ADDRESS"]
        finally:
            register_services(env["TASKTIDE_ADDRESS"], {})


def test_redis_serves_tls_only(tls_redis: TlsRedis) -> None:
    """What the other tests rest on: no plaintext port, and no connection without a certificate."""
    with tls_redis.admin() as r:
        assert r.config_get("port") == {"port": "0"}
        assert r.config_get("tls-auth-clients") == {"tls-auth-clients": "yes"}
    with pytest.raises(redis.ConnectionError), redis.Redis(port=tls_redis.port, socket_timeout=5) as plain:
        plain.ping()


def test_a_keyed_task_runs_end_to_end_on_redis_over_tls(
    tls_services: str, tls_redis: TlsRedis, queue_name: str
) -> None:
    """A task under an idempotency key (its write is one Redis transaction), submitted twice, run
    by a worker process: one task, its result, its record in the TLS Redis."""
    key = f"tls-{uuid.uuid4().hex}"
    worker = spawn(
        "worker", "tests.tasks_app:app", "--queues", queue_name, env={"TASKTIDE_ADDRESS": tls_services}, cwd=ROOT
    )
    try:
        with Client(settings=client_settings(tls_services)) as client:
            first = client.submit("t.add", [2, 3], queue=queue_name, idempotency_key=key)
            again = client.submit("t.add", [2, 3], queue=queue_name, idempotency_key=key)
            assert again.id == first.id
            assert first.get(timeout=60) == 5
    finally:
        stop([worker])
    with tls_redis.admin() as r:
        assert any(first.id.encode() in k for k in r.scan_iter(match=f"*{first.id}*"))


def test_without_a_client_certificate_the_services_do_not_start_and_say_why(
    server_settings: ServerSettings, tls_redis: TlsRedis
) -> None:
    """Redis answers with the TLS alert "certificate required", or resets the connection when it
    closed it with the client's first command unread (either, by timing): both are told how to
    give a certificate."""
    url = tls_redis.url()
    with pytest.raises(RuntimeError) as info:
        PlatformThread(replace(server_settings, redis_url=url)).start()
    message = str(info.value)
    assert message.startswith(f"cannot reach Redis at {url}: "), message
    assert "certificate required" in message or "reset" in message, message
    assert message.endswith("give one with ssl_certfile= and ssl_keyfile= in the URL)"), message


def test_a_server_certificate_of_another_ca_is_refused(
    server_settings: ServerSettings, tls_redis: TlsRedis, certs: tuple[Path, Path]
) -> None:
    theirs = certs[1]
    url = tls_redis.url(ca=theirs, client=theirs)
    with pytest.raises(RuntimeError) as info:
        PlatformThread(replace(server_settings, redis_url=url)).start()
    assert str(info.value).startswith(f"cannot reach Redis at {url}: ")
    assert "certificate verify failed" in str(info.value)


def test_submission_straight_to_redis_over_tls(
    server_settings: ServerSettings, tls_redis: TlsRedis, queue_name: str
) -> None:
    """TASKTIDE_SUBMIT_REDIS_URL with the TLS URL: the producer queues the task in Redis itself,
    with no scheduler at its address, and the platform runs it."""
    url = tls_redis.url(client=tls_redis.ca)
    with PlatformThread(replace(server_settings, redis_url=url)) as p:
        with unreachable_address() as nowhere:
            with Client(settings=client_settings(nowhere, {"TASKTIDE_SUBMIT_REDIS_URL": url})) as producer:
                task_id = producer.submit("t.add", [20, 22], queue=queue_name).id
        with run_worker_thread(app, p.address, queues=(queue_name,)), Client(settings=client_settings(p.address)) as c:
            assert c.result(task_id, timeout=60) == 42


def test_after_a_restart_of_redis_a_transaction_finds_its_scripts_loaded(
    tmp_path: Path, certs: tuple[Path, Path]
) -> None:
    """A `rediss://` client's pipelines go over redis-py's own connections, not the services'
    link: each new one loads the scripts the client keeps after its handshake, so after a restart
    of Redis (its scripts gone) a transaction's script call runs in the transaction. Before, it
    answered NOSCRIPT at EXEC while the plain command beside it ran (the raw replies show it)."""
    from tasktide_services.common.lua import Script, preload
    from tasktide_services.common.redis_conn import connect

    ours = certs[0]
    binary, port = _binary(tmp_path), free_port()
    incr = Script(None, "return redis.call('INCR', KEYS[1])")
    url = TlsRedis(port, ours).url(client=ours)

    async def main() -> list[object]:
        proc = _start(binary, tmp_path, port, ours)
        r = await connect(url)
        try:
            await preload(r, {"incr": incr})
            _stop(proc)
            proc = _start(binary, tmp_path, port, ours)  # restarted: no scripts
            with TlsRedis(port, ours).admin() as admin:
                assert admin.script_exists(incr.sha) == [False]
            with contextlib.suppress(redis.exceptions.ConnectionError):  # a pooled connection found gone
                await r.ping()
            async with r.pipeline(transaction=True) as p:
                p.incr("plain")
                incr(["scripted"], [], client=p)
                return list(await p.execute(raise_on_error=False))
        finally:
            await r.aclose()
            _stop(proc)

    assert asyncio.run(main()) == [1, 1]
