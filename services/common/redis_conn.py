"""Connecting to Redis from a URL, with a clear error when it cannot be reached."""

from __future__ import annotations

from redis.asyncio import Redis


async def connect(url: str) -> Redis:
    redis = Redis.from_url(url, max_connections=256, health_check_interval=30)
    try:
        await redis.ping()
    except Exception as exc:  # noqa: BLE001
        await redis.aclose()
        raise RuntimeError(f"cannot reach Redis at {url}: {exc}") from exc
    return redis
