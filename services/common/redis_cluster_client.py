"""The clients the services and the direct path use on a Redis Cluster (routing: redis_cluster.py).

`ClusterRedis` is the services' asyncio client: the same `Redis` the stores are written against,
whose every command and non-transactional pipeline goes through the cluster's links, so stores and
scripts do not change with the topology. An MGET of several keys, which a cluster refuses when they
lie in different slots (CROSSSLOT), is sent as a GET per key, in one call per node. MULTI/EXEC
pipelines are refused: a transaction on a cluster would have to keep to one slot, so the writes that
are one transaction on one Redis server (`lua.run_pipeline(atomic=True)`, told by `transactions`)
keep the order of `Script.last` here instead.

`blocking_cluster_client` is the direct path's blocking client (scheduler/direct.py): redis-py's
own cluster client for the map and SCRIPT LOAD, and a pipeline split by node (NodePipeline).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError, MovedError, RedisClusterException, ResponseError

from tasktide_services.common.lua import Script
from tasktide_services.common.redis_cluster import EVERY_PRIMARY, ClusterLink, command_slot
from tasktide_services.common.redis_cluster_url import ClusterOptions, parse_cluster_url
from tasktide_services.common.redis_link import (
    REPLY_TIMEOUT,
    ChannelSubscription,
    LinkedRedis,
    _Link,
    _LinkedPipeline,
    shaped,
)


class ClusterRedis(LinkedRedis):
    """The asyncio client on a Redis Cluster (module doc). Connects on first use."""

    always_linked = True
    transactions = False  # a pipeline's keys lie in many slots: its order is kept instead (`Script.last`)

    def __init__(self, options: ClusterOptions, reply_timeout: float = REPLY_TIMEOUT) -> None:
        super().__init__()  # its own connection pool is never used
        self.routes = ClusterLink(options, lambda kw: _Link(kw, reply_timeout))
        self._owners: dict[int, Mapping[str, Script]] = {}

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if transaction:
            raise ResponseError("MULTI/EXEC pipelines are not available on a Redis Cluster link")
        return _LinkedPipeline(self, self.routes)  # type: ignore[arg-type]  # same run() as a _Link

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name in EVERY_PRIMARY:
            reply = await self.routes.every_primary(args)
        elif name == "MGET" and len(args) > 2:  # keys of several slots: a GET each, parts per node
            replies = await self.routes.run([("GET", key) for key in args[1:]])
            for r in replies:
                if isinstance(r, Exception):
                    raise r
            return replies
        else:
            (reply,) = await self.routes.run([args])
        if isinstance(reply, Exception):
            raise reply
        return shaped(args[0], reply, options)

    def remember_scripts(self, owners: Iterable[Mapping[str, Script]]) -> None:
        """Scripts this client may run (lua.run_pipeline), loaded on a node that lacks one. Each
        owner's mapping (a store's scripts, made once) is read the first time it is seen."""
        for owner in owners:
            if id(owner) not in self._owners:
                self._owners[id(owner)] = owner  # kept: its id is not reused while it is here
                self.routes.remember_scripts((s.sha, s.source) for s in owner.values())
                self.routes.run_last(s.sha for s in owner.values() if s.last)

    def keep_scripts(self, scripts: Iterable[tuple[str, str]]) -> None:
        """Nothing: a node that lacks a script has it loaded when a call answers NOSCRIPT
        (`remember_scripts`); its pipelines are not transactions."""

    def subscription(self, channel: str, on_message: Callable[[bytes], None]) -> ChannelSubscription:
        return ClusterSubscription(self.routes, channel, on_message)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        self.routes.close()
        await super().aclose(close_connection_pool)


class ClusterSubscription(ChannelSubscription):
    """A subscription on any node of the cluster (a cluster broadcasts PUBLISH to every node);
    when its connection is lost, the next attempt tries the nodes in turn."""

    def __init__(self, cluster: ClusterLink, channel: str, on_message: Callable[[bytes], None]) -> None:
        super().__init__({}, channel, on_message)
        self._cluster = cluster

    async def open(self) -> None:
        nodes = self._cluster.nodes()
        first = random.randrange(len(nodes))
        errors: list[str] = []
        for addr in nodes[first:] + nodes[:first]:
            self._kwargs = self._cluster.options.node_kwargs(addr)
            try:
                await super().open()
                return
            except (ConnectionError, OSError, TimeoutError) as exc:
                errors.append(f"{addr[0]}:{addr[1]}: {exc}")
        tried = "; ".join(errors)
        raise ConnectionError(f"no node of the Redis Cluster took the subscription to {self.channel}: {tried}")


def cluster_client(url: str, reply_timeout: float = REPLY_TIMEOUT) -> ClusterRedis:
    """The services' client for a `redis+cluster://` URL (ValueError for a malformed one)."""
    return ClusterRedis(parse_cluster_url(url), reply_timeout)


