"""A TLS endpoint in front of a plain Redis, for tests of `rediss://` URLs.

The Redis the tests start is built without TLS, so this proxy terminates TLS on a loopback port
(server certificate and key given, and optionally a CA whose client certificates it requires) and
forwards the bytes, both ways, to the plain Redis at `upstream`. It runs an event loop in a
background thread of the test process (services.testing.LoopThread). It counts what it saw: TLS
connections accepted, handshakes refused (with the reason), bytes each way, and the local ports of
its connections to Redis (so a test can tell them from any other client in Redis's CLIENT LIST).
It holds at most MAX_CONNECTIONS at once; one more is closed as soon as it is accepted. `drop_all`
cuts every connection it relays, as a network or a Redis restart would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tasktide_services.testing import LoopThread

MAX_CONNECTIONS = 128
CHUNK = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0


@dataclass
class ProxyCounts:
    accepted: int = 0  # TLS handshakes completed
    refused: list[str] = field(default_factory=list)  # why each failed handshake failed
    over_limit: int = 0
    bytes_up: int = 0  # client to Redis
    bytes_down: int = 0  # Redis to client
    upstream_ports: set[int] = field(default_factory=set)  # local ports of the proxy's Redis connections


class TlsProxy(LoopThread):
    def __init__(self, upstream: tuple[str, int], cert: Path, key: Path, client_ca: Path | None = None) -> None:
        super().__init__("tls-proxy")
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            self.context.load_verify_locations(str(client_ca))
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.counts = ProxyCounts()
        self.port = 0
        self._lock = threading.Lock()  # counts are read by the test thread
        self._handlers: set[asyncio.Task[None]] = set()  # one per client connection
        self._accepted: set[asyncio.StreamWriter] = set()  # client ends, from the moment of accepting
        self._relayed: set[asyncio.StreamWriter] = set()  # both ends of every relayed connection

    def start(self) -> Self:
        super().start()
        if not self.port:
            raise RuntimeError("the TLS proxy did not start")
        return self

    def drop_all(self) -> int:
        """Abort every relayed connection (both ends); returns how many client connections there were."""

        async def drop() -> int:
            writers = list(self._relayed)
            for w in writers:
                w.transport.abort()
            return len(writers) // 2

        return self.call(drop())

    def snapshot(self) -> ProxyCounts:
        with self._lock:
            c = self.counts
            return ProxyCounts(
                c.accepted, list(c.refused), c.over_limit, c.bytes_up, c.bytes_down, set(c.upstream_ports)
            )

    async def serve(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.started()
        await self.stopped()
        server.close()
        for w in self._accepted | self._relayed:
            w.transport.abort()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=HANDSHAKE_TIMEOUT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._handlers) >= MAX_CONNECTIONS:
            with self._lock:
                self.counts.over_limit += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._accepted.add(writer)
        try:
            await self._relay(reader, writer)
        finally:
            self._handlers.discard(task)
            self._accepted.discard(writer)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await writer.start_tls(self.context)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            with self._lock:
                self.counts.refused.append(f"{type(exc).__name__}: {exc}")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            return
        with self._lock:
            self.counts.accepted += 1
            self.counts.upstream_ports.add(up_writer.get_extra_info("sockname")[1])
        self._relayed.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer, up=True), self._pipe(up_reader, writer, up=False))
        finally:
            self._relayed.difference_update((writer, up_writer))
            up_writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, up: bool) -> None:
        try:
            while data := await source.read(CHUNK):
                with self._lock:
                    if up:
                        self.counts.bytes_up += len(data)
                    else:
                        self.counts.bytes_down += len(data)
                sink.write(data)
                await sink.drain()  # bounded: reads no more until the other side took this
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if sink.can_write_eof():
                    sink.write_eof()
                else:
                    sink.close()


@contextlib.contextmanager
def tls_proxy(upstream: tuple[str, int], cert: Path, key: Path, client_ca: Path | None = None) -> Iterator[TlsProxy]:
    proxy = TlsProxy(upstream, cert, key, client_ca).start()
    try:
        yield proxy
    finally:
        proxy.stop()
