"""Non-transactional pipelines over one multiplexed Redis connection per client.

The services' hot paths are pipelines (`lua.run_pipeline`, the stores' batched reads). The
client's own pipeline takes a pooled connection, packs the commands in Python, wraps the round
trip in retry and bookkeeping and gives the connection back through a new task: about three times
the CPU of the round trip itself (docs/performance.md). Here the commands are still built by the
client (its command methods, and its reply callbacks afterwards); only the transport differs:
every such pipeline of a process goes, in order, over one connection, packed and parsed by
hiredis. Redis answers a connection's commands in order, so replies are matched first in, first out.
A transactional pipeline goes over the link too, its commands between MULTI and EXEC in the same
write: Redis runs all of them or, when the connection breaks before EXEC arrives, none. (WATCH
needs a connection of its own: the services use none.) Single commands keep the client's own
connections. Nothing on the link may block in Redis (BLPOP and the like would hold up every
pipeline behind it).

A subscription (`subscribe`) is a connection of its own in the same style: each message is handed
to its callback as soon as it is parsed, with no task, timer or retry wrapper per message.

What the pipelines of one turn of the event loop send is written at the end of that turn, in one
write: a write to a socket costs a system call and a wake-up of Redis, often more CPU than building
the commands (a task's outcome and the next submission, read together, share one).

A lost connection fails the pipelines waiting on it with ConnectionError (whether they ran is
unknown, as with any client; callers treat it as a failed call); the next pipeline reconnects. So
does a connection on which Redis has sent nothing for `reply_timeout` seconds while replies are
owed (a Redis that stopped answering without closing): one timer per connection while anything
waits, no timer per command.

A new connection loads the Lua scripts the client was told of (`keep_scripts`, from
`lua.preload`) before anything else is sent on it. Redis that restarted has lost its scripts; with
them loaded first, no pipeline after the restart answers NOSCRIPT, so a transaction runs whole
rather than its plain commands now and its script calls in a second transaction (lua.py). A client
the link does not serve (a `rediss://` URL: redis-py's own TLS connections) does the same on each
of its pooled connections, after redis-py's handshake, for the scripts Redis lacks (`_load_kept`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis._parsers.response_callbacks import get_response_callbacks
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection, Connection, UnixDomainSocketConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE, CaseInsensitiveDict
from redis.exceptions import ConnectionError, InvalidResponse, ResponseError

log = logging.getLogger("tasktide.redis")

CONNECT_TIMEOUT = 5.0
RESUBSCRIBE_DELAY = 0.5
# Replies owed and nothing heard from Redis for this long: the connection is dropped. No command
# of the services takes near this long in Redis (the longest are scripts over one batch).
REPLY_TIMEOUT = 30.0
# The link speaks RESP2 (no HELLO); these callbacks give its replies the shapes the client returns.
_RESP2_CALLBACKS = CaseInsensitiveDict(get_response_callbacks(user_protocol=2, legacy_responses=True))  # type: ignore[arg-type]


class _Waiting:
    __slots__ = ("future", "count", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []


class _Link(asyncio.Protocol):
    """One connection; `run` sends a batch of commands and returns their raw replies (an error
    reply as its exception, not raised)."""

    def __init__(self, kwargs: dict[str, Any], reply_timeout: float = REPLY_TIMEOUT) -> None:
        self._kwargs = kwargs
        self._transport: asyncio.Transport | None = None
        self._ready = False  # connected, and AUTH/SELECT written ahead of anything else
        self._connecting: asyncio.Future[None] | None = None
        self._waiting: deque[_Waiting] = deque()
        self._reader = _reader()
        self._reply_timeout = reply_timeout
        self._heard = 0.0  # loop time Redis last sent data, or a first reply was owed
        self._watch: asyncio.TimerHandle | None = None  # armed while replies are owed
        self._silent = ""  # why the connection was dropped, when Redis went silent
        self._unsent: list[bytes] = []  # commands of this turn of the loop, written at its end
        self.scripts: dict[str, str] = {}  # SHA -> source: loaded first on every new connection

    async def run(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not self._ready:
            await self._connect()
        return await self._send(commands)

    def _send(self, commands: list[tuple[Any, ...]]) -> asyncio.Future[list[Any]]:
        transport = self._transport
        if transport is None:
            raise ConnectionError("Redis connection lost")
        data = b"".join([hiredis.pack_command(_args(c)) for c in commands])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._waiting:
            self._heard = loop.time()
        self._waiting.append(_Waiting(future, len(commands)))
        if self._watch is None:
            self._watch = loop.call_later(self._reply_timeout, self._check)
        unsent = self._unsent
        if not unsent:
            loop.call_soon(self._flush, transport, unsent)
        unsent.append(data)
        return future

    def _flush(self, transport: asyncio.Transport, unsent: list[bytes]) -> None:
        """One write for what this turn of the loop sent (module doc), on the connection it was
        sent on: a connection lost meanwhile has failed its pipelines, and its commands are dropped."""
        if unsent is self._unsent:
            self._unsent = []
        if transport is self._transport and not transport.is_closing():
            transport.write(b"".join(unsent) if len(unsent) > 1 else unsent[0])

    def _check(self) -> None:
        """The reply watchdog (module doc)."""
        self._watch = None
        if not self._waiting or self._transport is None:
            return
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._heard
        if silent < self._reply_timeout:
            self._watch = loop.call_later(self._reply_timeout - silent, self._check)
            return
        self._silent = f"no reply from Redis in {silent:.1f} s"
        log.warning("%s; dropping the connection", self._silent)
        self._transport.abort()

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> None:
        kw = self._kwargs
        await _open_connection(kw, self)
        hello = _auth(kw)
        if kw.get("db"):
            hello.append(("SELECT", kw["db"]))
        loads = [("SCRIPT", "LOAD", source) for source in self.scripts.values()]
        answered = self._send(hello + loads) if hello or loads else None
        self._ready = True  # what is sent from now on follows AUTH, SELECT and the scripts
        if answered is None:
            return
        replies = await answered
        for reply in replies[: len(hello)]:
            if isinstance(reply, Exception):
                self.close()
                raise reply
        _refused_loads([reply for reply in replies[len(hello) :] if isinstance(reply, Exception)])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self._heard = asyncio.get_running_loop().time()
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse:  # not RESP: the connection cannot be trusted any more
                self.close()
                return
            if reply is False:
                return
            w = waiting[0]
            w.replies.append(reply)
            if len(w.replies) == w.count:
                waiting.popleft()
                if not w.future.done():  # its caller may have gone (cancelled); the reply is dropped
                    w.future.set_result(w.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._ready = False
        self._reader = _reader()
        self._unsent = []
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        reason, self._silent = self._silent or exc or "closed", ""
        waiting, self._waiting = self._waiting, deque()
        for w in waiting:
            if not w.future.done():
                w.future.set_exception(ConnectionError(f"Redis connection lost: {reason}"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _refused_loads(refused: list[Exception]) -> None:
    """SCRIPT LOADs a new connection sent and Redis refused: logged; the pipelines' NOSCRIPT path
    (lua.py) loads those scripts when a call needs one."""
    if refused:
        log.warning("loading %d Lua scripts on a new Redis connection failed: %s", len(refused), refused[0])


def _reader() -> Any:
    """A RESP parser whose error replies are the client's exception classes (NOSCRIPT included)."""
    return hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)


