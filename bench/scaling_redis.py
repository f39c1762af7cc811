"""What Redis itself spent: CPU of its main thread and commands run (scripts' inner commands
included), read from INFO, so the figures do not depend on how loaded the machine is."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class RedisUse:
    cpu: float  # seconds of CPU of the main thread (user + system)
    calls: int  # commands, those run inside scripts included
    script_calls: int  # EVALSHA calls
    script_usec: int  # microseconds inside EVALSHA (its inner commands included)

    def __sub__(self, other: RedisUse) -> RedisUse:
        return RedisUse(
            self.cpu - other.cpu,
            self.calls - other.calls,
            self.script_calls - other.script_calls,
            self.script_usec - other.script_usec,
        )


def redis_use(r: redis.Redis) -> RedisUse:
    cpu: Any = r.info("cpu")
    main = ("used_cpu_user_main_thread", "used_cpu_sys_main_thread")
    fields = main if main[0] in cpu else ("used_cpu_user", "used_cpu_sys")
    stats: Any = r.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    script = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return RedisUse(float(cpu[fields[0]]) + float(cpu[fields[1]]), calls, int(script["calls"]), int(script["usec"]))


def empty(r: redis.Redis) -> None:
    """Flush the database and wait until Redis has freed it (a million keys' flush is lazy, and
    the freeing would count as Redis CPU in the next reading)."""
    r.flushdb(asynchronous=True)
    while int(r.info("memory").get("lazyfree_pending_objects", 0)):
        time.sleep(0.1)
