"""A child process of the process pool: `python -m tasktide.worker._child MODULE:APP WORKER_ID`.

Says ready (an R frame) once the app is imported, then reads Assignment frames on stdin and writes
Outcome and progress frames to the original stdout (the task's own prints go to stderr).
SIGUSR1 raises SoftTimeLimitExceeded in the running task, SIGUSR2 raises CancelRequested.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from tasktide._hooks import NO_HOOKS, Hooks
from tasktide._logging import FORMAT as LOG_FORMAT
from tasktide._logging import install_log_context
from tasktide._plugins import hooks_from_env
from tasktide.v1 import worker_pb2
from tasktide.worker._context import CancelRequested, SoftTimeLimitExceeded, TaskContext
from tasktide.worker._execute import make_context, run_sync
from tasktide.worker._pools import FRAME

_running: list[TaskContext] = []


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if not _running:
        return  # between tasks: nothing to interrupt
    if signum == signal.SIGUSR1:
        raise SoftTimeLimitExceeded("soft time limit exceeded")
    _running[0].cancelled = True
    raise CancelRequested(f"task {_running[0].id} was cancelled")


def main() -> int:
    from tasktide.cli import load_app

    target, worker_id = sys.argv[1], sys.argv[2]
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    lock = threading.Lock()

    def write(kind: bytes, body: bytes) -> None:
        with lock:
            out.write(FRAME.pack(kind, len(body)) + body)
            out.flush()

    app = load_app(target)
    logging.basicConfig(level=os.environ.get("TASKTIDE_LOG_LEVEL", "INFO").upper(), format=LOG_FORMAT)
    log_context = install_log_context(NO_HOOKS)
    if type(app.hooks) is Hooks:  # as in the parent: tracing from the environment
        app.hooks = hooks_from_env("tasktide-worker")
    log_context.hooks = app.hooks
    write(b"R", b"")  # ready: the app is imported
    signal.signal(signal.SIGUSR1, _on_signal)
    signal.signal(signal.SIGUSR2, _on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    while True:
        header = inp.read(FRAME.size)
        if len(header) < FRAME.size:
            return 0
        _, size = FRAME.unpack(header)
        a = worker_pb2.Assignment.FromString(inp.read(size))
        ctx = make_context(a, lambda r: write(b"P", r.SerializeToString()))
        _running.append(ctx)
        try:
            with app.hooks.resume(a):
                outcome = run_sync(app, a, ctx, worker_id)
        finally:
            _running.clear()
        write(b"O", outcome.SerializeToString())


if __name__ == "__main__":
    sys.exit(main())
