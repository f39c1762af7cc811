"""gRPC core's I/O for a process that serves the platform's RPCs.

gRPC core has two I/O layers for a server's connections. Its EventEngine (the default) reads and
writes them on threads of its own and hands each completion to the thread that polls the server's
completion queue; its polling I/O manager reads and writes them on the polling thread itself.
grpc.aio polls from one thread, so with the EventEngine every message costs a wake-up of another
thread or two. One submission at a time on a bare SubmitStream (docs/performance.md), a message
costs the server 170-180 us of CPU and 7.2 context switches with the EventEngine, 120-135 us and 4.0
with the polling I/O manager; the scheduler one by one, with two workers, 740-770 us of CPU per task
against 820-880 (docs/tuning.md).

The choice is gRPC core's experiment `event_engine_listener`, switched off in GRPC_EXPERIMENTS.
gRPC reads that variable once, when grpc is first imported, and importing tasktide imports grpc;
so the `tasktide` command, for a server command, starts itself again with the variable set
(`restart_for_serving`, before anything else is done). Client channels keep the EventEngine.

A GRPC_EXPERIMENTS already set, even empty, is left as it is: set it to keep gRPC's default. A
grpcio older than FIRST_VERSION (which may not know the experiment's name) is left as it is too.

The same start sets GRPC_ENABLE_FORK_SUPPORT to false (unless set): a serving process forks only to
start programs (the embedded Redis, the demo's worker and dashboard), which exec at once, so gRPC's
fork handlers have nothing to keep safe, and with them on gRPC logs a line for each such start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from importlib import metadata

VARIABLE = "GRPC_EXPERIMENTS"
EXPERIMENTS = "-event_engine_listener"
FIRST_VERSION = (1, 85)
FORK_VARIABLE = "GRPC_ENABLE_FORK_SUPPORT"


def serving_env(env: Mapping[str, str], grpc_version: str) -> dict[str, str] | None:
    """The environment a serving process is started again with, or None to go on as it is (both
    variables set already, by the operator or by the start before; GRPC_EXPERIMENTS is not set for
    an older gRPC)."""
    wanted = {FORK_VARIABLE: "false"}
    if _version(grpc_version) >= FIRST_VERSION:
        wanted[VARIABLE] = EXPERIMENTS
    added = {k: v for k, v in wanted.items() if k not in env}
    return {**env, **added} if added else None


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def restart_for_serving() -> None:
    """Start this process again, same command line, with gRPC core set up for serving (the same
    process id: exec). Returns only when there is nothing to change."""
    if os.name != "posix":
        return
    env = serving_env(os.environ, metadata.version("grpcio"))
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
