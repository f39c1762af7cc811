"""Submission in the caller's process: the scheduler's hop collapsed for tasks sent one at a time.

A client given a Redis URL (TASKTIDE_SUBMIT_REDIS_URL) accepts a runnable task here instead
of sending it to Scheduler.SubmitStream. Admission decides (admission.queued_now: the scheduler's
own validation, and its one decision of what scheduler state a task needs); a task that needs none
is put in its ready queue by the registry's enqueue script on the caller's Redis connection, in one
round trip. When `submit` returns, the task is in its ready queue, as it is when the scheduler
confirms a submission, and the script's notice wakes the registry's dispatchers. A task that needs
the scheduler's state (today a countdown or ETA, an idempotency key, a rate limit: admission.NEEDS)
is not taken here: `submit` returns None and the client sends it over gRPC.
docs/architecture.md ("Submission in the caller's process") has the measurements behind this.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis
from redis.asyncio import Redis as AsyncRedis

from tasktide.v1 import task_pb2
from tasktide_services.common.errors import Unavailable
from tasktide_services.common.lua import load_scripts, run_blocking_pipeline, run_pipeline
from tasktide_services.common.partitions import Partitions
from tasktide_services.common.redis_cluster_client import blocking_cluster_client, cluster_client
from tasktide_services.common.redis_cluster_url import is_cluster_url
from tasktide_services.common.redis_conn import NOT_MAINT, shown
from tasktide_services.common.settings import Limits, ServerSettings
from tasktide_services.scheduler.admission import queued_now
from tasktide_services.worker.store import SCRIPTS, build_enqueue


def _unreachable(where: str, spec: task_pb2.TaskSpec, exc: Exception) -> Unavailable:
    return Unavailable(f"cannot reach Redis at {where} to submit {spec.name}: {exc}")


class DirectSubmitter:
    """For the blocking client; thread-safe (the Redis client keeps a pool of connections)."""

    def __init__(
        self, client: redis.Redis, limits: Limits, where: str = "", partitions: Partitions | None = None
    ) -> None:
        self._redis = client
        self._limits = limits
        self._partitions = partitions
        self._where = where
        self._scripts = load_scripts(None, SCRIPTS)

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> DirectSubmitter:
        """The limits and queue partitions are the scheduler's, from the same TASKTIDE_* variables
        the server reads."""
        settings = ServerSettings.from_env(env)
        parts = Partitions.from_pairs(settings.queue_partitions)
        client = blocking_cluster_client(url) if is_cluster_url(url) else redis.Redis.from_url(url)
        return cls(client, settings.limits, shown(url), parts)

    def submit(self, spec: task_pb2.TaskSpec) -> str | None:
        """The new task's id once it is queued, or None for a task the scheduler must accept.
        Raises the scheduler's errors for a spec it would refuse, Unavailable when Redis is out of reach."""
        task = queued_now(spec, self._limits, self._partitions)
        if task is None:
            return None
        try:
            run_blocking_pipeline(self._redis, lambda pipe: build_enqueue(pipe, self._scripts, [task]), self._scripts)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _unreachable(self._where, spec, exc) from None
        return task.id

    def close(self) -> None:
        self._redis.close()


class AsyncDirectSubmitter:
    """DirectSubmitter for the asyncio client (one event loop)."""

    def __init__(
        self, client: AsyncRedis, limits: Limits, where: str = "", partitions: Partitions | None = None
    ) -> None:
        self._redis = client
        self._limits = limits
        self._partitions = partitions
        self._where = where
        self._scripts = load_scripts(None, SCRIPTS)

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> AsyncDirectSubmitter:
        settings = ServerSettings.from_env(env)
        parts = Partitions.from_pairs(settings.queue_partitions)
        # An idle pooled connection that a Redis restart closed is opened again before use (NOT_MAINT).
        client = (
            cluster_client(url)
            if is_cluster_url(url)
            else AsyncRedis.from_url(url, maint_notifications_config=NOT_MAINT)
        )
        return cls(client, settings.limits, shown(url), parts)

    async def submit(self, spec: task_pb2.TaskSpec) -> str | None:
        task = queued_now(spec, self._limits, self._partitions)
        if task is None:
            return None
        try:
            await run_pipeline(self._redis, lambda pipe: build_enqueue(pipe, self._scripts, [task]), self._scripts)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _unreachable(self._where, spec, exc) from None
        return task.id

    async def close(self) -> None:
        await self._redis.aclose()