def blocking_cluster_client(url: str) -> redis.Redis:
    """A blocking client for a `redis+cluster://` URL, for the direct path (module doc); it
    reads the slot map on first use (ValueError now for a malformed URL)."""
    from redis.cluster import ClusterNode, RedisCluster

    options = parse_cluster_url(url)
    kw: dict[str, Any] = {}
    if options.password:
        kw.update(password=options.password, username=options.username or None)
    if options.tls is not None:
        ca, cert, key = options.tls_files
        kw.update(ssl=True, ssl_ca_certs=ca or None, ssl_certfile=cert or None, ssl_keyfile=key or None)
    nodes = [ClusterNode(host, port) for host, port in options.seeds]
    return BlockingClusterRedis(lambda: RedisCluster(startup_nodes=nodes, **kw))


class BlockingClusterRedis(redis.Redis):
    """The calls the direct path makes (a pipeline, SCRIPT LOAD) on redis-py's blocking cluster
    client, whose own pipelines refuse EVALSHA. Thread-safe, as that client is."""

    def __init__(self, make: Callable[[], Any]) -> None:
        super().__init__()  # its own connection pool is never used
        self._make = make
        self._cluster: Any = None
        self._lock = threading.Lock()

    @property
    def cluster(self) -> Any:
        """redis-py's cluster client, made on first use: a cluster out of reach then is a
        ConnectionError, as a single Redis out of reach is at its first command."""
        with self._lock:
            if self._cluster is None:
                try:
                    self._cluster = self._make()
                except RedisClusterException as exc:
                    raise ConnectionError(str(exc)) from exc
            return self._cluster

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        if transaction:
            raise ResponseError("MULTI/EXEC pipelines are not available on a Redis Cluster link")
        return NodePipeline(self)

    def script_load(self, script: Any) -> Any:
        return self.cluster.script_load(script)  # on every primary

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()


class NodePipeline(redis.client.Pipeline):
    """A non-transactional pipeline split by node: each node's commands are sent to it in turn
    (a submission's are few: its queue's script and the queue registry); a part answered MOVED
    (nothing of it ran) reads the map again and is sent once more."""

    def __init__(self, owner: BlockingClusterRedis) -> None:
        super().__init__(owner.connection_pool, owner.response_callbacks, False, None)
        self._cluster: Any = owner.cluster

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, self.command_stack = self.command_stack, []
        out: list[Any] = [None] * len(stack)
        for slot, idx in self._by_node(stack).items():
            for attempt in (1, 2):
                node = self._cluster.nodes_manager.get_node_from_slot(slot)
                with self._cluster.get_redis_connection(node).pipeline(transaction=False) as pipe:
                    pipe.command_stack = [stack[i] for i in idx]
                    replies = pipe.execute(raise_on_error=False)
                if attempt == 1 and any(isinstance(r, MovedError) for r in replies):
                    self._cluster.nodes_manager.initialize()
                    continue
                break
            for i, reply in zip(idx, replies, strict=True):
                out[i] = reply
        if raise_on_error:
            self.raise_first_error(stack, out)
        return out

    def _by_node(self, stack: list[Any]) -> dict[int, list[int]]:
        """A slot of each node the stack addresses -> the positions of that node's commands."""
        manager = self._cluster.nodes_manager
        first_slot: dict[str, int] = {}
        groups: dict[int, list[int]] = {}
        for i, (args, _) in enumerate(stack):
            slot = command_slot(args)
            slot = 0 if slot is None else slot
            name = manager.get_node_from_slot(slot).name
            groups.setdefault(first_slot.setdefault(name, slot), []).append(i)
        return groups