async def _open_connection(kw: Mapping[str, Any], protocol: asyncio.Protocol) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(kw.get("socket_connect_timeout") or CONNECT_TIMEOUT):
            if kw.get("path"):
                await loop.create_unix_connection(lambda: protocol, kw["path"])
            else:
                host = kw.get("host", "localhost")
                tls = kw.get("ssl_context")  # set for a cluster's nodes over TLS (redis_cluster.py)
                await loop.create_connection(
                    lambda: protocol, host, kw.get("port", 6379), ssl=tls, server_hostname=host if tls else None
                )
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"cannot connect to Redis: {exc}") from exc


def _auth(kw: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    if not kw.get("password"):
        return []
    user = (kw["username"],) if kw.get("username") else ()
    return [("AUTH", *user, kw["password"])]


def _args(command: tuple[Any, ...]) -> tuple[Any, ...]:
    """The client's command tuple as hiredis packs it (a command name with a space is two words)."""
    name = command[0]
    if isinstance(name, str) and " " in name:
        return (*name.split(), *command[1:])
    return command


class ChannelSubscription(asyncio.Protocol):
    """A connection subscribed to one channel; `on_message` gets each message's data. A lost
    connection is replaced every RESUBSCRIBE_DELAY seconds until it is back; what was published
    meanwhile is missed, as by any subscriber (the services' waiters also poll)."""

    def __init__(self, kwargs: Mapping[str, Any], channel: str, on_message: Callable[[bytes], None]) -> None:
        self._kwargs = kwargs
        self.channel = channel
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._reader = _reader()
        self._subscribed: asyncio.Future[None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> None:
        self._reader = _reader()
        self._subscribed = asyncio.get_running_loop().create_future()
        await _open_connection(self._kwargs, self)
        assert self._transport is not None
        hello = [*_auth(self._kwargs), ("SUBSCRIBE", self.channel)]
        self._transport.write(b"".join([hiredis.pack_command(c) for c in hello]))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._subscribed
        except BaseException:
            self._transport.close()
            raise

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            reply = self._reader.gets()
            if reply is False:
                return
            if isinstance(reply, list) and reply and reply[0] == b"message":
                self._on_message(reply[2])
            elif self._subscribed is not None and not self._subscribed.done():
                if isinstance(reply, Exception):
                    self._subscribed.set_exception(reply)
                elif isinstance(reply, list) and reply and reply[0] == b"subscribe":
                    self._subscribed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_exception(ConnectionError(f"Redis connection lost: {exc or 'closed'}"))
        if not self._closed and self._retry is None:
            log.warning("subscription to %s lost (%s); reconnecting", self.channel, exc or "closed")
            self._retry = asyncio.ensure_future(self._resubscribe())

    async def _resubscribe(self) -> None:
        try:
            while not self._closed:
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                try:
                    await self.open()
                    return
                except (ConnectionError, ResponseError, OSError, TimeoutError) as exc:
                    log.debug("resubscribing to %s: %s", self.channel, exc)
        finally:
            self._retry = None

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._transport is not None:
            self._transport.close()


async def subscribe(redis: Redis, channel: str, on_message: Callable[[bytes], None]) -> ChannelSubscription:
    if isinstance(redis, LinkedRedis):
        sub = redis.subscription(channel, on_message)
    else:
        sub = ChannelSubscription(dict(redis.connection_pool.connection_kwargs), channel, on_message)
    try:
        await sub.open()
    except BaseException:
        sub.close()
        raise
    return sub


def linkable(redis: Redis) -> bool:
    """Whether the link can serve this client (a plain TCP or Unix socket, bytes replies)."""
    if isinstance(redis, LinkedRedis) and redis.always_linked:
        return True
    pool = redis.connection_pool
    plain = pool.connection_class in (Connection, UnixDomainSocketConnection)
    return plain and not pool.connection_kwargs.get("decode_responses")


class NotRun(ResponseError):
    """The reply of a command of a transaction that Redis refused as a whole (EXECABORT: one of
    its commands was refused as it was queued): it did not run."""


class _LinkedPipeline(Pipeline):
    """The client's pipeline, executed over the link; `atomic`: between MULTI and EXEC."""

    def __init__(self, redis: Redis, link: _Link, atomic: bool = False) -> None:
        super().__init__(redis.connection_pool, _RESP2_CALLBACKS, atomic, None)
        self._link = link
        self._atomic = atomic

    async def watch(self, *names: Any) -> None:  # type: ignore[override]  # the pipeline's, refused
        raise ResponseError("WATCH needs a connection of its own: not on the shared link")

    async def __aexit__(self, *exc: object) -> None:
        self.command_stack = []

    async def reset(self) -> None:  # type: ignore[override]  # the pipeline's reset, not RESET
        self.command_stack = []

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, self.command_stack = self.command_stack, []
        if not stack:
            return []
        commands = [args for args, _ in stack]
        if self._atomic:
            replies = executed(await self._link.run([("MULTI",), *commands, ("EXEC",)]))
        else:
            replies = await self._link.run(commands)
        out = [self._reply(args[0], reply, options) for (args, options), reply in zip(stack, replies, strict=True)]
        if raise_on_error:
            self.raise_first_error(stack, out)
        return out

    def _reply(self, name: Any, reply: Any, options: Mapping[str, Any]) -> Any:
        return shaped(name, reply, options)


def executed(replies: list[Any]) -> list[Any]:
    """The replies of a transaction's commands, from those of MULTI, each command (QUEUED, or
    why it was refused) and EXEC (their replies, or why none ran)."""
    queued, result = replies[1:-1], replies[-1]
    if isinstance(result, list):
        return result
    why = f"the transaction did not run: {result}"
    return [q if isinstance(q, ResponseError) else NotRun(why) for q in queued]


def shaped(name: Any, reply: Any, options: Mapping[str, Any]) -> Any:
    """What the client's own pipeline returns for this reply (its options and callbacks)."""
    if isinstance(reply, ResponseError):
        return options[EMPTY_RESPONSE] if EMPTY_RESPONSE in options else reply
    callback = _callback(name)
    if callback is None:
        return reply
    options = {k: v for k, v in options.items() if k not in ("keys", EMPTY_RESPONSE, NEVER_DECODE)}
    return callback(reply, **options)


@functools.lru_cache(maxsize=1024)
def _callback(name: Any) -> Callable[..., Any] | None:
    """The client's reply callback of a command, looked up once per command name (the lookup
    upper-cases the name in Python each time)."""
    return _RESP2_CALLBACKS.get(name)  # type: ignore[no-any-return]


class LinkedRedis(Redis):
    """The asyncio client, whose pipelines go over the link (module doc)."""

    _link: _Link | None = None
    _linkable: bool | None = None  # decided on the first pipeline
    always_linked = False  # a client whose every command goes over links (redis_cluster_client.py)
    reply_timeout: float = REPLY_TIMEOUT  # the link's (module doc)
    transactions = True  # pipelines may be transactions (not on a cluster: redis_cluster_client.py)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: dict[str, str] = {}  # SHA -> source, where no link serves the client
        if not linkable(self):  # set before its first connection, so that every one loads them
            self.connection_pool.connection_kwargs["redis_connect_func"] = self._load_kept

    async def _load_kept(self, connection: AbstractConnection) -> None:
        """redis-py's handshake on a new pooled connection, then SCRIPT LOAD of the kept scripts
        Redis lacks (module doc): one SCRIPT EXISTS for all of them, so that a connection opened as
        the pool grows costs one command, not one per script."""
        await connection.on_connect()
        scripts = list(self._kept.items())  # as now: more may be kept while this waits for Redis
        if not scripts:
            return
        await connection.send_command("SCRIPT", "EXISTS", *(sha for sha, _ in scripts))
        try:
            present = await connection.read_response()
        except ResponseError:  # SCRIPT refused (an ACL): the loads below are refused and logged too
            present = [0] * len(scripts)
        kept = [source for (_, source), there in zip(scripts, present, strict=True) if not there]
        if not kept:
            return
        await connection.send_packed_command(connection.pack_commands([("SCRIPT", "LOAD", s) for s in kept]))
        refused: list[Exception] = []
        for _ in kept:
            try:
                await connection.read_response()
            except ResponseError as exc:
                refused.append(exc)
        _refused_loads(refused)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        link = self._linked()
        if shard_hint is not None or link is None:
            return super().pipeline(transaction, shard_hint)
        return _LinkedPipeline(self, link, atomic=transaction)

    def _linked(self) -> _Link | None:
        """The link, made on first use; None for a client it cannot serve (`linkable`)."""
        if self._linkable is None:
            self._linkable = linkable(self)
            if self._linkable:
                self._link = _Link(dict(self.connection_pool.connection_kwargs), self.reply_timeout)
        return self._link

    def keep_scripts(self, scripts: Iterable[tuple[str, str]]) -> None:
        """Scripts (SHA, source) to load first on every new connection (module doc)."""
        link = self._linked()
        (link.scripts if link is not None else self._kept).update(scripts)

    def subscription(self, channel: str, on_message: Callable[[bytes], None]) -> ChannelSubscription:
        """A subscription to `channel` on this client's Redis, not yet opened."""
        return ChannelSubscription(dict(self.connection_pool.connection_kwargs), channel, on_message)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._link is not None:
            self._link.close()
        await super().aclose(close_connection_pool)
