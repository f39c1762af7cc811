"""Connecting to Redis from a URL, with a clear error when it cannot be reached.

Commands carry no socket timeout: with one, the client wraps every write in a task and every read
in a timer, a large share of the services' CPU on the hot path. A connection that Redis or the
network dropped fails the command sent on it, which is not sent again (whether it ran is unknown;
the request fails UNAVAILABLE, which callers retry, with an idempotency key for a submission), and
the next command opens a new connection. A pooled connection that Redis closed while it sat idle (a
restart) is found closed when it is taken from the pool, and opened again before anything is sent
on it: a restart fails no command that was not under way. redis-py skips that check while its
maintenance notifications (a Redis Enterprise feature) are on, so they are off (`NOT_MAINT`). A
peer that vanished without a word is found by TCP keepalive (TCP URLs); callers' gRPC deadlines
bound how long any request waits, and the pipelines' connection is dropped when Redis owes replies
and has said nothing for `reply_timeout` seconds (redis_link.py). Connecting times out after
CONNECT_TIMEOUT seconds.

A `redis+cluster://` or `rediss+cluster://` URL names a Redis Cluster (redis_cluster.py): the
client is then a ClusterRedis, the same `Redis` to the stores.

An error names the URL without its user and password (`shown`), as it may end up in logs, and
says what a TLS connection closed by the server may mean (`_hint`).
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.maint_notifications import MaintNotificationsConfig

from tasktide_services.common.redis_cluster_client import cluster_client
from tasktide_services.common.redis_cluster_url import is_cluster_url
from tasktide_services.common.redis_link import REPLY_TIMEOUT, LinkedRedis

CONNECT_TIMEOUT = 5.0
NOT_MAINT = MaintNotificationsConfig(enabled=False)  # see above: the pool's check of idle connections


async def connect(url: str, reply_timeout: float = REPLY_TIMEOUT) -> Redis:
    if is_cluster_url(url):
        try:
            cluster = cluster_client(url, reply_timeout)
        except ValueError as exc:
            raise RuntimeError(f"bad Redis Cluster URL: {exc}") from exc
        return await _reached(cluster, url)
    tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}
    redis = cast(  # from_url makes the class it is called on
        LinkedRedis,
        LinkedRedis.from_url(
            url,
            max_connections=256,
            socket_timeout=None,
            socket_connect_timeout=CONNECT_TIMEOUT,
            maint_notifications_config=NOT_MAINT,
            **tcp,
        ),
    )
    redis.reply_timeout = reply_timeout
    return await _reached(redis, url)


async def _reached(redis: Redis, url: str) -> Redis:
    try:
        await redis.ping()
    except Exception as exc:  # noqa: BLE001
        await redis.aclose()
        raise RuntimeError(f"cannot reach Redis at {shown(url)}: {exc}{_hint(url, exc)}") from exc
    return redis


def _hint(url: str, exc: Exception) -> str:
    """A TLS server that wants a client certificate and got none ends the connection once TLS is
    set up (TLS 1.3): Redis itself sends the alert "certificate required" first; a server that
    only closes it (a TLS proxy) is reported as a connection closed, or reset when the server
    closed it with the client's first command unread."""
    parts = urlsplit(url)
    dropped = any(word in str(exc) for word in ("closed", "reset", "certificate required"))
    if not parts.scheme.startswith("rediss") or "ssl_certfile=" in parts.query or not dropped:
        return ""
    return " (if the server requires a client certificate, give one with ssl_certfile= and ssl_keyfile= in the URL)"


def shown(url: str) -> str:
    """`url` without the user and password it may carry."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
