"""The clients the services and the direct path use on a Redis Cluster (routing: redis_cluster.py).

`ClusterRedis` is the services' asyncio client: the same `Redis` the stores are written against,
whose every command and non-transactional pipeline goes through the cluster's links, so stores and
scripts do not change with the topology. MULTI/EXEC pipelines are refused: the services use none,
and a transaction on a cluster would have to keep to one slot.

`blocking_cluster_client` is the direct path's blocking client (scheduler/direct.py), redis-py's
own cluster client: its one pipeline per submission addresses one queue, so one slot.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError, ResponseError

from tasktide_services.common.lua import Script
from tasktide_services.common.redis_cluster import (
    EVERY_PRIMARY,
    ClusterLink,
    ClusterOptions,
    parse_cluster_url,
)
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
    """A blocking client for a `redis+cluster://` URL, typed as the client the direct path takes
    (the calls it makes, pipeline and script_load, have the same shape on both)."""
    from redis.cluster import ClusterNode, RedisCluster

    options = parse_cluster_url(url)
    kw: dict[str, Any] = {}
    if options.password:
        kw.update(password=options.password, username=options.username or None)
    if options.tls is not None:
        ca, cert, key = options.tls_files
        kw.update(ssl=True, ssl_ca_certs=ca or None, ssl_certfile=cert or None, ssl_keyfile=key or None)
    nodes = [ClusterNode(host, port) for host, port in options.seeds]
    return cast(redis.Redis, RedisCluster(startup_nodes=nodes, **kw))
