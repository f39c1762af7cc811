"""A TCP proxy on loopback that a test can cut (it stops forwarding, both ways, without closing:
a network partition), slow down (every chunk waits `delay` seconds before it is forwarded), reset
(every connection through it is dropped at once, what is on its way included), break in the
middle of a write (`reset_before`: the bytes before a marker reach the server, then every
connection is dropped; with `refuse`, new connections are then closed at once for a while, as a
server that is restarting), or lose an answer (`lose_answer_to`: a request holding a marker reaches
the server whole, then every connection is dropped before the answer comes back)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Proxy:
    """Listens on 127.0.0.1 (a free port) and forwards to `target` ("unix:PATH" or "HOST:PORT")."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.delay = 0.0
        self.port = 0
        self._open = asyncio.Event()  # set while forwarding
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._marker = b""  # `reset_before`: what the next write toward the server is cut at
        self._passing = 0  # chunks holding the marker still to forward whole
        self._refuse = 0.0  # `reset_before`: seconds new connections are closed at once after the break
        self._refuse_until = 0.0  # loop time until which they are
        self._answered_marker = b""  # `lose_answer_to`: the request whose answer is lost
        self.broke = threading.Event()  # set once a write was cut at the marker

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._open.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def reset(self) -> None:
        def drop() -> None:
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(drop)

    def reset_before(self, marker: bytes, passing: int = 0, refuse: float = 0.0) -> None:
        """The next chunk toward the server that holds `marker` (after `passing` such chunks
        forwarded whole) is forwarded up to it only, then every connection is dropped, as a
        connection that breaks while a request is being sent; for `refuse` seconds after that, a
        new connection is closed as soon as it is made (the server is restarting)."""
        self._passing = passing
        self._refuse = refuse
        self._marker = marker

    def lose_answer_to(self, marker: bytes) -> None:
        """The next chunk toward the server that holds `marker` is forwarded whole; then nothing
        passes either way while the server runs it, and every connection is dropped: its answer
        is lost, as when a connection breaks after the request reached the server. New
        connections pass again afterwards."""
        self._answered_marker = marker

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._open.set()
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target.startswith("unix:"):
            return await asyncio.open_unix_connection(self.target.removeprefix("unix:"))
        host, port = self.target.rsplit(":", 1)
        return await asyncio.open_connection(host, int(port))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._loop.time() < self._refuse_until:
            writer.transport.abort()
            return
        try:
            await self._open.wait()
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool = False) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._open.wait()  # cut: hold the bytes, as a partition would
                at = data.find(self._marker) if upstream and self._marker else -1
                if at >= 0 and self._passing:
                    self._passing -= 1
                    at = -1
                if at >= 0:
                    self._marker = b""
                    writer.write(data[:at])
                    await writer.drain()
                    await asyncio.sleep(0.2)  # the server reads what came before it dies
                    self._refuse_until = self._loop.time() + self._refuse
                    for w in list(self._writers):
                        w.transport.abort()
                    self.broke.set()
                    return
                writer.write(data)
                await writer.drain()
                if upstream and self._answered_marker and self._answered_marker in data:
                    self._answered_marker = b""
                    self._open.clear()  # the answer is held back ...
                    await asyncio.sleep(0.2)  # ... while the server runs the request
                    for w in list(self._writers):
                        w.transport.abort()
                    self._open.set()
                    self.broke.set()
                    return
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


@contextlib.contextmanager
def proxy(target: str) -> Iterator[Proxy]:
    p = Proxy(target).start()
    try:
        yield p
    finally:
        p.stop()
