"""What the Redis under the platform is set up to keep, checked once at start-up.

The platform's state lives only in Redis, so two of its settings decide what survives:

- `maxmemory-policy`: any policy but `noeviction` lets Redis drop keys when it is full, and a
  dropped task record, lease or idempotency key is a task lost or run twice with no error anywhere.
  A server refuses to start on such a policy unless TASKTIDE_ALLOW_EVICTION=1.
- `appendonly` / `appendfsync`: without the append-only file a restart of Redis loses everything
  written since the last snapshot (with no snapshot, everything); with `appendfsync no` the last
  seconds of writes the kernel had not flushed; with `everysec` (the usual choice) up to about one
  second. A task confirmed to its producer in that window is gone after a crash. This is logged as
  a warning; the server still starts.

A managed Redis may refuse CONFIG: then nothing can be read, which is logged, and the server starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis

log = logging.getLogger("tasktide.redis")


class EvictionPolicyError(Exception):
    """The Redis may evict keys and the operator did not allow it: the server must not start."""


@dataclass(frozen=True)
class RedisSetup:
    """The settings read from CONFIG GET; "" where Redis did not say."""

    maxmemory_policy: str = ""
    appendonly: str = ""
    appendfsync: str = ""


async def read_setup(redis: Redis) -> RedisSetup | None:
    """The Redis's persistence and eviction settings, or None when it refuses CONFIG GET."""
    try:
        found: dict[str, str] = {}
        for name in ("maxmemory-policy", "appendonly", "appendfsync"):
            reply = await redis.config_get(name)
            found.update({_text(k): _text(v) for k, v in dict(reply).items()})
    except Exception as exc:  # noqa: BLE001 - a managed Redis refuses CONFIG: nothing to check
        log.warning("cannot read the Redis configuration (%s); eviction and persistence not checked", exc)
        return None
    return RedisSetup(found.get("maxmemory-policy", ""), found.get("appendonly", ""), found.get("appendfsync", ""))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def persistence_warning(setup: RedisSetup) -> str:
    """What a crash of this Redis loses of confirmed work, or "" when the append-only file is
    written and flushed at least every second."""
    if setup.appendonly and setup.appendonly != "yes":
        return (
            "Redis runs without the append-only file (appendonly no): a crash or restart of Redis loses "
            "every task, result and schedule written since its last snapshot, including tasks already "
            "confirmed to their producers; set `appendonly yes` (and `appendfsync everysec`)"
        )
    if setup.appendfsync == "no":
        return (
            "Redis writes the append-only file with `appendfsync no`: a crash of its machine loses the "
            "writes the kernel had not flushed yet (typically up to 30 s), including tasks already "
            "confirmed to their producers; set `appendfsync everysec` (at most about 1 s lost) or `always`"
        )
    return ""


def eviction_problem(setup: RedisSetup, allow_eviction: bool) -> str:
    """Why the server must not start on this Redis, or ""."""
    policy = setup.maxmemory_policy
    if not policy or policy == "noeviction" or allow_eviction:
        return ""
    return (
        f"Redis has maxmemory-policy {policy}: when it is full it deletes keys, and a deleted task record, "
        "lease or idempotency key is a task lost or run twice without any error. Set "
        "`maxmemory-policy noeviction` (writes then fail cleanly when Redis is full), or set "
        "TASKTIDE_ALLOW_EVICTION=1 to start all the same"
    )


async def check_redis(redis: Redis, allow_eviction: bool) -> RedisSetup | None:
    """Read the Redis's setup; raise EvictionPolicyError on an evicting policy (unless allowed),
    log a warning on weak persistence. Returns what was read (None when CONFIG was refused)."""
    setup = await read_setup(redis)
    if setup is None:
        return None
    problem = eviction_problem(setup, allow_eviction)
    if problem:
        raise EvictionPolicyError(problem)
    if setup.maxmemory_policy not in ("", "noeviction"):
        log.warning("Redis has maxmemory-policy %s (allowed by TASKTIDE_ALLOW_EVICTION)", setup.maxmemory_policy)
    warning = persistence_warning(setup)
    if warning:
        log.warning("%s", warning)
    return setup
